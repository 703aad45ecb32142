"""Disk-usage eviction (`max_disk_usage_pct`) on a simulated disk (test
builds): least recently read layers go first, only until usage is under
the limit; evicted layers stay in object storage and reads download them
again, identical."""

from __future__ import annotations

import time
from pathlib import Path

from fixtures.neon_fixtures import NeonEnvBuilder
from fixtures.remote import make_writer, remote_files, shared_local, wait_uploaded
from fixtures.utils import wait_until


def layer_sizes(timeline_dir: Path) -> dict[str, int]:
    return {p.name: p.stat().st_size for p in timeline_dir.iterdir() if "__" in p.name and not p.name.endswith("___temp")}


def test_disk_usage_eviction_oldest_first(neon_env_builder: NeonEnvBuilder):
    root = shared_local(neon_env_builder)
    # High, so that the real file system never crosses it during the test.
    neon_env_builder.pageserver_config_overrides["max_disk_usage_pct"] = 99
    neon_env_builder.pageserver_config_overrides["housekeeping_period"] = "1s"
    env = neon_env_builder.init_start()
    ps = env.pageserver
    client = ps.http_client()
    # Three tenants written (and last read) a second apart: access times
    # are kept in seconds.
    writers, lsns = [], {}
    for i in range(3):
        if i:
            time.sleep(1.1)
        w = make_writer(client, conf={"compaction_period": "0s"})
        lsns[w.tenant_id] = w.put_batches(15)
        client.timeline_checkpoint(w.tenant_id, w.timeline_id)
        wait_uploaded(client, w.tenant_id, w.timeline_id)
        writers.append(w)
    oldest, *rest = writers
    sizes = {w.tenant_id: layer_sizes(ps.timeline_dir(w.tenant_id, w.timeline_id)) for w in writers}
    used = sum(sum(s.values()) for s in sizes.values())
    oldest_bytes = sum(sizes[oldest.tenant_id].values())
    assert sizes[oldest.tenant_id] and oldest_bytes < used
    evictions = client.metric_value("pageserver_layer_evictions_total")

    # A disk on which usage is over 99% until every layer of the oldest
    # tenant is evicted, and under it once they are.
    total = -(-(used - oldest_bytes) * 100 // 99)
    client.put("/v1/testing/disk_usage", json={"total_bytes": total}).raise_for_status()

    def oldest_evicted() -> None:
        assert layer_sizes(ps.timeline_dir(oldest.tenant_id, oldest.timeline_id)) == {}

    wait_until(oldest_evicted, timeout=20, interval=0.2)
    time.sleep(2)  # two more housekeeping passes: nothing else goes
    client.put("/v1/testing/disk_usage", json={"total_bytes": None}).raise_for_status()
    for w in rest:
        assert layer_sizes(ps.timeline_dir(w.tenant_id, w.timeline_id)) == sizes[w.tenant_id], w.tenant_id
    assert client.metric_value("pageserver_layer_evictions_total") - evictions == len(sizes[oldest.tenant_id])
    assert ps.log_contains("disk usage above 99%: evicted")
    # Still in object storage, and read back identical.
    remote = {name.rsplit("-", 1)[0] for name in remote_files(root, oldest.tenant_id, oldest.timeline_id)}
    assert set(sizes[oldest.tenant_id]) <= remote
    assert client.timeline_detail(oldest.tenant_id, oldest.timeline_id)["awaits_download"] is True
    downloads = client.metric_value("pageserver_layer_downloads_total")
    for w in writers:
        w.check([lsns[w.tenant_id]])
    assert client.metric_value("pageserver_layer_downloads_total") > downloads

    res = client.put("/v1/testing/disk_usage", json={"total_bytes": 0})
    assert res.status_code == 400 and "total_bytes" in res.json()["msg"]
