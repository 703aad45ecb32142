"""Sizes: the incremental logical size equals a recount under pgbench
ingest and after a restart; the synthetic size of a main timeline with two
branches grows by a branch's WAL only when that branch is written, shrinks
when retention is shortened, and comes with its inputs and an SVG."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from fixtures.neon_fixtures import NeonEnv
from fixtures.pageserver_http import PageserverHttpClient
from fixtures.workloads import streamed_primary, wait_ingested
from fixtures.pg import VanillaPostgres, wait_for
from fixtures.port_distributor import PortDistributor
from fixtures.storage import block_key, lsn_int, lsn_str

# A relation that is in no relation directory: its blocks cost WAL (LSN
# distance) but no logical size.
SCRATCH_REL = 99999


def sizes_agree(client: PageserverHttpClient, tenant_id: str, timeline_id: str) -> bool:
    d = client.timeline_detail(tenant_id, timeline_id, include_non_incremental_logical_size=True, include_non_incremental_physical_size=True)
    assert d["current_physical_size_non_incremental"] is not None
    inc, full = d["current_logical_size"], d["current_logical_size_non_incremental"]
    return inc is not None and inc == full and full > 0


def test_logical_size_incremental_equals_recount(neon_simple_env: NeonEnv, test_output_dir: Path, port_distributor: PortDistributor):
    env = neon_simple_env
    with streamed_primary(env.pageserver, test_output_dir, port_distributor.get_port()) as (pg, tenant_id, timeline_id):
        client = env.pageserver.http_client()
        pg.pgbench("-i", "-s", "2", "-q")
        pg.pgbench("-T", "5", "-c", "2", "-j", "1")
        pg.sql("CREATE TABLE big AS SELECT g, repeat('x', 200) AS v FROM generate_series(1, 20000) g")
        pg.sql("CREATE TABLE gone AS SELECT * FROM big")
        pg.sql("DROP TABLE gone")
        pg.sql("TRUNCATE pgbench_history")
        pg.sql("CREATE DATABASE other")
        pg.sql("CREATE TABLE t AS SELECT generate_series(1, 5000) x", dbname="other")
        pg.sql("DROP DATABASE other")
        wait_ingested(client, tenant_id, timeline_id, pg.current_lsn())
        # Ingest has quiesced at (or just past) lsn: both sizes are taken at
        # the same last record LSN once no size-changing record arrives.
        wait_for(lambda: sizes_agree(client, tenant_id, timeline_id), timeout=60, what="incremental == non-incremental logical size")
        size = client.timeline_detail(tenant_id, timeline_id)["current_logical_size"]
        assert size > 20000 * 200, "the big table counts"

        client.timeline_checkpoint(tenant_id, timeline_id)
        env.pageserver.restart()
        client = env.pageserver.http_client()
        wait_for(lambda: sizes_agree(client, tenant_id, timeline_id), timeout=60, what="logical size after restart")
        assert client.timeline_detail(tenant_id, timeline_id)["current_logical_size"] == size


def put_wal(client: PageserverHttpClient, tenant_id: str, timeline_id: str, distance: int) -> int:
    """Advances the timeline by ``distance`` bytes of LSN with one page image."""
    last = lsn_int(client.timeline_detail(tenant_id, timeline_id)["last_record_lsn"])
    end = last + distance
    client.test_put_images(tenant_id, timeline_id, [(block_key(0, SCRATCH_REL), lsn_str(end), b"\x01" * 8192)], lsn_str(end))
    return end


def by_id(size: dict) -> dict:
    return {s["timeline_id"]: s for s in size["segments"]}


def test_synthetic_size_with_branches(neon_simple_env: NeonEnv):
    env = neon_simple_env
    client = env.pageserver.http_client()
    tenant_id = client.tenant_create(conf={"gc_horizon": 1 << 40, "pitr_interval": "0s"})
    main = client.timeline_create(tenant_id)
    main_id = main["timeline_id"]
    start = lsn_int(main["last_record_lsn"])

    base = client.tenant_size(tenant_id)
    assert base["id"] == tenant_id
    seg = by_id(base)[main_id]
    assert seg["kind"] == "logical_and_wal" and seg["wal_bytes"] == 0
    assert base["size"] == seg["logical_size"] > 1 << 20, "initdb's databases"

    b1_point = put_wal(client, tenant_id, main_id, 0x10000)
    b1 = client.timeline_create(tenant_id, ancestor_timeline_id=main_id, ancestor_start_lsn=lsn_str(b1_point))["timeline_id"]
    b2_point = put_wal(client, tenant_id, main_id, 0x20000)
    b2 = client.timeline_create(tenant_id, ancestor_timeline_id=main_id)["timeline_id"]
    before = client.tenant_size(tenant_id)
    segs = by_id(before)
    assert segs[main_id]["wal_bytes"] == b2_point - start
    assert before["size"] == base["size"] + (b2_point - start)
    for b, point in ((b1, b1_point), (b2, b2_point)):
        assert segs[b]["kind"] == "branch_wal" and segs[b]["start_lsn"] == lsn_str(point) and segs[b]["size"] == 0

    # Writing to one branch grows the size by that branch's WAL only.
    put_wal(client, tenant_id, b1, 0x30000)
    after = client.tenant_size(tenant_id)
    assert after["size"] == before["size"] + 0x30000
    assert by_id(after)[b1]["wal_bytes"] == 0x30000
    assert by_id(after)[b2] == segs[b2] and by_id(after)[main_id] == segs[main_id]

    # Inputs: the tree, cutoffs and logical sizes, without a size.
    inputs = client.tenant_size(tenant_id, inputs_only=True)
    assert "size" not in inputs
    tls = {t["timeline_id"]: t for t in inputs["inputs"]["timelines"]}
    assert set(tls) == {main_id, b1, b2}
    assert tls[main_id]["ancestor_timeline_id"] is None
    assert tls[b1]["ancestor_timeline_id"] == main_id and tls[b1]["ancestor_lsn"] == lsn_str(b1_point)
    assert tls[b2]["ancestor_lsn"] == lsn_str(b2_point)
    assert tls[b1]["logical_size_at_branch_point"] == seg["logical_size"]
    assert inputs["inputs"]["gc_horizon"] == 1 << 40

    # The branch tree as SVG and as an HTML page.
    svg = client.synthetic_size(tenant_id, format="svg")
    assert svg.headers["content-type"].startswith("image/svg+xml")
    root = ET.fromstring(svg.text)
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    texts = " ".join(t.text or "" for t in root.iter("{http://www.w3.org/2000/svg}text"))
    for tl in (main_id, b1, b2):
        assert tl in texts
    html = client.synthetic_size(tenant_id, accept="text/html")
    assert html.headers["content-type"].startswith("text/html") and "<svg" in html.text
    assert client.synthetic_size(tenant_id).json()["size"] == after["size"]

    # Shorter retention on main: the WAL before the new cutoff is no longer
    # paid for (the branches then pay for their data at their points).
    for tl in (main_id, b1, b2):
        client.timeline_checkpoint(tenant_id, tl)
    big = put_wal(client, tenant_id, main_id, 256 << 20)
    client.timeline_checkpoint(tenant_id, main_id)
    long_retention = client.tenant_size(tenant_id)["size"]
    client.set_tenant_config(tenant_id, {"gc_horizon": 1 << 20, "pitr_interval": "0s"})
    short = client.tenant_size(tenant_id)
    main_seg = by_id(short)[main_id]
    assert main_seg["start_lsn"] == lsn_str(big - (1 << 20)) and main_seg["wal_bytes"] == 1 << 20
    assert short["size"] < long_retention - (200 << 20)
