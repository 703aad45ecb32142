"""Imports over the page service: a `pg_basebackup -Ft` tar of a live
primary plus its WAL make a timeline whose base backups give the primary's
query results; incomplete or inconsistent input is refused and leaves
nothing readable. Also the `basebackup` command's CopyOut."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest

from fixtures.neon_fixtures import NeonEnv
from fixtures.page_service import PageServiceConn, PgError
from fixtures.pageserver_http import PageserverApiException
from fixtures.pg import PG_BIN, VanillaPostgres, give_to_pg_user
from fixtures.port_distributor import PortDistributor
from fixtures.storage import lsn_int

SEG = 16 << 20


def take_basebackup(pg: VanillaPostgres) -> tuple[bytes, str, str]:
    """(base.tar, start LSN, end LSN) of a pg_basebackup -Ft -X none."""
    out = pg.scratch / "backup"
    out.mkdir()
    give_to_pg_user(out)
    pg.run([str(PG_BIN / "pg_basebackup"), "-h", "127.0.0.1", "-p", str(pg.port), "-U", "postgres",
            "-D", str(out), "-Ft", "-X", "none", "-c", "fast", "--no-sync"])
    ranges = json.loads((out / "backup_manifest").read_text())["WAL-Ranges"][-1]
    return (out / "base.tar").read_bytes(), ranges["Start-LSN"], ranges["End-LSN"]


def wal_from(pg: VanillaPostgres, start: str, end: str) -> bytes:
    """The primary's WAL segment files from the one holding ``start`` to the
    one holding ``end``, concatenated."""
    first, last = lsn_int(start) // SEG, lsn_int(end) // SEG
    data = b""
    for segno in range(first, last + 1):
        name = f"{1:08X}{segno // 256:08X}{segno % 256:08X}"
        data += (pg.datadir / "pg_wal" / name).read_bytes()
    return data


def test_import_basebackup_and_wal(neon_simple_env: NeonEnv, test_output_dir: Path, port_distributor: PortDistributor):
    env = neon_simple_env
    client = env.pageserver.http_client()
    pg = VanillaPostgres(test_output_dir / "primary", port_distributor.get_port(), conf={"autovacuum": "off"}).start()
    try:
        pg.pgbench("-i", "-s", "1", "-q")
        base_tar, start, end = take_basebackup(pg)
        pg.pgbench("-t", "300", "-c", "2", "-j", "1")
        balance, history, lsn = pg.sql(
            "SELECT (SELECT sum(abalance) FROM pgbench_accounts), (SELECT count(*) FROM pgbench_history), pg_current_wal_lsn()"
        )[0]
        wal = wal_from(pg, start, lsn)
    finally:
        pg.destroy()

    tenant_id = client.tenant_create()
    timeline_id = "a1" * 16
    ps = env.pageserver.pg_port

    # Refused input creates nothing.
    with PageServiceConn(ps) as c:
        with pytest.raises(PgError, match="START_LSN"):
            c.copy_in(f"import basebackup {tenant_id} {timeline_id} nope {end}", b"")
        with pytest.raises(PgError, match="backup_label"):
            c.copy_in(f"import basebackup {tenant_id} {timeline_id} 0/3000028 {end}", base_tar)
        with pytest.raises(PgError):
            c.copy_in(f"import basebackup {tenant_id} {timeline_id} {start} {end}", base_tar[: len(base_tar) // 2 + 100])
        with pytest.raises(PgError):
            c.copy_in(f"import basebackup {tenant_id} {timeline_id} {start} {end}", base_tar[:100000], done=False)
        # The session is still usable after the failures.
        c.copy_in(f"import basebackup {tenant_id} {timeline_id} {start} {end}", base_tar)
        with pytest.raises(PgError, match="already exists"):
            c.copy_in(f"import basebackup {tenant_id} {timeline_id} {start} {end}", b"")
    detail = client.timeline_detail(tenant_id, timeline_id)
    assert detail["last_record_lsn"] == start
    # Not readable until the WAL up to the backup's end is in.
    with pytest.raises(PageserverApiException) as e:
        client.basebackup(tenant_id, timeline_id, lsn=start)
    assert e.value.status_code == 400 and "GC cutoff" in e.value.msg

    with PageServiceConn(ps) as c:
        # WAL that stops short of the end LSN: an error; what came in is
        # kept, still unreadable.
        short_end = lsn_int(start) + 4096
        cut = short_end - (lsn_int(start) // SEG) * SEG
        with pytest.raises(PgError, match="ended"):
            c.copy_in(f"import wal {tenant_id} {timeline_id} {start} {lsn}", wal[:cut])
        with pytest.raises(PgError, match="missing"):
            c.copy_in(f"import wal {tenant_id} {timeline_id} {lsn} {lsn}", wal)
        # A second import continues from where the first stopped, sending
        # from the segment that holds that point.
        reached = client.timeline_detail(tenant_id, timeline_id)["last_record_lsn"]
        skip = (lsn_int(reached) // SEG - lsn_int(start) // SEG) * SEG
        c.copy_in(f"import wal {tenant_id} {timeline_id} {reached} {lsn}", wal[skip:])
    detail = client.timeline_detail(tenant_id, timeline_id)
    assert lsn_int(detail["last_record_lsn"]) >= lsn_int(lsn)
    assert lsn_int(detail["disk_consistent_lsn"]) >= lsn_int(lsn)

    # The base backup command over the page service, compared with HTTP.
    with PageServiceConn(ps) as c:
        tar = c.copy_out(f"basebackup {tenant_id} {timeline_id} {lsn}")
        gz = c.copy_out(f"basebackup {tenant_id} {timeline_id} {lsn} --gzip")
        with pytest.raises(PgError, match="GC cutoff"):
            c.copy_out(f"basebackup {tenant_id} {timeline_id} 0/10")
    names = sorted(m.name for m in tarfile.open(fileobj=io.BytesIO(tar)).getmembers() if not m.name.startswith("pg_wal"))
    names_gz = sorted(m.name for m in tarfile.open(fileobj=io.BytesIO(gz), mode="r:gz").getmembers() if not m.name.startswith("pg_wal"))
    assert names == names_gz and "global/pg_control" in names

    restored = VanillaPostgres(test_output_dir / "restored", port_distributor.get_port(), basebackup=tar).start()
    try:
        got = restored.sql("SELECT (SELECT sum(abalance) FROM pgbench_accounts), (SELECT count(*) FROM pgbench_history)")[0]
        assert (int(got[0]), got[1]) == (int(balance), history)
        restored.amcheck()
    finally:
        restored.destroy()
