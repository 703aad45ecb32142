"""/metrics after WAL ingest passes `promtool check metrics` and carries the
per-timeline series with tenant and timeline labels; they go away with the
timeline. Request ids: echoed, generated when missing, and in the log."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

from fixtures.neon_fixtures import NeonEnv, NeonEnvBuilder, raw_request
from fixtures.pg import wait_for
from fixtures.port_distributor import PortDistributor
from fixtures.storage import lsn_int
from fixtures.workloads import streamed_primary, wait_ingested

PER_TIMELINE = [
    "pageserver_wal_ingest_bytes_total",
    "pageserver_wal_ingest_records_total",
    "pageserver_last_record_lsn",
    "pageserver_disk_consistent_lsn",
    "pageserver_disk_consistent_lag_bytes",
    "pageserver_remote_consistent_lag_bytes",
    "pageserver_current_logical_size_bytes",
    "pageserver_walreceiver_connected",
    "pageserver_walreceiver_lag_bytes",
    "pageserver_layers",
    "pageserver_layer_bytes",
]
GLOBAL = [
    "pageserver_flush_duration_seconds_bucket",
    "pageserver_compaction_duration_seconds_count",
    "pageserver_gc_duration_seconds_sum",
    "pageserver_tenant_states",
    "pageserver_page_cache_hits_total",
    "pageserver_page_cache_misses_total",
]


def series(text: str, name: str, tenant_id: str, timeline_id: str) -> list[str]:
    return [
        line
        for line in text.splitlines()
        if line.startswith(name + "{") and f'tenant_id="{tenant_id}"' in line and f'timeline_id="{timeline_id}"' in line
    ]


def test_metrics_pass_promtool(neon_simple_env: NeonEnv, test_output_dir: Path, port_distributor: PortDistributor):
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: scripts/common.sh ensure_promtool installs it (Debian package prometheus)"
    env = neon_simple_env
    with streamed_primary(env.pageserver, test_output_dir, port_distributor.get_port()) as (pg, tenant_id, timeline_id):
        client = env.pageserver.http_client()
        pg.pgbench("-i", "-s", "1", "-q")
        lsn = pg.current_lsn()
        wait_ingested(client, tenant_id, timeline_id, lsn)
        client.timeline_compact(tenant_id, timeline_id)
        client.timeline_gc(tenant_id, timeline_id)

        def all_present() -> bool:
            text = client.metrics()
            return all(series(text, name, tenant_id, timeline_id) for name in PER_TIMELINE)

        wait_for(all_present, timeout=30, what="per-timeline series")
        # A second base backup reads the same values: from the page cache.
        def hits() -> float:
            return float(re.search(r"^pageserver_page_cache_hits_total (\S+)", client.metrics(), re.M).group(1))

        client.basebackup(tenant_id, timeline_id)
        before = hits()
        client.basebackup(tenant_id, timeline_id)
        assert hits() > before
        text = client.metrics()
        for name in GLOBAL:
            assert re.search(rf"^{name}", text, re.M), name
        connected = series(text, "pageserver_walreceiver_connected", tenant_id, timeline_id)[0]
        assert connected.endswith(" 1"), connected
        last = int(float(series(text, "pageserver_last_record_lsn", tenant_id, timeline_id)[0].split()[-1]))
        assert last >= lsn_int(lsn)
        wal_bytes = float(series(text, "pageserver_wal_ingest_bytes_total", tenant_id, timeline_id)[0].split()[-1])
        assert wal_bytes > 1 << 20

        res = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60)
        assert res.returncode == 0, f"promtool check metrics failed:\n{res.stdout}\n{res.stderr}"

        # The series go away with the timeline.
        client.timeline_set_wal_source(tenant_id, timeline_id, None)
        client.timeline_delete(tenant_id, timeline_id)
        text = client.metrics()
        for name in PER_TIMELINE:
            assert not series(text, name, tenant_id, timeline_id), name


def test_request_ids(neon_simple_env: NeonEnv):
    env = neon_simple_env
    port = env.pageserver.http_port
    res = raw_request("GET", port, "/v1/status", headers={"X-Request-Id": "my-request-7"})
    assert res.headers["x-request-id"] == "my-request-7"
    generated = raw_request("GET", port, "/v1/status").headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", generated), generated
    assert generated != raw_request("GET", port, "/v1/status").headers["x-request-id"]
    # A refused request is logged with its id and its tenant.
    missing = "0" * 32
    res = raw_request("GET", port, f"/v1/tenant/{missing}", headers={"X-Request-Id": "lost-tenant-42"})
    assert res.status_code == 404
    assert res.headers["x-request-id"] == "lost-tenant-42"
    line = env.pageserver.log_contains(r"request_id=lost-tenant-42")
    assert line is not None, "request id in the log"
    assert f"tenant_id={missing}" in line, line


def test_json_logs(neon_env_builder: NeonEnvBuilder):
    """log_format = "json": every log line is one JSON object, and a
    request's lines carry its span fields (request id, tenant id)."""
    neon_env_builder.pageserver_config_overrides["log_format"] = "json"
    env = neon_env_builder.init_start()
    client = env.pageserver.http_client()
    tenant_id = client.tenant_create()
    res = client.get(f"/v1/tenant/{tenant_id}", headers={"X-Request-Id": "json-log-check-1"})
    assert res.status_code == 200
    env.pageserver.stop()
    lines = [line for line in env.pageserver.log_path.read_text().splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]
    assert records and all("level" in r and "timestamp" in r for r in records)
    tagged = [r for r in records if "json-log-check-1" in json.dumps(r)]
    assert tagged, "no log line carries the request id"
    assert any(tenant_id in json.dumps(r) for r in tagged), tagged
