"""Tenant lifecycle over HTTP: create, list, get, config, delete, persistence."""

from __future__ import annotations

import time

import re
import secrets

import pytest

from fixtures.neon_fixtures import NeonEnv, NeonEnvBuilder, raw_request
from fixtures.pageserver_http import PageserverApiException
from fixtures.utils import wait_until

HEX32 = re.compile(r"^[0-9a-f]{32}$")


def new_id() -> str:
    return secrets.token_hex(16)


def test_tenant_create_list_get_delete(neon_simple_env: NeonEnv):
    client = neon_simple_env.pageserver.http_client()
    assert client.tenant_list() == []

    generated = client.tenant_create()
    assert HEX32.match(generated)
    chosen = new_id()
    assert client.tenant_create(chosen) == chosen

    ids = sorted(t["id"] for t in client.tenant_list())
    assert ids == sorted([generated, chosen])

    info = client.tenant_status(chosen)
    assert info["id"] == chosen
    assert info["state"] == "Active"
    assert info["has_in_progress_downloads"] is False
    assert info["timeline_count"] == 0
    assert info["current_physical_size"] > 0

    with pytest.raises(PageserverApiException) as e:
        client.tenant_create(chosen)
    assert e.value.status_code == 409
    assert chosen in e.value.msg

    assert client.tenant_delete(chosen) == {}
    with pytest.raises(PageserverApiException) as e:
        client.tenant_status(chosen)
    assert e.value.status_code == 404
    assert not neon_simple_env.pageserver.tenant_dir(chosen).exists()
    with pytest.raises(PageserverApiException) as e:
        client.tenant_delete(chosen)
    assert e.value.status_code == 404
    assert [t["id"] for t in client.tenant_list()] == [generated]

    # The id can be reused after delete.
    assert client.tenant_create(chosen) == chosen


def test_tenant_paths_with_and_without_trailing_slash(neon_simple_env: NeonEnv):
    port = neon_simple_env.pageserver.http_port
    for path in ("/v1/tenant/", "/v1/tenant"):
        res = raw_request("POST", port, path, json={})
        assert res.status_code == 201, res.text
        tenant_id = res.json()
        res = raw_request("GET", port, path)
        assert res.status_code == 200
        assert tenant_id in [t["id"] for t in res.json()]
        for tl_path in (f"/v1/tenant/{tenant_id}/timeline/", f"/v1/tenant/{tenant_id}/timeline"):
            res = raw_request("POST", port, tl_path, json={})
            assert res.status_code == 201, res.text
            res = raw_request("GET", port, tl_path)
            assert res.status_code == 200


def test_tenant_create_with_tenant_id_field_and_empty_body(neon_simple_env: NeonEnv):
    port = neon_simple_env.pageserver.http_port
    tenant_id = new_id()
    res = raw_request("POST", port, "/v1/tenant/", json={"tenant_id": tenant_id})
    assert res.status_code == 201 and res.json() == tenant_id
    res = raw_request("POST", port, "/v1/tenant/", data=b"")
    assert res.status_code == 201 and HEX32.match(res.json())


@pytest.mark.parametrize(
    "body, fragment",
    [
        (b"{not json", "malformed request body"),
        (b"[]", "malformed request body"),
        (b'"text"', "malformed request body"),
        (b'{"new_tenant_id": "xyz"}', "invalid tenant id"),
        (b'{"new_tenant_id": 5}', "new_tenant_id"),
        (b'{"bogus_field": 1}', "bogus_field"),
        (b'{"gc_horizon": -5}', "malformed request body"),
        (b'{"gc_period": "whenever"}', "malformed request body"),
        (b'{"compaction_threshold": 1}', "compaction_threshold"),
        (b'{"checkpoint_distance": 10}', "checkpoint_distance"),
        (b'{"checkpoint_timeout": "0s"}', "checkpoint_timeout"),
    ],
)
def test_tenant_create_bad_bodies(neon_simple_env: NeonEnv, body: bytes, fragment: str):
    port = neon_simple_env.pageserver.http_port
    res = raw_request("POST", port, "/v1/tenant/", data=body, headers={"Content-Type": "application/json"})
    assert res.status_code == 400, res.text
    assert fragment in res.json()["msg"]
    # Nothing was created.
    assert neon_simple_env.pageserver.http_client().tenant_list() == []
    assert list((neon_simple_env.pageserver.workdir / "tenants").iterdir()) == []


def test_tenant_conflicting_ids_in_body(neon_simple_env: NeonEnv):
    port = neon_simple_env.pageserver.http_port
    res = raw_request("POST", port, "/v1/tenant/", json={"tenant_id": new_id(), "new_tenant_id": new_id()})
    assert res.status_code == 400
    assert "conflicting" in res.json()["msg"]


@pytest.mark.parametrize("bad", ["xyz", "0" * 31, "0" * 33, "g" * 32, "%20"])
def test_bad_tenant_id_in_path(neon_simple_env: NeonEnv, bad: str):
    port = neon_simple_env.pageserver.http_port
    for method, path in [
        ("GET", f"/v1/tenant/{bad}"),
        ("DELETE", f"/v1/tenant/{bad}"),
        ("GET", f"/v1/tenant/{bad}/config"),
        ("GET", f"/v1/tenant/{bad}/timeline"),
        ("POST", f"/v1/tenant/{bad}/timeline/"),
    ]:
        res = raw_request(method, port, path, json={})
        assert res.status_code == 400, f"{method} {path}: {res.status_code} {res.text}"
        assert "tenant_id" in res.json()["msg"]


def test_unknown_tenant_is_404(neon_simple_env: NeonEnv):
    client = neon_simple_env.pageserver.http_client()
    missing = new_id()
    for call in (
        lambda: client.tenant_status(missing),
        lambda: client.tenant_config(missing),
        lambda: client.timeline_list(missing),
        lambda: client.timeline_create(missing),
        lambda: client.set_tenant_config(missing, {}),
        lambda: client.tenant_delete(missing),
    ):
        with pytest.raises(PageserverApiException) as e:
            call()
        assert e.value.status_code == 404
        assert missing in e.value.msg


def test_tenant_config(neon_env_builder: NeonEnvBuilder):
    neon_env_builder.pageserver_config_overrides["tenant_config.gc_horizon"] = 4096
    env = neon_env_builder.init_start()
    client = env.pageserver.http_client()
    tenant_id = client.tenant_create(conf={"checkpoint_distance": 65536, "gc_period": "5m", "compaction_threshold": "4"})

    conf = client.tenant_config(tenant_id)
    assert conf["tenant_specific_overrides"] == {
        "checkpoint_distance": 65536,
        "gc_period": "5m",
        "compaction_threshold": 4,
    }
    eff = conf["effective_config"]
    assert eff["checkpoint_distance"] == 65536
    assert eff["gc_period"] == "5m"
    assert eff["gc_horizon"] == 4096  # node default from pageserver.toml
    assert eff["pitr_interval"] == "7days"  # built-in default

    # PUT replaces the overrides as a whole; answers with the tenant's info.
    res = client.set_tenant_config(tenant_id, {"pitr_interval": "1h", "image_creation_threshold": 2})
    assert isinstance(res, list) and res[0]["id"] == tenant_id
    conf = client.tenant_config(tenant_id)
    assert conf["tenant_specific_overrides"] == {"pitr_interval": "1h", "image_creation_threshold": 2}
    assert conf["effective_config"]["checkpoint_distance"] == 256 * 1024 * 1024

    # Invalid values are refused and change nothing.
    for bad, fragment in (
        ({"compaction_threshold": 0}, "compaction_threshold"),
        ({"unknown_knob": 1}, "unknown_knob"),
        ({"pitr_interval": 5}, "pitr_interval"),
    ):
        with pytest.raises(PageserverApiException) as e:
            client.set_tenant_config(tenant_id, bad)
        assert e.value.status_code == 400
        assert fragment in e.value.msg
    res = raw_request("PUT", env.pageserver.http_port, "/v1/tenant/config", json={"gc_horizon": 1})
    assert res.status_code == 400 and "tenant_id" in res.json()["msg"]
    assert client.tenant_config(tenant_id)["tenant_specific_overrides"] == {
        "pitr_interval": "1h",
        "image_creation_threshold": 2,
    }

    # Survives a restart.
    env.pageserver.restart()
    assert client.tenant_config(tenant_id)["tenant_specific_overrides"] == {
        "pitr_interval": "1h",
        "image_creation_threshold": 2,
    }


def settled_detail(client, tenant_id: str, timeline_id: str) -> dict:
    """Timeline detail once the logical size (computed in the background
    after load) is known and everything is uploaded."""
    detail = client.timeline_detail(tenant_id, timeline_id)
    assert detail["current_logical_size"] is not None, detail
    assert detail["remote_consistent_lsn"] == detail["disk_consistent_lsn"], detail
    return detail


def test_tenants_and_timelines_survive_restart(neon_simple_env: NeonEnv):
    env = neon_simple_env
    client = env.pageserver.http_client()
    expected = {}
    for i in range(3):
        tenant_id = client.tenant_create(conf={"gc_horizon": 1000 + i})
        root = client.timeline_create(tenant_id)
        branch = client.timeline_create(tenant_id, ancestor_timeline_id=root["timeline_id"])
        # Once uploaded (remote_consistent_lsn set), nothing changes across the restart.
        expected[tenant_id] = {
            tl: wait_until(lambda tl=tl: settled_detail(client, tenant_id, tl), timeout=30)
            for tl in (root["timeline_id"], branch["timeline_id"])
        }
    doomed = client.tenant_create()
    client.tenant_delete(doomed)

    env.pageserver.restart()

    tenants = {t["id"]: t for t in client.tenant_list()}
    assert set(tenants) == set(expected)
    for tenant_id, timelines in expected.items():
        assert tenants[tenant_id]["state"] == "Active"
        listed = {t["timeline_id"]: t for t in client.timeline_list(tenant_id)}
        assert set(listed) == set(timelines)
        for timeline_id, before in timelines.items():
            after = wait_until(lambda: settled_detail(client, tenant_id, timeline_id), timeout=30)
            assert after == before
        assert client.tenant_config(tenant_id)["tenant_specific_overrides"]["gc_horizon"] >= 1000
