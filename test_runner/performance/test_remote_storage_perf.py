"""Figures for remote storage (not a test: nothing is asserted about time).

Run: ``.venv/bin/python -m pytest test_runner/performance/test_remote_storage_perf.py -s``
(``PERF_SCALE`` sets the pgbench scale, default 20, about 300 MB of tables).

* upload throughput of the page server's upload queue (bytes uploaded /
  time from timeline creation to ``remote_consistent_lsn`` catching up),
  against raw PUT throughput of the same S3 server measured in the same run
  (boto3, same object count and sizes, 8 threads like the queue);
* attach time to the first GetPage, and to a full base backup, on a second
  node for the whole tenant.
"""

from __future__ import annotations

import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from fixtures.neon_fixtures import NeonEnvBuilder
from fixtures.page_service import DEFAULT_TABLESPACE, PageServiceConn, Rel, req_get_page
from fixtures.pg import VanillaPostgres
from fixtures.port_distributor import PortDistributor
from fixtures.s3 import MotoServer
from fixtures.remote import wait_active, wait_uploaded

BUCKET = "perf"


def test_remote_storage_figures(moto_server: MotoServer, neon_env_builder: NeonEnvBuilder, test_output_dir: Path, port_distributor: PortDistributor):
    scale = int(os.environ.get("PERF_SCALE", "20"))
    moto_server.create_bucket(BUCKET)
    neon_env_builder.num_pageservers = 2
    neon_env_builder.pageserver_config_overrides["remote_storage"] = moto_server.remote_storage_config(BUCKET)
    env = neon_env_builder.init_start()
    ps1, ps2 = env.pageservers
    for ps in (ps1, ps2):
        # The primary stops at the end; ps2 streams from it after the attach.
        ps.allowed_errors.append(".*WAL streaming from .* failed, reconnecting.*")
    c1, c2 = ps1.http_client(), ps2.http_client()
    pg = VanillaPostgres(test_output_dir / "primary", port_distributor.get_port(), conf={"autovacuum": "off"}).start()
    try:
        pg.pgbench("-i", "-s", str(scale), "-q")
        tenant_id = c1.tenant_create(conf={"compaction_period": "0s"})
        uploaded_before = c1.metric_value("pageserver_remote_uploaded_bytes_total")
        t0 = time.monotonic()
        timeline_id = c1.timeline_create(tenant_id, wal_source_connstr=pg.connstr())["timeline_id"]
        t1 = time.monotonic()
        wait_uploaded(c1, tenant_id, timeline_id, timeout=1800)
        t2 = time.monotonic()
        uploaded = c1.metric_value("pageserver_remote_uploaded_bytes_total") - uploaded_before
        keys = moto_server.list_keys(BUCKET, prefix=f"tenants/{tenant_id}/timelines/{timeline_id}/")
        s3 = moto_server.client()
        sizes = [s3.head_object(Bucket=BUCKET, Key=k)["ContentLength"] for k in keys]

        # Raw PUTs of the same sizes, 8 at a time like the upload queue.
        bodies = [os.urandom(n) for n in sizes]
        r0 = time.monotonic()
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda i: s3.put_object(Bucket=BUCKET, Key=f"raw/{i}", Body=bodies[i]), range(len(bodies))))
        r1 = time.monotonic()
        mib = 2**20
        print(
            f"\nFIGURE upload: import took {t1 - t0:.1f} s; the queue then uploaded {uploaded / mib:.1f} MiB "
            f"in {t2 - t1:.1f} s = {uploaded / mib / max(t2 - t1, 1e-9):.1f} MiB/s; "
            f"raw PUT of the same {len(sizes)} objects ({sum(sizes) / mib:.1f} MiB, 8 threads, boto3): "
            f"{r1 - r0:.1f} s = {sum(sizes) / mib / max(r1 - r0, 1e-9):.1f} MiB/s"
        )

        dbnode = pg.sql("SELECT oid FROM pg_database WHERE datname = 'postgres'")[0][0]
        relnode = pg.sql("SELECT relfilenode FROM pg_class WHERE relname = 'pgbench_accounts'")[0][0]
        accounts = Rel(DEFAULT_TABLESPACE, dbnode, relnode)
        c1.tenant_detach(tenant_id)
        a0 = time.monotonic()
        c2.tenant_attach(tenant_id)
        wait_active(c2, tenant_id, timeout=600)
        a1 = time.monotonic()
        with PageServiceConn(ps2.pg_port) as conn:
            conn.start_pagestream(tenant_id, timeline_id)
            first = conn.request(req_get_page(accounts, 1000))
            assert first.kind == "page", first
        a_page = time.monotonic()
        tar, lsn = c2.basebackup(tenant_id, timeline_id)
        a2 = time.monotonic()
        index = json.loads(s3.get_object(Bucket=BUCKET, Key=f"tenants/{tenant_id}/timelines/{timeline_id}/index_part.json-00000001")["Body"].read())
        size = sum(layer["file_size"] for layer in index["layers"].values())
        print(
            f"FIGURE attach: tenant of {size / mib:.1f} MiB in {len(index['layers'])} layers "
            f"(pgbench scale {scale}); attach to Active {a1 - a0:.2f} s; first GetPage (block 1000 of "
            f"pgbench_accounts, its layers downloaded on demand) answered {a_page - a0:.2f} s after the attach call; "
            f"then a full base backup ({len(tar) / mib:.1f} MiB, every other layer downloaded on demand) "
            f"done {a2 - a0:.1f} s after the attach call"
        )
    finally:
        pg.destroy()
