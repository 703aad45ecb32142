"""Benchmark (not part of the default suite: pytest.ini's testpaths is
``regress``): pagestream_v2 GetPage throughput and latency on a pgbench
database ingested from a stock PostgreSQL 15 primary, against the loopback
floor of the ``pagebench`` tool, at depth 1 and 32 with 1 and 4 connections
(each figure the median of alternating rounds).

Run with a release build:
    cargo build --release --bins -p pageserver
    cd test_runner && NEON_BIN=../target/release ../.venv/bin/python -m pytest performance/test_pagebench.py -s

Figures are printed and written to ``pagebench.json`` in the test's output
directory; nothing about them is asserted (benchmarks are not tests)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from fixtures.neon_fixtures import BIN_DIR, NeonEnv
from fixtures.pg import VanillaPostgres, wait_for
from fixtures.port_distributor import PortDistributor
from fixtures.storage import lsn_int

SCALE = int(os.environ.get("PAGEBENCH_SCALE", "10"))
DURATION = os.environ.get("PAGEBENCH_DURATION", "5s")
# pagebench alternates page server and floor runs this many times and
# reports medians.
ROUNDS = os.environ.get("PAGEBENCH_ROUNDS", "3")


def test_pagebench(neon_simple_env: NeonEnv, test_output_dir: Path, port_distributor: PortDistributor):
    env = neon_simple_env
    env.pageserver.allowed_errors.append(".*WAL streaming from .* failed, reconnecting.*")
    pg = VanillaPostgres(test_output_dir / "primary", port_distributor.get_port(), conf={"autovacuum": "off"}).start()
    try:
        client = env.pageserver.http_client()
        tenant_id = client.tenant_create()
        timeline_id = client.timeline_create(tenant_id, wal_source_connstr=pg.connstr())["timeline_id"]
        pg.pgbench("-i", "-s", str(SCALE), "-q")
        pg.sql("CHECKPOINT")
        lsn = lsn_int(pg.current_lsn())
        wait_for(
            lambda: lsn_int(client.timeline_detail(tenant_id, timeline_id)["last_record_lsn"]) >= lsn,
            timeout=600,
            what="ingest of the pgbench database",
        )
        # Reads come from compacted layer files, as in steady state (and no
        # background compaction competes with the measurement).
        client.timeline_checkpoint(tenant_id, timeline_id)
        client.timeline_compact(tenant_id, timeline_id)
        results = []
        for depth in (1, 32):
            for conns in (1, 4):
                cmd = [
                    str(BIN_DIR / "pagebench"),
                    "--page-service", f"127.0.0.1:{env.pageserver.pg_port}",
                    "--tenant", tenant_id,
                    "--timeline", timeline_id,
                    "--connstr", pg.connstr(),
                    "--connections", str(conns),
                    "--depth", str(depth),
                    "--duration", DURATION,
                    "--rounds", ROUNDS,
                    "--json",
                ]
                res = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
                assert res.returncode == 0, res.stderr
                r = json.loads(res.stdout)
                assert r["pageserver"]["errors"] == 0 and r["pageserver"]["requests"] > 0, r
                results.append(r)
        (test_output_dir / "pagebench.json").write_text(json.dumps(results, indent=2))
        print()
        print(f"pgbench scale {SCALE}, {DURATION} per run, median of {ROUNDS} alternating rounds, "
              "GetPage of random pgbench_accounts blocks")
        print(f"{'conns':>5} {'depth':>5} | {'req/s':>9} {'p50 us':>8} {'p99 us':>8} {'p99.9 us':>9} | "
              f"{'floor req/s':>11} {'floor p50':>9} | {'p50 x':>6} {'thru %':>6}")
        for r in results:
            ps, fl = r["pageserver"], r["floor"]
            print(f"{r['connections']:>5} {r['depth']:>5} | {ps['rps']:>9.0f} {ps['p50_us']:>8.0f} {ps['p99_us']:>8.0f} "
                  f"{ps['p999_us']:>9.0f} | {fl['rps']:>11.0f} {fl['p50_us']:>9.0f} | "
                  f"{r['p50_ratio']:>6.2f} {100 * r['throughput_ratio']:>6.0f}")
    finally:
        pg.destroy()
