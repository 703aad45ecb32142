"""Object storage as the durable home of timelines: upload queue, attach on
another node (S3 on a real moto server), detach, faults and outages, crash
during upload, split brain with generations, eviction and on-demand
download, tenant deletion."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Optional

import pytest

from fixtures.neon_fixtures import NeonEnvBuilder, NeonPageserver
from fixtures.pageserver_http import PageserverApiException, PageserverHttpClient
from fixtures.pg import VanillaPostgres, wait_for
from fixtures.port_distributor import PortDistributor
from fixtures.remote import TENANT_CONF, make_writer, remote_files, shared_local, wait_active, wait_uploaded
from fixtures.s3 import MotoServer
from fixtures.storage import ModelWriter, lsn_int
from fixtures.utils import wait_until

WAL_RECONNECT = ".*WAL streaming from .* failed, reconnecting.*"
UPLOAD_RETRY = ".*upload failed \\(attempt.*"
STORAGE_FAILING = ".*object storage is failing.*"


def record_point(pg: VanillaPostgres) -> tuple[str, int]:
    """(LSN, sum(abalance)) exactly as of the LSN (see test_basebackup.py)."""
    conn = pg.connect()
    try:
        conn.autocommit = False
        with conn.cursor() as cur:
            cur.execute("LOCK TABLE pgbench_accounts IN EXCLUSIVE MODE")
            cur.execute("SELECT sum(abalance) FROM pgbench_accounts")
            (balance,) = cur.fetchone()
            cur.execute("SELECT pg_current_wal_lsn()")
            (lsn,) = cur.fetchone()
        conn.rollback()
    finally:
        conn.close()
    return lsn, int(balance)


def run_pgbench_recording(pg: VanillaPostgres, seconds: int, points: int, during=None) -> list[tuple[str, int]]:
    bench = threading.Thread(target=pg.pgbench, args=("-T", str(seconds), "-c", "2", "-j", "1"))
    bench.start()
    recorded = []
    try:
        interval = seconds / (points + 1)
        for i in range(points):
            time.sleep(interval)
            recorded.append(record_point(pg))
            if during is not None:
                during(i)
    finally:
        bench.join(timeout=seconds + 120)
    return recorded


def sum_at(tar: bytes, out: Path, port: int) -> int:
    restored = VanillaPostgres(out, port, basebackup=tar, conf={"autovacuum": "off"}).start()
    try:
        return int(restored.sql("SELECT sum(abalance) FROM pgbench_accounts")[0][0])
    finally:
        restored.destroy()


def check_points(client: PageserverHttpClient, tenant_id: str, timeline_id: str, points, out: Path, ports: PortDistributor) -> None:
    for i, (lsn, balance) in enumerate(points):
        tar, backup_lsn = client.basebackup(tenant_id, timeline_id, lsn=lsn)
        assert backup_lsn == lsn
        assert sum_at(tar, out / f"restore_{i}", ports.get_port()) == balance, f"point {i} at {lsn}"


def wait_ingested(client: PageserverHttpClient, tenant_id: str, timeline_id: str, lsn: str) -> None:
    wait_for(
        lambda: lsn_int(client.timeline_detail(tenant_id, timeline_id)["last_record_lsn"]) >= lsn_int(lsn),
        timeout=120,
        what=f"ingest to reach {lsn}",
    )


def test_attach_on_second_node_s3(
    moto_server: MotoServer, neon_env_builder: NeonEnvBuilder, test_output_dir: Path, port_distributor: PortDistributor
):
    """The main path, on a real S3-compatible server: ingest with pgbench on
    node 1, detach, wipe, attach on node 2 from the bucket; base backups at
    recorded LSNs give the recorded sums, layers download on demand, and the
    WAL source comes with the index, so node 2 streams new writes."""
    bucket = "pageserver"
    moto_server.create_bucket(bucket)
    neon_env_builder.num_pageservers = 2
    neon_env_builder.pageserver_config_overrides["remote_storage"] = moto_server.remote_storage_config(bucket, prefix="neon")
    env = neon_env_builder.init_start()
    ps1, ps2 = env.pageservers
    ps1.allowed_errors.append(WAL_RECONNECT)
    ps2.allowed_errors.append(WAL_RECONNECT)
    c1, c2 = ps1.http_client(), ps2.http_client()
    pg = VanillaPostgres(test_output_dir / "primary", port_distributor.get_port(), conf={"autovacuum": "off"}).start()
    try:
        pg.pgbench("-i", "-s", "1", "-q")
        tenant_id = c1.tenant_create(conf=TENANT_CONF)
        timeline_id = c1.timeline_create(tenant_id, wal_source_connstr=pg.connstr())["timeline_id"]
        points = run_pgbench_recording(pg, seconds=12, points=5)
        assert len({p[1] for p in points}) > 2, f"pgbench barely ran: {points}"
        last = points[-1][0]
        wait_ingested(c1, tenant_id, timeline_id, last)
        c1.timeline_checkpoint(tenant_id, timeline_id)
        detail = wait_uploaded(c1, tenant_id, timeline_id, at_least=last)
        assert detail["remote"]["remote_consistent_lsn"] == detail["remote_consistent_lsn"]

        keys = moto_server.list_keys(bucket, prefix=f"neon/tenants/{tenant_id}/")
        assert f"neon/tenants/{tenant_id}/tenant-manifest-00000001.json" in keys, keys
        assert any(k.endswith("/index_part.json-00000001") for k in keys), keys
        layers = [k for k in keys if "__" in k]
        assert layers and all(k.endswith("-00000001") for k in layers), keys

        # The config travels in the tenant manifest: no background
        # compaction on node 2, so layers download only when read.
        c1.set_tenant_config(tenant_id, {**TENANT_CONF, "compaction_period": "0s"})
        c1.tenant_detach(tenant_id)
        assert not ps1.tenant_dir(tenant_id).exists()
        with pytest.raises(PageserverApiException) as e:
            c1.tenant_status(tenant_id)
        assert e.value.status_code == 404

        started = time.monotonic()
        assert c2.tenant_attach(tenant_id) == {"generation": 2}
        wait_active(c2, tenant_id)
        attached = time.monotonic()
        assert c2.tenant_config(tenant_id)["tenant_specific_overrides"]["compaction_period"] == "0s"
        tl = c2.timeline_detail(tenant_id, timeline_id)
        assert tl["awaits_download"] is True
        assert lsn_int(tl["disk_consistent_lsn"]) >= lsn_int(last)
        # The detach flushed and uploaded whatever arrived after `detail`.
        assert lsn_int(tl["remote_consistent_lsn"]) >= lsn_int(detail["remote_consistent_lsn"])
        assert tl["remote_consistent_lsn"] == tl["disk_consistent_lsn"]
        downloads_before = c2.metric_value("pageserver_layer_downloads_total")
        tar, _ = c2.basebackup(tenant_id, timeline_id, lsn=last)
        first_read = time.monotonic()
        assert c2.metric_value("pageserver_layer_downloads_total") > downloads_before
        assert sum_at(tar, test_output_dir / "first", port_distributor.get_port()) == points[-1][1]
        check_points(c2, tenant_id, timeline_id, points, test_output_dir, port_distributor)
        # The WAL source travelled in the index: node 2 streams new writes.
        assert c2.timeline_detail(tenant_id, timeline_id)["wal_source_connstr"] is not None
        before = record_point(pg)
        pg.sql("UPDATE pgbench_accounts SET abalance = abalance + 7 WHERE aid <= 100")
        after = record_point(pg)
        assert after[1] == before[1] + 700
        wait_ingested(c2, tenant_id, timeline_id, after[0])
        tar, _ = c2.basebackup(tenant_id, timeline_id, lsn=after[0])
        assert sum_at(tar, test_output_dir / "after_attach", port_distributor.get_port()) == after[1]
        index = json.loads(moto_server.client().get_object(Bucket=bucket, Key=f"neon/tenants/{tenant_id}/timelines/{timeline_id}/index_part.json-00000001")["Body"].read())
        assert f"127.0.0.1:{pg.port}/" in index["wal_source_connstr"], index.get("wal_source_connstr")
        size = sum(layer["file_size"] for layer in index["layers"].values())
        print(
            f"FIGURE attach: tenant of {size / 2**20:.1f} MiB in {len(index['layers'])} layers; "
            f"attach call to Active {attached - started:.2f} s, to first base backup {first_read - started:.2f} s"
        )
        # Node 2 attached with generation 2 and says so in the bucket.
        assert f"neon/tenants/{tenant_id}/tenant-manifest-00000002.json" in moto_server.list_keys(bucket, prefix=f"neon/tenants/{tenant_id}/")
    finally:
        pg.destroy()


def test_upload_faults_and_outage(neon_env_builder: NeonEnvBuilder, test_output_dir: Path, port_distributor: PortDistributor):
    """30% failures and 500 ms delays, then object storage unreachable for a
    while, during ingest: ingest continues, /readiness is 503 during the
    outage and 200 after, uploads catch up, and nothing is lost."""
    shared_local(neon_env_builder)
    env = neon_env_builder.init_start()
    ps = env.pageserver
    ps.allowed_errors += [WAL_RECONNECT, UPLOAD_RETRY, STORAGE_FAILING, ".*deletion queue:.*"]
    client = ps.http_client()
    pg = VanillaPostgres(test_output_dir / "primary", port_distributor.get_port(), conf={"autovacuum": "off"}).start()
    try:
        pg.pgbench("-i", "-s", "1", "-q")
        tenant_id = client.tenant_create(conf={**TENANT_CONF, "compaction_period": "0s"})
        timeline_id = client.timeline_create(tenant_id, wal_source_connstr=pg.connstr())["timeline_id"]
        client.set_remote_faults(fail_percent=30, delay_ms=500, seed=7)
        saw_503 = []

        def during(i: int) -> None:
            if i == 1:
                # Ingest goes on and flushes (1 MiB layers) keep the upload
                # queue busy, failing.
                client.set_remote_faults(unreachable_for_ms=10000)

                def not_ready() -> None:
                    res = client.readiness()
                    assert res.status_code == 503, res.text
                    assert "object storage" in res.json()["status"]
                    saw_503.append(res.json())

                wait_until(not_ready, timeout=9, interval=0.2)

        points = run_pgbench_recording(pg, seconds=20, points=4, during=during)
        assert saw_503, "readiness never reported the outage"
        last = points[-1][0]
        # Ingest went on during the outage.
        wait_ingested(client, tenant_id, timeline_id, last)

        def ready() -> None:
            res = client.readiness()
            assert res.status_code == 200, res.text

        wait_until(ready, timeout=60, interval=0.5)
        client.set_remote_faults()
        client.timeline_checkpoint(tenant_id, timeline_id)
        wait_uploaded(client, tenant_id, timeline_id, at_least=last)
        assert client.metric_value("pageserver_remote_operation_failures_total") > 0

        # Everything comes back from remote storage alone.
        client.tenant_detach(tenant_id)
        client.tenant_attach(tenant_id)
        wait_active(client, tenant_id)
        assert client.timeline_detail(tenant_id, timeline_id)["awaits_download"] is True
        check_points(client, tenant_id, timeline_id, points, test_output_dir, port_distributor)
    finally:
        pg.destroy()


def test_kill9_during_upload(neon_env_builder: NeonEnvBuilder):
    """Layers went up but their index did not when the node was killed: after
    the restart the layers not in the remote index are uploaded again, the
    index catches up, and a fresh attach reads everything."""
    shared_local(neon_env_builder)
    env = neon_env_builder.init_start()
    ps = env.pageserver
    ps.allowed_errors += [UPLOAD_RETRY, STORAGE_FAILING]
    client = ps.http_client()
    w = make_writer(client)
    wait_uploaded(client, w.tenant_id, w.timeline_id)
    before = client.timeline_detail(w.tenant_id, w.timeline_id)["remote_consistent_lsn"]
    client.configure_failpoints(("remote-index-upload", "return"))
    mid = w.put_batches(40)
    client.timeline_checkpoint(w.tenant_id, w.timeline_id)
    end = w.put_batches(40)
    client.timeline_checkpoint(w.tenant_id, w.timeline_id)
    time.sleep(1)
    d = client.timeline_detail(w.tenant_id, w.timeline_id)
    assert d["remote_consistent_lsn"] == before and lsn_int(d["disk_consistent_lsn"]) >= end
    ps.stop(immediate=True)
    ps.start()
    wait_active(client, w.tenant_id)
    wait_uploaded(client, w.tenant_id, w.timeline_id, at_least=d["disk_consistent_lsn"])
    assert ps.log_contains("local layers are not in the remote index; uploading them")
    w.check([mid, end])
    client.tenant_detach(w.tenant_id)
    client.tenant_attach(w.tenant_id)
    wait_active(client, w.tenant_id)
    w.check([mid, end])


def test_split_brain_generations(neon_env_builder: NeonEnvBuilder):
    """The tenant is attached on node 2 with generation 2 while node 1 keeps
    generation 1 and goes on writing, compacting and collecting garbage:
    node 1 never deletes what node 2 needs, node 2 reads its data intact."""
    root = shared_local(neon_env_builder, pageservers=2)
    env = neon_env_builder.init_start()
    ps1, ps2 = env.pageservers
    ps1.allowed_errors.append(".*ours is stale.*")
    c1, c2 = ps1.http_client(), ps2.http_client()
    w = make_writer(c1, conf={"pitr_interval": "0s", "image_creation_threshold": 1, "gc_period": "0s", "compaction_period": "0s"})
    phase1 = w.put_batches(60)
    c1.timeline_checkpoint(w.tenant_id, w.timeline_id)
    wait_uploaded(c1, w.tenant_id, w.timeline_id, at_least=None)
    index1 = json.loads((root / "tenants" / w.tenant_id / "timelines" / w.timeline_id / "index_part.json-00000001").read_text())
    needed = {f"{name}-{meta['generation']:08x}" for name, meta in index1["layers"].items()}

    assert c2.tenant_attach(w.tenant_id, generation=2) == {"generation": 2}
    wait_active(c2, w.tenant_id)

    # Node 1, stale but unaware, rewrites everything it has.
    w.put_batches(60)
    c1.timeline_compact(w.tenant_id, w.timeline_id)
    c1.timeline_checkpoint(w.tenant_id, w.timeline_id)
    gc = c1.timeline_gc(w.tenant_id, w.timeline_id, gc_horizon=0)
    assert gc["layers_removed"] > 0, gc
    wait_uploaded(c1, w.tenant_id, w.timeline_id)
    def refused() -> None:
        assert ps1.log_contains("ours is stale"), "no refused deletion yet"

    wait_until(refused, timeout=30, interval=0.2)
    assert c1.metric_value("pageserver_deletion_queue_objects_total") > 0

    present = remote_files(root, w.tenant_id, w.timeline_id)
    assert needed <= present, f"missing: {needed - present}"
    w.check([phase1], client=c2)
    # Node 2 writes under its own generation; node 1's index stays its own.
    ModelWriter(c2, w.tenant_id, w.timeline_id, seed=5).put_batches(10)
    c2.timeline_checkpoint(w.tenant_id, w.timeline_id)
    wait_uploaded(c2, w.tenant_id, w.timeline_id)
    assert "index_part.json-00000002" in remote_files(root, w.tenant_id, w.timeline_id)
    w.check([phase1], client=c2)


def test_eviction_and_on_demand_download(neon_env_builder: NeonEnvBuilder):
    """Evicted layers download again on read, once for concurrent readers,
    and give identical pages; `evictions_low_residence` evicts by itself; a
    corrupt local layer is downloaded again, never served."""
    shared_local(neon_env_builder)
    env = neon_env_builder.init_start()
    ps = env.pageserver
    ps.allowed_errors.append(".*is corrupt; downloading it again.*")
    client = ps.http_client()
    # Several L0 layers (no background compaction), so reads span layers.
    w = make_writer(client, conf={"compaction_period": "0s"})
    lsns = [w.put_batches(30) for _ in range(3)]
    client.timeline_checkpoint(w.tenant_id, w.timeline_id)
    wait_uploaded(client, w.tenant_id, w.timeline_id)
    w.check(lsns)

    evicted = client.timeline_evict(w.tenant_id, w.timeline_id)
    assert evicted["evicted"] > 0, evicted
    assert client.timeline_detail(w.tenant_id, w.timeline_id)["awaits_download"] is True
    downloads = client.metric_value("pageserver_layer_downloads_total")
    errors: list[BaseException] = []

    def reader() -> None:
        try:
            w.check(lsns, client=ps.http_client())
        except BaseException as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=reader) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    fetched = client.metric_value("pageserver_layer_downloads_total") - downloads
    # Concurrent readers shared downloads: at most one per layer.
    layer_count = evicted["evicted"] + evicted["not_resident"]
    assert 0 < fetched <= layer_count, (fetched, layer_count)

    # Automatic eviction of layers not read for a second.
    client.set_tenant_config(w.tenant_id, {**TENANT_CONF, "evictions_low_residence": "1s"})

    def all_evicted() -> None:
        assert client.timeline_detail(w.tenant_id, w.timeline_id)["awaits_download"] is True

    wait_until(all_evicted, timeout=30, interval=0.5)
    client.set_tenant_config(w.tenant_id, TENANT_CONF)
    time.sleep(1.5)  # an eviction pass under way finishes
    w.check(lsns)

    # Corrupt the values of every resident layer: reads download good copies.
    tl_dir = ps.timeline_dir(w.tenant_id, w.timeline_id)
    corrupted = 0
    for layer in (p for p in tl_dir.iterdir() if "__" in p.name and not p.name.endswith("___temp")):
        data = bytearray(layer.read_bytes())
        # Values lie between the header and the index (offset in the footer).
        index_offset = int.from_bytes(data[-28:-20], "little")
        if not 200 < index_offset < len(data):
            continue
        corrupted += 1
        for off in range(200, index_offset - 1, 97):
            data[off] ^= 0xFF
        layer.write_bytes(bytes(data))
    assert corrupted > 0
    # Values already read are in the page cache (checked when read): a
    # restart empties it, so the reads below go to the corrupted files.
    ps.restart()
    wait_active(client, w.tenant_id)
    w.check(lsns)
    assert ps.log_contains("is corrupt; downloading it again")


def test_attach_detach_api(neon_env_builder: NeonEnvBuilder):
    """Errors and modes of attach, detach and location_config; tenant delete
    removes remote objects through the deletion queue."""
    root = shared_local(neon_env_builder)
    env = neon_env_builder.init_start()
    client = env.pageserver.http_client()
    unknown = "0" * 31 + "1"
    with pytest.raises(PageserverApiException) as e:
        client.tenant_attach(unknown)
    assert e.value.status_code == 404 and "no data in remote storage" in e.value.msg
    with pytest.raises(PageserverApiException) as e:
        client.tenant_detach(unknown)
    assert e.value.status_code == 404
    assert client.location_config(unknown, "Detached") == {"mode": "Detached", "generation": None}

    w = make_writer(client)
    lsn = w.put_batches(10)
    client.timeline_checkpoint(w.tenant_id, w.timeline_id)
    with pytest.raises(PageserverApiException) as e:
        client.tenant_attach(w.tenant_id)
    assert e.value.status_code == 409
    res = client.post(f"/v1/tenant/{w.tenant_id}/attach", json={"generation": 1, "bogus": 1})
    assert res.status_code == 400 and "bogus" in res.json()["msg"]

    assert client.location_config(w.tenant_id, "AttachedStale") == {"mode": "AttachedStale", "generation": 1}
    with pytest.raises(PageserverApiException) as e:
        client.location_config(w.tenant_id, "AttachedSingle", generation=0)
    assert e.value.status_code == 400
    assert client.location_config(w.tenant_id, "AttachedSingle", generation=3)["generation"] == 3
    assert client.location_config(w.tenant_id, "Secondary") == {"mode": "Secondary", "generation": None}
    assert not env.pageserver.tenant_dir(w.tenant_id).exists()
    # Without a generation: the highest found remotely plus one.
    assert client.location_config(w.tenant_id, "AttachedSingle")["generation"] == 4
    wait_active(client, w.tenant_id)
    w.check([lsn])
    # The generation survives a restart.
    env.pageserver.restart()
    wait_active(client, w.tenant_id)
    assert json.loads((env.pageserver.tenant_dir(w.tenant_id) / "location.json").read_text())["generation"] == 4
    w.check([lsn])

    tenant_remote = root / "tenants" / w.tenant_id
    assert tenant_remote.exists()
    client.tenant_delete(w.tenant_id)

    def gone() -> None:
        left = [p for p in tenant_remote.rglob("*") if p.is_file()] if tenant_remote.exists() else []
        assert not left, left

    wait_until(gone, timeout=30, interval=0.2)
