"""Base backups started on stock PostgreSQL 15: point-in-time restore at
recorded LSNs of a primary running pgbench, and bad requests."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from fixtures.neon_fixtures import NeonEnv
from fixtures.pageserver_http import PageserverApiException
from fixtures.pg import VanillaPostgres
from fixtures.port_distributor import PortDistributor
from fixtures.storage import lsn_int
from fixtures.workloads import streamed_primary, wait_ingested

POINTS = 10


def record_point(pg: VanillaPostgres) -> tuple[str, int, int]:
    """(LSN, sum(abalance), count(*) of history) exactly as of the LSN.

    The exclusive locks wait for every transaction that wrote the tables to
    finish and keep new ones out, so every change is committed below the
    LSN read under them, and nothing newer is in the sums."""
    conn = pg.connect()
    try:
        conn.autocommit = False
        with conn.cursor() as cur:
            cur.execute("LOCK TABLE pgbench_accounts, pgbench_history IN EXCLUSIVE MODE")
            cur.execute("SELECT sum(abalance), count(*) FROM pgbench_accounts")
            balance, _ = cur.fetchone()
            cur.execute("SELECT count(*) FROM pgbench_history")
            (history,) = cur.fetchone()
            cur.execute("SELECT pg_current_wal_lsn()")
            (lsn,) = cur.fetchone()
        conn.rollback()
    finally:
        conn.close()
    return lsn, int(balance), int(history)


def start_from_backup(tar: bytes, out: Path, port: int) -> VanillaPostgres:
    return VanillaPostgres(out, port, basebackup=tar, conf={"autovacuum": "off"}).start()


def test_point_in_time_restore(neon_simple_env: NeonEnv, test_output_dir: Path, port_distributor: PortDistributor):
    env = neon_simple_env
    client = env.pageserver.http_client()
    with streamed_primary(env.pageserver, test_output_dir, port_distributor.get_port()) as (pg, tenant_id, timeline_id):
        pg.pgbench("-i", "-s", "2", "-q")
        pg.sql("CREATE EXTENSION amcheck")

        # pgbench runs while points are recorded between its commits.
        bench = threading.Thread(target=pg.pgbench, args=("-T", "20", "-c", "2", "-j", "1"))
        bench.start()
        points = []
        try:
            deadline = time.monotonic() + 60
            while len(points) < POINTS and time.monotonic() < deadline:
                time.sleep(1.5)
                points.append(record_point(pg))
        finally:
            bench.join(timeout=120)
        assert len(points) == POINTS
        assert len({p[1:] for p in points}) > POINTS // 2, f"pgbench barely ran: {points}"

        wait_ingested(client, tenant_id, timeline_id, points[-1][0])
        for i, (lsn, balance, history) in enumerate(points):
            tar, backup_lsn = client.basebackup(tenant_id, timeline_id, lsn=lsn, gzip=(i % 2 == 1))
            assert backup_lsn == lsn
            restored = start_from_backup(tar, test_output_dir / f"restore_{i}", port_distributor.get_port())
            try:
                got = restored.sql("SELECT (SELECT sum(abalance) FROM pgbench_accounts), (SELECT count(*) FROM pgbench_history)")[0]
                assert (int(got[0]), int(got[1])) == (balance, history), f"point {i} at {lsn}"
                assert restored.sql("SELECT pg_is_in_recovery()")[0][0] is False
                restored.amcheck()
                log = restored.log_text()
                # It came up from the shutdown checkpoint, replaying nothing.
                assert "database system was shut down at" in log, log
                assert "redo starts" not in log, log
            finally:
                restored.destroy()


def test_basebackup_of_bootstrap_timeline_and_bad_requests(neon_simple_env: NeonEnv, test_output_dir: Path, port_distributor: PortDistributor):
    env = neon_simple_env
    client = env.pageserver.http_client()
    tenant_id = client.tenant_create()
    tl = client.timeline_create(tenant_id)
    timeline_id = tl["timeline_id"]

    tar, lsn = client.basebackup(tenant_id, timeline_id)
    assert lsn == tl["last_record_lsn"]
    compute = start_from_backup(tar, test_output_dir / "compute", port_distributor.get_port())
    try:
        # A complete cluster: all template databases, writable.
        dbs = {r[0] for r in compute.sql("SELECT datname FROM pg_database")}
        assert dbs == {"postgres", "template0", "template1"}
        compute.sql("CREATE TABLE t AS SELECT generate_series(1, 1000) g")
        assert compute.sql("SELECT sum(g) FROM t")[0][0] == 500500
    finally:
        compute.destroy()

    ahead = f"{lsn_int(lsn) // (1 << 32):X}/{(lsn_int(lsn) + (1 << 20)) % (1 << 32):X}"
    cases = [
        ({"lsn": "not-an-lsn"}, 400),
        ({"lsn": "0/10"}, 400),  # below the initdb point
        ({"lsn": "0/1000001"}, 400),  # not 8-byte aligned
        ({"gzip": "maybe"}, 400),
    ]
    for params, status in cases:
        res = client.get(f"/v1/tenant/{tenant_id}/timeline/{timeline_id}/basebackup", params=params)
        assert res.status_code == status, (params, res.text)
        assert res.json()["msg"]
    res = client.get(f"/v1/tenant/{tenant_id}/timeline/{'0' * 32}/basebackup")
    assert res.status_code == 404
    # An LSN that never arrives: a clear 503 after the wait (30 s).
    with pytest.raises(PageserverApiException) as e:
        client.basebackup(tenant_id, timeline_id, lsn=ahead)
    assert e.value.status_code == 503 and "timed out" in str(e.value)
