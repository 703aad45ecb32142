"""Node endpoints and process behaviour: status, health family, metrics,
configuration, init, lock file, body caps, unknown routes."""

from __future__ import annotations

import re
import time

from fixtures.neon_fixtures import NeonEnv, NeonEnvBuilder, raw_request, run_pageserver_binary
from fixtures.utils import wait_until


def test_status_and_health(neon_simple_env: NeonEnv):
    ps = neon_simple_env.pageserver
    client = ps.http_client()
    assert client.status() == {"id": 1}
    res = client.health()
    assert res.status_code == 200 and res.json()["status"] == "ok"
    res = client.readiness()
    assert res.status_code == 200
    assert res.json()["checks"]["tenants_loaded"] is True
    res = client.liveness()
    assert res.status_code == 200
    assert "housekeeping" in res.json()["checks"]
    assert res.headers["x-request-id"]
    res = raw_request("GET", ps.http_port, "/v1/status", headers={"X-Request-Id": "req-abc-123"})
    assert res.headers["x-request-id"] == "req-abc-123"
    assert ps.log_contains("req-abc-123")


def test_unknown_routes_and_methods(neon_simple_env: NeonEnv):
    port = neon_simple_env.pageserver.http_port
    res = raw_request("GET", port, "/v1/nothing/here")
    assert res.status_code == 404 and "no route" in res.json()["msg"]
    res = raw_request("PATCH", port, "/v1/tenant/")
    assert res.status_code == 405 and "PATCH" in res.json()["msg"]
    res = raw_request("POST", port, "/v1/status")
    assert res.status_code == 405


def test_body_size_cap(neon_env_builder: NeonEnvBuilder):
    neon_env_builder.pageserver_config_overrides["max_request_body_bytes"] = 1024
    env = neon_env_builder.init_start()
    port = env.pageserver.http_port
    big = b'{"gc_horizon": 1' + b" " * 2000 + b"}"
    res = raw_request("POST", port, "/v1/tenant/", data=big)
    assert res.status_code == 413 and "1024" in res.json()["msg"]

    # Chunked bodies have no Content-Length: the cap applies while reading.
    def chunks():
        yield b'{"gc_horizon": 1'
        for _ in range(40):
            yield b" " * 100
        yield b"}"

    res = raw_request("POST", port, "/v1/tenant/", data=chunks())
    assert res.status_code == 413, res.text
    assert env.pageserver.http_client().tenant_list() == []
    res = raw_request("POST", port, "/v1/tenant/", data=b'{"gc_horizon": 1}')
    assert res.status_code == 201


def test_metrics(neon_simple_env: NeonEnv):
    client = neon_simple_env.pageserver.http_client()
    tenant_id = client.tenant_create()
    client.timeline_create(tenant_id)
    client.timeline_create(tenant_id)
    raw_request("GET", neon_simple_env.pageserver.http_port, f"/v1/tenant/{'0' * 32}")

    def counted() -> str:
        text = client.metrics()
        assert 'pageserver_tenant_states{state="Active"} 1' in text
        assert 'pageserver_timeline_states{state="Active"} 2' in text
        return text

    text = wait_until(counted, timeout=15)
    assert re.search(
        r'pageserver_http_requests_total\{method="POST",route="/v1/tenant",status="201"\} 1', text
    ), text
    assert re.search(
        r'pageserver_http_requests_total\{method="GET",route="/v1/tenant/\{tenant_id\}",status="404"\} 1', text
    )
    assert 'pageserver_http_request_duration_seconds_bucket{method="POST",route="/v1/tenant/{tenant_id}/timeline"' in text
    assert 'pageserver_tenant_states{state="Broken"} 0' in text
    assert "pageserver_background_loop_heartbeat_age_seconds" in text


def test_liveness_reports_stale_loop(neon_env_builder: NeonEnvBuilder):
    neon_env_builder.pageserver_config_overrides.update(
        {"housekeeping_period": "200ms", "liveness_heartbeat_limit": "1s"}
    )
    env = neon_env_builder.init_start()
    ps = env.pageserver
    ps.allowed_errors.append("liveness check failing")
    client = ps.http_client()
    assert client.liveness().status_code == 200
    client.configure_failpoints(("housekeeping-skip", "return"))

    def stale() -> None:
        res = client.liveness()
        assert res.status_code == 503
        assert "housekeeping" in res.json()["status"]

    wait_until(stale, timeout=10)
    client.configure_failpoints(("housekeeping-skip", "off"))

    def alive() -> None:
        assert client.liveness().status_code == 200

    wait_until(alive, timeout=10)


def test_readiness_waits_for_tenant_loading(neon_simple_env: NeonEnv):
    ps = neon_simple_env.pageserver
    client = ps.http_client()
    tenant_id = client.tenant_create()
    ps.stop()
    ps.start(extra_env={"FAILPOINTS": "tenant-load=sleep(3000)"}, wait_ready=False)
    res = client.readiness()
    assert res.status_code == 503
    assert "loading" in res.json()["status"]
    assert client.tenant_status(tenant_id)["state"] == "Loading"
    ps.wait_ready(timeout=20)
    assert client.tenant_status(tenant_id)["state"] == "Active"


def test_readiness_reports_disk_failure(neon_env_builder: NeonEnvBuilder):
    neon_env_builder.pageserver_config_overrides["housekeeping_period"] = "200ms"
    env = neon_env_builder.init_start()
    ps = env.pageserver
    ps.allowed_errors.append("work directory check failed")
    client = ps.http_client()
    probe = ps.workdir / ".disk_probe"
    # Make the probe's target a directory: the write+rename fails like a bad disk.
    probe.unlink()
    probe.mkdir()
    (probe / "x").write_text("x")

    def not_ready() -> None:
        res = client.readiness()
        assert res.status_code == 503 and "work directory" in res.json()["status"], res.text

    wait_until(not_ready, timeout=10)
    (probe / "x").unlink()
    probe.rmdir()
    wait_until(lambda: ps.wait_ready(timeout=0.1), timeout=10)


def test_init_writes_commented_config(test_output_dir):
    workdir = test_output_dir / "ps"
    res = run_pageserver_binary(["--workdir", str(workdir), "--init", "-c", "id=42"])
    assert res.returncode == 0, res.stderr
    text = (workdir / "pageserver.toml").read_text()
    assert "id = 42" in text
    assert text.count("\n#") >= 10  # commented
    assert 'listen_http_addr = "127.0.0.1:9898"' in text
    assert 'listen_pg_addr = "127.0.0.1:64000"' in text
    res = run_pageserver_binary(["--workdir", str(workdir), "--init"])
    assert res.returncode != 0 and "already exists" in res.stderr


def test_bad_config_is_refused(test_output_dir):
    workdir = test_output_dir / "ps"
    assert run_pageserver_binary(["--workdir", str(workdir), "--init"]).returncode == 0
    for override, fragment in (
        ("no_such_key=1", "no_such_key"),
        ("tenant_config.bogus=1", "bogus"),
        ("listen_http_addr=localhost", "listen_http_addr"),
        ('http_auth_type="JWT"', "auth_validation_public_key_path"),
        # No authentication beyond loopback unless chosen by name.
        ('listen_http_addr="0.0.0.0:9898"', "http_auth_type"),
        ('listen_pg_addr="[::]:64000"', "pg_auth_type"),
        ('log_format="xml"', "xml"),
        ("tenant_config.compaction_threshold=0", "compaction_threshold"),
        ("id=-1", "id"),
    ):
        res = run_pageserver_binary(["--workdir", str(workdir), "-c", override])
        assert res.returncode == 1, override
        assert fragment in res.stderr, f"{override}: {res.stderr}"
    res = run_pageserver_binary(["--workdir", str(test_output_dir / "missing")])
    assert res.returncode == 1 and "--init" in res.stderr


def test_lock_file_prevents_second_process(neon_simple_env: NeonEnv):
    ps = neon_simple_env.pageserver
    res = run_pageserver_binary(
        ["--workdir", str(ps.workdir), "-c", "listen_http_addr=127.0.0.1:0", "-c", "listen_pg_addr=127.0.0.1:0"]
    )
    assert res.returncode == 1
    assert "locked by another process" in res.stderr
    assert ps.http_client().status()["id"] == 1


def test_sigint_shuts_down_cleanly(neon_simple_env: NeonEnv):
    import signal

    ps = neon_simple_env.pageserver
    ps.http_client().tenant_create()
    proc = ps.process
    assert proc is not None
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=30) == 0
    ps.process = None
    assert ps.log_contains("received SIGINT")
    assert ps.log_contains("shut down cleanly")
    started = time.monotonic()
    ps.start()
    assert time.monotonic() - started < 30
    assert len(ps.http_client().tenant_list()) == 1
