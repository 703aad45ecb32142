"""WAL ingest from a stock PostgreSQL 15 primary: a timeline created from a
base backup streams the primary's WAL; after pgbench and DDL, every block
of every relation's main fork at the primary's checkpoint LSN equals the
primary's data files (after wal_consistency_checking's masking), and so
do relation sizes and the CLOG."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from fixtures.neon_fixtures import NeonEnv, NeonEnvBuilder
from fixtures.pageserver_http import PageserverHttpClient
from fixtures.pg import VanillaPostgres, wait_for
from fixtures.storage import lsn_int
from fixtures.port_distributor import PortDistributor

PGBENCH_SCALE = int(os.environ.get("PGBENCH_SCALE", "5"))
PGBENCH_SECONDS = int(os.environ.get("PGBENCH_SECONDS", "30"))


def slru_key(kind: int, segno: int, blkno: int) -> str:
    return f"01{kind:08x}{1:08x}{segno:08x}00{blkno:08x}"


def workload(pg: VanillaPostgres) -> None:
    pg.pgbench("-i", "-s", str(PGBENCH_SCALE), "-q")
    pg.pgbench("-T", str(PGBENCH_SECONDS), "-c", "2", "-j", "1")
    pg.sql("CREATE TABLE t1 (id int PRIMARY KEY, v text)")
    pg.sql("INSERT INTO t1 SELECT g, repeat('v', g % 300) FROM generate_series(1, 5000) g")
    pg.sql("CREATE INDEX t1_v ON t1 (v)")
    pg.sql("CREATE TABLE t2 AS SELECT * FROM t1")
    pg.sql("DROP TABLE t2")
    pg.sql("TRUNCATE pgbench_history")
    pg.sql("DELETE FROM t1 WHERE id % 7 = 0")
    pg.sql("VACUUM t1")
    pg.sql(
        "BEGIN; INSERT INTO t1 VALUES (100001, 'a'); SAVEPOINT s1; INSERT INTO t1 VALUES (100002, 'b');"
        " ROLLBACK TO SAVEPOINT s1; SAVEPOINT s2; INSERT INTO t1 VALUES (100003, 'c'); RELEASE SAVEPOINT s2; COMMIT"
    )
    pg.sql("BEGIN; INSERT INTO t1 VALUES (100004, 'd'); PREPARE TRANSACTION 'p1'")
    pg.sql("COMMIT PREPARED 'p1'")
    pg.sql("BEGIN; INSERT INTO t1 VALUES (100005, 'e'); PREPARE TRANSACTION 'p2'")
    pg.sql("ROLLBACK PREPARED 'p2'")
    pg.sql("CREATE DATABASE db_wal STRATEGY wal_log")
    pg.sql("CREATE DATABASE db_copy STRATEGY file_copy")
    pg.sql("CREATE TABLE in_db (x int); INSERT INTO in_db SELECT generate_series(1, 1000)", dbname="db_wal")
    pg.sql("DROP DATABASE db_copy")


def relation_files(datadir: Path) -> list[tuple[Path, int, int, int]]:
    """(path, spcnode, dbnode, relnode) of every logged main fork file."""
    out = []
    dirs = [(datadir / "global", 1664, 0)] + [
        (d, 1663, int(d.name)) for d in sorted((datadir / "base").iterdir()) if d.name.isdigit()
    ]
    for d, spc, db in dirs:
        names = {p.name for p in d.iterdir()}
        for name in sorted(names):
            if name.isdigit() and f"{name}_init" not in names:
                out.append((d / name, spc, db, int(name)))
    return out


def compare_with_primary(client: PageserverHttpClient, tenant_id: str, timeline_id: str, pg: VanillaPostgres, lsn: str) -> int:
    compared = 0
    problems = []
    for path, spc, db, rel in relation_files(pg.datadir):
        r = client.test_compare_relation(tenant_id, timeline_id, str(path), spc, db, rel, lsn)
        # Trailing all-zero pages come from relation extension, which is not
        # WAL-logged: a physical standby lacks them too.
        if r["file_blocks"] - r["extra_zero_blocks"] != r["stored_blocks"] or r["mismatch_count"]:
            problems.append(f"{path}: {r}")
        compared += r["file_blocks"]
    assert not problems, "\n".join(problems[:20])
    # Transaction status of every xid: the CLOG pages as the primary wrote them.
    for seg_file in sorted((pg.datadir / "pg_xact").iterdir()):
        segno = int(seg_file.name, 16)
        data = seg_file.read_bytes()
        for blkno in range(len(data) // 8192):
            ours = client.test_get_value(tenant_id, timeline_id, slru_key(0, segno, blkno), lsn)
            assert ours[:8192] == data[blkno * 8192 : (blkno + 1) * 8192], f"CLOG segment {segno} page {blkno} differs"
    return compared


def start_primary(test_output_dir: Path, port_distributor: PortDistributor, variant: str) -> VanillaPostgres:
    initdb_args = ["--data-checksums"] if variant == "checksums" else []
    # No autovacuum: it could change pages after the CHECKPOINT the
    # comparison is made at, so that the files would be newer than its LSN.
    conf = {"autovacuum": "off"}
    if variant == "lz4":
        conf["wal_compression"] = "lz4"
    return VanillaPostgres(test_output_dir / "primary", port_distributor.get_port(), initdb_args, conf).start()


@pytest.mark.parametrize("variant", ["default", "checksums", "lz4"])
def test_streaming_ingest_matches_primary(neon_simple_env: NeonEnv, test_output_dir: Path, port_distributor: PortDistributor, variant: str):
    env = neon_simple_env
    # The primary stops at the end while the walreceiver is connected.
    env.pageserver.allowed_errors.append(".*WAL streaming from .* failed, reconnecting.*")
    pg = start_primary(test_output_dir, port_distributor, variant)
    try:
        client = env.pageserver.http_client()
        tenant_id = client.tenant_create()
        tl = client.timeline_create(tenant_id, wal_source_connstr=pg.connstr())
        timeline_id = tl["timeline_id"]
        assert tl["wal_source_connstr"] == pg.connstr()
        workload(pg)
        pg.sql("CHECKPOINT")
        lsn = pg.current_lsn()

        def caught_up():
            d = client.timeline_detail(tenant_id, timeline_id)
            assert d["state"] == "Active", d
            return lsn_int(d["last_record_lsn"]) >= lsn_int(lsn)

        wait_for(caught_up, timeout=300, what=f"ingest to reach {lsn}")
        detail = client.timeline_detail(tenant_id, timeline_id)
        assert detail["last_received_msg_lsn"] is not None and detail["last_received_msg_ts"] is not None
        blocks = compare_with_primary(client, tenant_id, timeline_id, pg, lsn)
        assert blocks > 1000
        # The slot holds WAL only up to what is durable here.
        wait_for(
            lambda: lsn_int(client.timeline_detail(tenant_id, timeline_id)["disk_consistent_lsn"]) >= lsn_int(lsn),
            what="an idle flush",
        )
        slot = pg.sql("SELECT restart_lsn FROM pg_replication_slots")
        assert len(slot) == 1
    finally:
        pg.destroy()


def test_streaming_survives_kill9_and_primary_restart(neon_simple_env: NeonEnv, test_output_dir: Path, port_distributor: PortDistributor):
    env = neon_simple_env
    env.pageserver.allowed_errors.append(".*WAL streaming from .* failed, reconnecting.*")
    pg = start_primary(test_output_dir, port_distributor, "default")
    try:
        client = env.pageserver.http_client()
        tenant_id = client.tenant_create()
        timeline_id = client.timeline_create(tenant_id, wal_source_connstr=pg.connstr())["timeline_id"]
        pg.pgbench("-i", "-s", "1", "-q")
        # kill -9 while WAL streams in; streaming resumes from disk_consistent_lsn.
        env.pageserver.stop(immediate=True)
        pg.pgbench("-T", "3", "-c", "2", "-j", "1")
        env.pageserver.start()
        pg.pgbench("-T", "3", "-c", "2", "-j", "1")
        # The primary restarts under us: the walreceiver reconnects.
        pg.stop("fast")
        pg.start()
        pg.sql("CREATE TABLE after_restart AS SELECT generate_series(1, 1000) AS x")
        pg.sql("CHECKPOINT")
        lsn = pg.current_lsn()
        wait_for(
            lambda: lsn_int(client.timeline_detail(tenant_id, timeline_id)["last_record_lsn"]) >= lsn_int(lsn),
            timeout=300,
            what=f"ingest to reach {lsn}",
        )
        assert compare_with_primary(client, tenant_id, timeline_id, pg, lsn) > 1000
    finally:
        pg.destroy()


def test_missing_page_images_break_the_timeline(neon_simple_env: NeonEnv, test_output_dir: Path, port_distributor: PortDistributor):
    """Without wal_consistency_checking, records change blocks without images:
    the timeline goes Broken saying what is needed, and stores no wrong page."""
    env = neon_simple_env
    env.pageserver.allowed_errors += [
        ".*WAL ingest from .* stopped: .*without a full page image.*",
        ".*WAL streaming from .* failed, reconnecting.*",
    ]
    pg = VanillaPostgres(test_output_dir / "primary", port_distributor.get_port(), conf={"wal_consistency_checking": "''"}).start()
    try:
        client = env.pageserver.http_client()
        tenant_id = client.tenant_create()
        timeline_id = client.timeline_create(tenant_id, wal_source_connstr=pg.connstr())["timeline_id"]
        before = client.timeline_detail(tenant_id, timeline_id)["last_record_lsn"]
        pg.sql("CREATE TABLE t (x int); INSERT INTO t VALUES (1); CHECKPOINT; INSERT INTO t VALUES (2); INSERT INTO t VALUES (3)")

        def broken():
            d = client.timeline_detail(tenant_id, timeline_id)
            return d if d["state"] == "Broken" else None

        d = wait_for(broken, timeout=60, what="the timeline to go Broken")
        assert "full_page_writes = on" in d["broken_reason"] and "wal_consistency_checking = 'all'" in d["broken_reason"], d
        assert "Heap" in d["broken_reason"] or "Btree" in d["broken_reason"], d
        # Nothing after the offending record was published.
        assert lsn_int(d["last_record_lsn"]) >= lsn_int(before)
        assert lsn_int(d["last_record_lsn"]) < lsn_int(pg.current_lsn())
    finally:
        pg.destroy()


def test_wal_source_route_and_password_masking(neon_simple_env: NeonEnv, test_output_dir: Path, port_distributor: PortDistributor):
    """A SCRAM-authenticated source: the password never shows in the API or
    the log; PUT wal_source stops and restarts streaming."""
    env = neon_simple_env
    env.pageserver.allowed_errors.append(".*WAL streaming from .* failed, reconnecting.*")
    secret = "s3cret-pass-w0rd"
    pg = VanillaPostgres(
        test_output_dir / "primary",
        port_distributor.get_port(),
        conf={"password_encryption": "'scram-sha-256'"},
        hba_first=["host replication repl 127.0.0.1/32 scram-sha-256", "host all repl 127.0.0.1/32 scram-sha-256"],
    ).start()
    try:
        pg.sql(f"CREATE ROLE repl WITH LOGIN REPLICATION PASSWORD '{secret}'")
        pg.sql("GRANT pg_read_all_data TO repl")
        connstr = f"postgresql://repl:{secret}@127.0.0.1:{pg.port}/postgres"
        client = env.pageserver.http_client()
        tenant_id = client.tenant_create()
        tl = client.timeline_create(tenant_id, wal_source_connstr=connstr)
        timeline_id = tl["timeline_id"]
        assert secret not in str(tl) and tl["wal_source_connstr"] == f"postgresql://repl:********@127.0.0.1:{pg.port}/postgres"

        def reaches(lsn: str):
            return lambda: lsn_int(client.timeline_detail(tenant_id, timeline_id)["last_record_lsn"]) >= lsn_int(lsn)

        pg.sql("CREATE TABLE t AS SELECT generate_series(1, 100) AS x")
        wait_for(reaches(pg.current_lsn()), what="streaming with SCRAM")

        slots = lambda: [r[0] for r in pg.sql("SELECT slot_name FROM pg_replication_slots")]  # noqa: E731
        assert slots() == [f"pageserver_{timeline_id}"]
        # Clearing the source stops streaming and drops the slot, so the
        # primary no longer keeps WAL for us.
        info = client.timeline_set_wal_source(tenant_id, timeline_id, None)
        assert info["wal_source_connstr"] is None
        assert slots() == []
        stopped_at = client.timeline_detail(tenant_id, timeline_id)["last_record_lsn"]
        pg.sql("INSERT INTO t SELECT generate_series(1, 100)")
        target = pg.current_lsn()
        import time

        time.sleep(2)
        assert client.timeline_detail(tenant_id, timeline_id)["last_record_lsn"] == stopped_at
        # Setting it again resumes from where ingest stopped; it survives a restart.
        client.timeline_set_wal_source(tenant_id, timeline_id, connstr)
        wait_for(reaches(target), what="streaming to resume")
        env.pageserver.restart()
        pg.sql("INSERT INTO t SELECT generate_series(1, 100)")
        wait_for(reaches(pg.current_lsn()), what="streaming after a restart")
        assert client.timeline_detail(tenant_id, timeline_id)["wal_source_connstr"].startswith("postgresql://repl:********@")
        # Bad connection strings are a 400 that names the problem.
        res = client.put(f"/v1/tenant/{tenant_id}/timeline/{timeline_id}/wal_source", json={"wal_source_connstr": "postgresql://u@h?bogus=1"})
        assert res.status_code == 400 and "bogus" in res.json()["msg"]
        assert secret not in env.pageserver.log_path.read_text()
        # Deleting the timeline, or its whole tenant, drops its slot.
        assert slots() == [f"pageserver_{timeline_id}"]
        client.timeline_delete(tenant_id, timeline_id)
        assert slots() == []
        other = client.timeline_create(tenant_id, wal_source_connstr=connstr)["timeline_id"]
        wait_for(lambda: slots() == [f"pageserver_{other}"], what="the new timeline's slot")
        client.tenant_delete(tenant_id)
        assert slots() == []
    finally:
        pg.destroy()
