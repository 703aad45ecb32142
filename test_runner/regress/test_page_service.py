"""The page service: libpq startup and auth, commands, and pagestream_v2
(requests, LSN semantics, pipelining, errors) against a timeline ingested
from a stock PostgreSQL 15 primary, or bootstrapped with initdb."""

from __future__ import annotations

import concurrent.futures
import socket
import struct
import time
from pathlib import Path

import pytest

from fixtures.neon_fixtures import NeonEnv, NeonEnvBuilder
from fixtures.page_service import (
    BLCKSZ,
    CLOG,
    DEFAULT_TABLESPACE,
    ConnectionClosed,
    PageServiceConn,
    PgError,
    Rel,
    frame,
    mask_page,
    parse_fields,
    read_relation,
    relation_files,
    req_db_size,
    req_exists,
    req_get_page,
    req_nblocks,
    req_slru_segment,
)
from fixtures.pg import VanillaPostgres, wait_for
from fixtures.port_distributor import PortDistributor
from fixtures.workloads import streamed_primary, wait_ingested
from fixtures.storage import lsn_int

# pg_class of template1 in a fresh initdb cluster: present in every
# bootstrapped timeline.
PG_CLASS = Rel(DEFAULT_TABLESPACE, 1, 1259)


def bootstrap(env: NeonEnv) -> tuple[str, str, int]:
    client = env.pageserver.http_client()
    tenant_id = client.tenant_create()
    timeline_id = client.timeline_create(tenant_id)["timeline_id"]
    last = lsn_int(client.timeline_detail(tenant_id, timeline_id)["last_record_lsn"])
    return tenant_id, timeline_id, last


def metric_sum(env: NeonEnv, name: str, label: str = "") -> float:
    total = 0.0
    for line in env.pageserver.http_client().metrics().splitlines():
        if line.startswith(name) and label in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


@pytest.fixture
def primary_timeline(neon_simple_env: NeonEnv, test_output_dir: Path, port_distributor: PortDistributor):
    """A pgbench database on a primary, streamed into a timeline, quiescent
    and checkpointed: (env, primary, tenant_id, timeline_id, lsn)."""
    env = neon_simple_env
    with streamed_primary(env.pageserver, test_output_dir, port_distributor.get_port()) as (pg, tenant_id, timeline_id):
        client = env.pageserver.http_client()
        pg.pgbench("-i", "-s", "1", "-q")
        pg.pgbench("-t", "200", "-c", "2", "-j", "1")
        pg.sql("CREATE TABLE t1 AS SELECT g AS id, repeat('x', g % 100) AS v FROM generate_series(1, 3000) g")
        pg.sql("CREATE INDEX t1_id ON t1 (id)")
        pg.sql("CHECKPOINT")
        lsn = pg.current_lsn()
        wait_ingested(client, tenant_id, timeline_id, lsn)
        yield env, pg, tenant_id, timeline_id, lsn_int(lsn)


def test_pagestream_matches_primary(primary_timeline):
    """GetPage, Exists, Nblocks, DbSize and GetSlruSegment agree with the
    primary's files and catalog at a checkpointed LSN."""
    env, pg, tenant_id, timeline_id, lsn = primary_timeline
    pages = 0
    with PageServiceConn(env.pageserver.pg_port) as c:
        c.start_pagestream(tenant_id, timeline_id)
        expected_db_size: dict[int, int] = {}
        for path, rel in relation_files(pg.datadir):
            data = read_relation(path)
            file_blocks = len(data) // BLCKSZ
            assert c.request(req_exists(rel, lsn, lsn)).value is True, rel
            n = c.request(req_nblocks(rel, lsn, lsn))
            assert n.kind == "nblocks", (rel, n)
            # Trailing zero pages come from relation extension, which is not
            # WAL-logged: a physical standby lacks them too.
            assert n.value <= file_blocks, (rel, n.value, file_blocks)
            assert all(b == 0 for b in data[n.value * BLCKSZ :]), rel
            if rel.spcnode == DEFAULT_TABLESPACE:
                expected_db_size[rel.dbnode] = expected_db_size.get(rel.dbnode, 0) + n.value * BLCKSZ
            c.send_requests([req_get_page(rel, blk, lsn, lsn) for blk in range(n.value)])
            for blk in range(n.value):
                r = c.read_response()
                assert r.kind == "page", (rel, blk, r)
                theirs = data[blk * BLCKSZ : (blk + 1) * BLCKSZ]
                assert mask_page(r.value) == mask_page(theirs), f"{path} block {blk} differs"
                pages += 1
        assert pages > 500

        # pg_relation_size: exact for a table one session wrote (every page
        # logged); pgbench's tables may end in empty pages that concurrent
        # inserts added without WAL.
        dbnode = pg.sql("SELECT oid FROM pg_database WHERE datname = 'postgres'")[0][0]
        for table, exact in [("t1", True), ("t1_id", True), ("pgbench_accounts", False), ("pgbench_branches", False)]:
            relnode = pg.sql(f"SELECT relfilenode FROM pg_class WHERE relname = '{table}'")[0][0]
            size = pg.sql(f"SELECT pg_relation_size('{table}')")[0][0]
            ours = c.request(req_nblocks(Rel(DEFAULT_TABLESPACE, dbnode, relnode), lsn, lsn)).value * BLCKSZ
            assert ours == size if exact else 0 < ours <= size, (table, ours, size)
        relnode = pg.sql("SELECT relfilenode FROM pg_class WHERE relname = 'pgbench_accounts'")[0][0]
        accounts = Rel(DEFAULT_TABLESPACE, dbnode, relnode)

        # DbSize: the main and init forks we store (no FSM or VM forks).
        # Init forks (unlogged relations) are counted too: add them.
        for path in (pg.datadir / "base").glob("*/*_init"):
            db = int(path.parent.name)
            expected_db_size[db] = expected_db_size.get(db, 0) + path.stat().st_size
        for db, expected in expected_db_size.items():
            r = c.request(req_db_size(db, lsn, lsn))
            assert r == type(r)("db_size", expected), (db, r, expected)
        assert c.request(req_db_size(999999, lsn, lsn)).value == 0

        # The CLOG as the primary wrote it.
        for seg_file in sorted((pg.datadir / "pg_xact").iterdir()):
            data = seg_file.read_bytes()
            r = c.request(req_slru_segment(CLOG, int(seg_file.name, 16), lsn, lsn))
            assert r.kind == "slru", r
            assert len(r.value) >= len(data) and r.value[: len(data)] == data, seg_file
            assert all(b == 0 for b in r.value[len(data) :])

        # Absent objects.
        missing = Rel(DEFAULT_TABLESPACE, dbnode, 999999)
        assert c.request(req_exists(missing, lsn, lsn)).value is False
        r = c.request(req_nblocks(missing, lsn, lsn))
        assert r.kind == "error" and "does not exist" in r.value, r
        r = c.request(req_get_page(accounts, 10**6, lsn, lsn))
        assert r.kind == "error" and "past its end" in r.value, r
        r = c.request(req_slru_segment(CLOG, 0x7777, lsn, lsn))
        assert r.kind == "error" and "does not exist" in r.value, r
        # Latest (u64::MAX) works too, and the stream ends cleanly.
        assert c.request(req_get_page(accounts, 0)).kind == "page"
        # A stream gone quiet publishes its latencies within about a second,
        # while it is still open.
        db_size_requests = len(expected_db_size) + 1
        deadline = time.monotonic() + 10
        while metric_sum(env, "pageserver_page_service_request_seconds_count", 'request_type="db_size"') < db_size_requests:
            assert time.monotonic() < deadline, "an open, quiet stream did not publish its latencies"
            time.sleep(0.2)
        c.end_pagestream()
        # The session goes on after the stream.
        c.start_pagestream(tenant_id, timeline_id)
        assert c.request(req_exists(accounts)).value is True
    assert metric_sum(env, "pageserver_page_service_request_seconds_count", 'request_type="get_page"') >= pages
    assert metric_sum(env, "pageserver_page_service_errors_total", 'kind="past_end"') >= 1


def test_pagestream_pipelining(primary_timeline):
    """200 requests sent before any response is read come back in order,
    errors included, on several connections at once."""
    env, pg, tenant_id, timeline_id, lsn = primary_timeline
    relnode = pg.sql("SELECT relfilenode FROM pg_class WHERE relname = 'pgbench_accounts'")[0][0]
    dbnode = pg.sql("SELECT oid FROM pg_database WHERE datname = 'postgres'")[0][0]
    rel = Rel(DEFAULT_TABLESPACE, dbnode, relnode)
    with PageServiceConn(env.pageserver.pg_port) as c:
        c.start_pagestream(tenant_id, timeline_id)
        nblocks = c.request(req_nblocks(rel, lsn, lsn)).value
        assert nblocks > 200
        one_by_one = {blk: c.request(req_get_page(rel, blk, lsn, lsn)).value for blk in range(200)}
    assert len(set(one_by_one.values())) == 200, "distinct pages, so order is visible"

    def run(seed: int) -> None:
        blocks = [(seed * 37 + i * 13) % 200 for i in range(200)]
        reqs = []
        for i, blk in enumerate(blocks):
            # Every 10th request fails (past the end) without breaking the order.
            reqs.append(req_get_page(rel, nblocks + i if i % 10 == 9 else blk, lsn, lsn))
        with PageServiceConn(env.pageserver.pg_port) as c:
            c.start_pagestream(tenant_id, timeline_id)
            c.send_requests(reqs)
            for i, blk in enumerate(blocks):
                r = c.read_response()
                if i % 10 == 9:
                    assert r.kind == "error" and f"block {nblocks + i} " in r.value, (i, r)
                else:
                    assert r.kind == "page" and r.value == one_by_one[blk], (seed, i, blk)
            c.end_pagestream()

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        for f in [pool.submit(run, s) for s in range(4)]:
            f.result()
    assert metric_sum(env, "pageserver_page_service_requests_in_flight") == 0


def test_pagestream_bad_input(neon_simple_env: NeonEnv):
    """Bad requests get Error responses and the stream goes on; broken
    streams get an ErrorResponse; other connections are never affected."""
    env = neon_simple_env
    tenant_id, timeline_id, last = bootstrap(env)
    port = env.pageserver.pg_port
    with PageServiceConn(port, ssl_request=True) as c, PageServiceConn(port) as other:
        # Unknown command: names the known ones; the session goes on.
        with pytest.raises(PgError) as e:
            c.query("basebackup_v9 x y")
        assert e.value.code == "42601" and "pagestream_v2" in e.value.message
        for bad in ["pagestream_v2", f"pagestream_v2 {tenant_id}", f"pagestream_v2 nope {timeline_id}"]:
            with pytest.raises(PgError) as e:
                c.query(bad)
            assert e.value.code == "42601", e.value
        with pytest.raises(PgError) as e:
            c.start_pagestream("00" * 16, timeline_id)
        assert "not found" in e.value.message
        with pytest.raises(PgError) as e:
            c.start_pagestream(tenant_id, "00" * 16)
        assert "not found" in e.value.message

        c.start_pagestream(tenant_id, timeline_id)
        good = req_exists(PG_CLASS)
        bad_requests = [
            (b"\x09" + bytes(30), "unknown request type 9"),
            (good[:-1], "expected 30"),
            (b"", "empty request"),
            (req_get_page(Rel(0, 1, 1259), 0), "must not be 0"),
            (req_get_page(Rel(DEFAULT_TABLESPACE, 1, 1259, 7), 0), "forknum"),
            (req_slru_segment(5, 0), "unknown SLRU kind"),
            (req_get_page(PG_CLASS, 0, lsn=100, nms=200), "not_modified_since"),
        ]
        for req, want in bad_requests:
            r = c.request(req)
            assert r.kind == "error" and want in r.value, (req, r)
            assert c.request(good).value is True
        # A message that does not belong in the stream ends it (framing is
        # intact, so the session goes on).
        c.send(b"Q", b"select 1\0")
        with pytest.raises(PgError) as e:
            c.read_until_ready()
        assert e.value.code == "08P01" and "inside pagestream_v2" in e.value.message
        c.start_pagestream(tenant_id, timeline_id)
        assert c.request(good).value is True

        # An oversized frame breaks the framing: FATAL, then the server closes.
        c.sock.sendall(b"d" + struct.pack(">I", (2 << 20) + 4))
        with pytest.raises(PgError) as e:
            c.read_response()
        assert e.value.severity == "FATAL" and "limit" in e.value.message
        with pytest.raises((ConnectionClosed, OSError)):
            c.read_message()

        # The other connection never noticed.
        other.start_pagestream(tenant_id, timeline_id)
        assert other.request(good).value is True
        assert other.request(req_nblocks(PG_CLASS)).value > 0

    # Garbage instead of a startup packet, and an unsupported protocol version.
    for junk in [b"\x00\x00\x00\x03xxxx", struct.pack(">II", 8, 2 << 16)]:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(junk)
            data = s.recv(4096)
            assert data[:1] == b"E" and b"08P01" in data, data
    # Extended protocol messages are refused, the session goes on.
    with PageServiceConn(port) as c:
        c.send(b"P", b"\0select 1\0\0\0")
        with pytest.raises(PgError) as e:
            c.read_until_ready()
        assert e.value.code == "0A000"
        c.start_pagestream(tenant_id, timeline_id)
        assert c.request(req_exists(PG_CLASS)).value is True
    assert metric_sum(env, "pageserver_page_service_errors_total", 'kind="bad_request"') >= len(bad_requests)
    assert metric_sum(env, "pageserver_page_service_errors_total", 'kind="protocol"') >= 3


def test_pagestream_lsn_waits_and_gc_cutoff(neon_env_builder: NeonEnvBuilder):
    """A request above the last record LSN waits, then errors after
    wait_lsn_timeout; not_modified_since decides what is waited for; below
    the GC cutoff is an error."""
    neon_env_builder.pageserver_config_overrides["wait_lsn_timeout"] = "1s"
    env = neon_env_builder.init_start()
    tenant_id, timeline_id, last = bootstrap(env)
    client = env.pageserver.http_client()
    with PageServiceConn(env.pageserver.pg_port) as c:
        c.start_pagestream(tenant_id, timeline_id)
        future = last + (16 << 20)
        started = time.monotonic()
        r = c.request(req_get_page(PG_CLASS, 0, future, future))
        waited = time.monotonic() - started
        assert r.kind == "error" and "timed out" in r.value, r
        assert waited >= 0.9, waited
        # Only not_modified_since is waited for: the page is read at the last
        # record LSN at once.
        r = c.request(req_get_page(PG_CLASS, 0, future, last))
        assert r.kind == "page"
        assert r.value == c.request(req_get_page(PG_CLASS, 0, last, last)).value
        # Pipelined behind a waiting request, later requests wait their turn
        # but still come back, in order.
        c.send_requests([req_nblocks(PG_CLASS, future, future), req_exists(PG_CLASS)])
        assert c.read_response().kind == "error"
        assert c.read_response().value is True

        cutoff = lsn_int(client.timeline_gc(tenant_id, timeline_id, gc_horizon=0)["cutoff"])
        r = c.request(req_get_page(PG_CLASS, 0, cutoff - 8, cutoff - 8))
        assert r.kind == "error" and "GC cutoff" in r.value, r
        r = c.request(req_exists(PG_CLASS, 0x10, 0x10))
        assert r.kind == "error" and "GC cutoff" in r.value, r
        assert c.request(req_get_page(PG_CLASS, 0, cutoff, cutoff)).kind == "page"
    assert metric_sum(env, "pageserver_page_service_errors_total", 'kind="lsn_timeout"') >= 2
    assert metric_sum(env, "pageserver_page_service_errors_total", 'kind="below_gc_cutoff"') >= 2


def test_page_service_auth(neon_env_builder: NeonEnvBuilder):
    """Under JWT auth the token is the password; the tenant of each command
    must be allowed by it; a refused command leaves the session usable."""
    neon_env_builder.auth_enabled = True
    env = neon_env_builder.init_start()
    tenant_id, timeline_id, _ = bootstrap(env)
    other_tenant = env.pageserver.http_client().tenant_create()
    keys = env.auth_keys
    port = env.pageserver.pg_port

    for bad in ["garbage", keys.expired_token(), ""]:
        with pytest.raises(PgError) as e:
            PageServiceConn(port, password=bad)
        assert e.value.code == "28000" and e.value.severity == "FATAL", e.value
    with pytest.raises(AssertionError, match="asked for a password"):
        PageServiceConn(port)

    with PageServiceConn(port, password=keys.tenant_token(other_tenant)) as c:
        with pytest.raises(PgError) as e:
            c.start_pagestream(tenant_id, timeline_id)
        assert e.value.code == "42501" and tenant_id in e.value.message
        # Still usable: its own tenant is allowed (that one has no such
        # timeline, which is a different error).
        with pytest.raises(PgError) as e:
            c.start_pagestream(other_tenant, timeline_id)
        assert "not found" in e.value.message
    with PageServiceConn(port, password=keys.token("generations_api")) as c:
        with pytest.raises(PgError) as e:
            c.start_pagestream(tenant_id, timeline_id)
        assert e.value.code == "42501"
    for token in [keys.tenant_token(tenant_id), keys.admin_token()]:
        with PageServiceConn(port, password=token) as c:
            c.start_pagestream(tenant_id, timeline_id)
            assert c.request(req_exists(PG_CLASS)).value is True
            c.end_pagestream()
    assert metric_sum(env, "pageserver_page_service_errors_total", 'kind="auth"') >= 3
    assert metric_sum(env, "pageserver_page_service_errors_total", 'kind="permission"') >= 2


def test_page_service_shutdown_and_idle(neon_env_builder: NeonEnvBuilder):
    """Idle connections are closed after page_service_idle_timeout; open
    streams do not hold up a clean shutdown."""
    neon_env_builder.pageserver_config_overrides["page_service_idle_timeout"] = "2s"
    env = neon_env_builder.init_start()
    tenant_id, timeline_id, last = bootstrap(env)
    port = env.pageserver.pg_port
    with PageServiceConn(port) as idle:
        time.sleep(3)
        tag, body = idle.read_message()
        err = PgError(parse_fields(body))
        assert tag == b"E" and err.code == "57P05" and err.severity == "FATAL", err
    with PageServiceConn(port) as c:
        c.start_pagestream(tenant_id, timeline_id)
        time.sleep(3)
        with pytest.raises(PgError) as e:
            c.read_response()
        assert e.value.code == "57P05"
    # Streams open (one waiting for an LSN) while the server stops.
    a = PageServiceConn(port)
    a.start_pagestream(tenant_id, timeline_id)
    assert a.request(req_exists(PG_CLASS)).value is True
    a.send_request(req_get_page(PG_CLASS, 0, last + (1 << 30), last + (1 << 30)))
    b = PageServiceConn(port)
    # Exits with code 0 (asserted by stop()) although both are connected.
    env.pageserver.stop()
    with pytest.raises(PgError) as e:
        a.read_response()
    assert e.value.code == "57P01"
    a.close()
    b.close()


def test_page_service_raw_frames(neon_simple_env: NeonEnv):
    """Frames split across writes and many frames in one write are both read."""
    env = neon_simple_env
    tenant_id, timeline_id, _ = bootstrap(env)
    with PageServiceConn(env.pageserver.pg_port) as c:
        c.start_pagestream(tenant_id, timeline_id)
        data = b"".join(frame(b"d", req_exists(PG_CLASS)) for _ in range(50))
        for i in range(0, len(data), 7):
            c.sock.sendall(data[i : i + 7])
            time.sleep(0.001)
        for _ in range(50):
            assert c.read_response().value is True
        assert c.request(req_db_size(1)).value > 0
        c.sock.sendall(frame(b"X", b""))
        with pytest.raises((ConnectionClosed, OSError)):
            c.read_message()
