"""The `cplane` CLI against real page server processes: init, start, status,
tenant and timeline commands, tokens, stop."""

from __future__ import annotations

import json
from pathlib import Path

import jwt
import pytest

from fixtures.cplane import consecutive_ports, cplane
from fixtures.neon_fixtures import raw_request
from fixtures.port_distributor import PortDistributor


@pytest.mark.parametrize("auth", [False, True])
def test_cplane_cluster_lifecycle(test_output_dir: Path, port_distributor: PortDistributor, auth: bool):
    workdir = test_output_dir / "cplane"
    http_port = consecutive_ports(port_distributor, 2)
    pg_port = consecutive_ports(port_distributor, 2)
    init_args = ["init", "--pageservers", "2", "--http-port", str(http_port), "--pg-port", str(pg_port)]
    if auth:
        init_args.append("--auth")
    cplane(workdir, *init_args)
    assert (workdir / "cplane.toml").exists()
    # A second init refuses to overwrite keys and data.
    res = cplane(workdir, *init_args, check=False)
    assert res.returncode != 0 and "already holds an environment" in res.stderr

    try:
        cplane(workdir, "start")
        status = cplane(workdir, "status").stdout
        assert status.count("running") == 2 and status.count("ready") == 2, status
        # Starting again is harmless.
        assert "already running" in cplane(workdir, "start").stdout

        tenant_id = cplane(workdir, "tenant", "create", "-c", "gc_horizon=4096", "-c", "pitr_interval=1h").stdout.strip()
        assert len(tenant_id) == 32
        assert f"{tenant_id} Active" in cplane(workdir, "tenant", "list").stdout
        # The second page server did not get the tenant.
        assert tenant_id not in cplane(workdir, "--pageserver-id", "2", "tenant", "list").stdout

        info = json.loads(cplane(workdir, "timeline", "create", "--tenant-id", tenant_id).stdout)
        assert info["tenant_id"] == tenant_id and info["state"] == "Active"
        listing = cplane(workdir, "timeline", "list", "--tenant-id", tenant_id).stdout
        assert info["timeline_id"] in listing

        # Errors from the page server come through with their message.
        res = cplane(workdir, "tenant", "create", "--tenant-id", tenant_id, check=False)
        assert res.returncode != 0 and "409" in res.stderr
        res = cplane(workdir, "tenant", "create", "-c", "bogus_key=1", check=False)
        assert res.returncode != 0 and "bogus_key" in res.stderr

        # Tokens: signed with the environment's key, accepted by the page server
        # when auth is on.
        token = cplane(workdir, "token", "--scope", "tenant", "--tenant-id", tenant_id).stdout.strip()
        assert jwt.decode(token, options={"verify_signature": False}) == {"scope": "tenant", "tenant_id": tenant_id}
        res = cplane(workdir, "token", "--scope", "tenant", check=False)
        assert res.returncode != 0 and "--tenant-id" in res.stderr
        res = cplane(workdir, "token", "--scope", "root", check=False)
        assert res.returncode != 0 and "unknown scope" in res.stderr
        path = f"/v1/tenant/{tenant_id}"
        headers = {"Authorization": f"Bearer {token}"}
        assert raw_request("GET", http_port, path, headers=headers).status_code == 200
        if auth:
            assert raw_request("GET", http_port, path).status_code == 401
            admin = cplane(workdir, "token", "--scope", "pageserverapi").stdout.strip()
            other = raw_request("GET", http_port, "/v1/tenant/", headers={"Authorization": f"Bearer {token}"})
            assert other.status_code == 403
            assert raw_request("GET", http_port, "/v1/tenant/", headers={"Authorization": f"Bearer {admin}"}).status_code == 200
    finally:
        cplane(workdir, "stop")
    status = cplane(workdir, "status").stdout
    assert status.count("stopped") == 2, status
    assert "is not running" in cplane(workdir, "stop").stdout
    for i in (1, 2):
        log = (workdir / f"pageserver_{i}" / "pageserver.log").read_text()
        assert " ERROR " not in log and "panicked" not in log, log


def test_cplane_needs_init(test_output_dir: Path):
    res = cplane(test_output_dir / "nothing", "status", check=False)
    assert res.returncode != 0 and "cplane init" in res.stderr
