"""The storage engine through the page server process: writes, checkpoints,
restarts, compaction, image layers, GC, branching, waiting reads, and
kill -9 at every flush, compaction and GC step."""

from __future__ import annotations

import subprocess
import threading
import time

import pytest

from fixtures.neon_fixtures import BIN_DIR, NeonEnv, NeonEnvBuilder
from fixtures.pageserver_http import PageserverApiException, PageserverHttpClient
from fixtures.storage import ModelWriter, block_key, lsn_int, lsn_str
from fixtures.utils import wait_until

# Small layers so that a few hundred pages make many files.
SMALL_LAYERS = {
    "checkpoint_distance": 256 * 1024,
    "compaction_threshold": 3,
    "compaction_target_size": 512 * 1024,
    "image_creation_threshold": 1,
    "compaction_period": "0s",
    "gc_period": "0s",
    "pitr_interval": "0s",
}


def setup(env: NeonEnv, conf: dict = SMALL_LAYERS) -> tuple[PageserverHttpClient, str, str]:
    client = env.pageserver.http_client()
    tenant_id = client.tenant_create(conf=conf)
    timeline_id = client.timeline_create(tenant_id)["timeline_id"]
    return client, tenant_id, timeline_id


def layer_files(env: NeonEnv, tenant_id: str, timeline_id: str) -> list[str]:
    d = env.pageserver.timeline_dir(tenant_id, timeline_id)
    return sorted(p.name for p in d.iterdir() if "__" in p.name and not p.name.endswith("___temp"))


def pagectl_verify(env: NeonEnv) -> None:
    res = subprocess.run([str(BIN_DIR / "pagectl"), "verify", str(env.pageserver.workdir)], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr


def test_writes_survive_checkpoint_and_restart(neon_simple_env: NeonEnv):
    env = neon_simple_env
    client, tenant_id, timeline_id = setup(env)
    w = ModelWriter(client, tenant_id, timeline_id)
    first = w.put_batches(100)
    info = client.timeline_checkpoint(tenant_id, timeline_id)
    assert info["disk_consistent_lsn"] == lsn_str(first)
    detail = client.timeline_detail(tenant_id, timeline_id)
    assert detail["last_record_lsn"] == lsn_str(first)
    assert detail["disk_consistent_lsn"] == lsn_str(first)
    assert detail["prev_record_lsn"] is not None
    assert detail["current_physical_size"] > 100 * 4 * 8192 // 4
    assert len(layer_files(env, tenant_id, timeline_id)) >= 2  # 256 KiB checkpoint distance

    # More data, not checkpointed: a graceful shutdown flushes it.
    last = w.put_batches(30)
    env.pageserver.restart()
    detail = client.timeline_detail(tenant_id, timeline_id)
    assert detail["last_record_lsn"] == lsn_str(last)
    assert detail["disk_consistent_lsn"] == lsn_str(last)
    assert w.check([first // 2, first, (first + last) // 2, last]) > 0
    pagectl_verify(env)


def test_reads_wait_for_the_lsn(neon_simple_env: NeonEnv):
    env = neon_simple_env
    env.pageserver.allowed_errors.append(".*timed out after.*waiting for LSN.*")
    client, tenant_id, timeline_id = setup(env)
    w = ModelWriter(client, tenant_id, timeline_id)
    last = w.put_batches(3)
    key = next(iter(w.versions))
    future = last + 0x100
    result: dict = {}

    def read() -> None:
        slow = PageserverHttpClient(env.pageserver.http_port, timeout=30)
        result["value"] = slow.test_get_value(tenant_id, timeline_id, key, lsn_str(future))

    t = threading.Thread(target=read)
    t.start()
    time.sleep(0.5)
    assert "value" not in result
    page = w.page()
    client.test_put_images(tenant_id, timeline_id, [(key, lsn_str(future), page)], lsn_str(future))
    t.join(timeout=10)
    assert result["value"] == page
    # Nothing arrives: a clear error after the wait limit.
    with pytest.raises(PageserverApiException) as e:
        client.test_get_value(tenant_id, timeline_id, key, lsn_str(future + 0x100))
    assert e.value.status_code == 503 and "waiting for LSN" in e.value.msg
    # Writes must go forward.
    with pytest.raises(PageserverApiException) as e:
        client.test_put_images(tenant_id, timeline_id, [(key, lsn_str(last), page)], lsn_str(last))
    assert e.value.status_code == 400 and "not above the last record LSN" in e.value.msg
    # A key never written is a 404.
    with pytest.raises(PageserverApiException) as e:
        client.test_get_value(tenant_id, timeline_id, block_key(9999), lsn_str(future))
    assert e.value.status_code == 404


def test_compaction_images_and_gc(neon_simple_env: NeonEnv):
    env = neon_simple_env
    client, tenant_id, timeline_id = setup(env)
    w = ModelWriter(client, tenant_id, timeline_id, seed=1)
    marks = []
    for _ in range(4):
        marks.append(w.put_batches(40))
        client.timeline_checkpoint(tenant_id, timeline_id)
    before = layer_files(env, tenant_id, timeline_id)
    stats = client.timeline_compact(tenant_id, timeline_id)
    assert stats["l0_merged"] >= 4 and stats["l1_written"] >= 1 and stats["images_written"] >= 1, stats
    after = layer_files(env, tenant_id, timeline_id)
    assert not any(name.startswith("0" * 36 + "-" + "f" * 36) for name in after), after
    assert before != after
    # The maintenance loop publishes layer counts (within its 200 ms tick).
    def image_layers_in_metrics() -> None:
        lines = [
            l for l in client.metrics().splitlines()
            if l.startswith("pageserver_layers") and 'level="image"' in l and timeline_id in l
        ]
        assert lines and int(lines[0].rsplit(" ", 1)[1]) >= 1, lines

    wait_until(image_layers_in_metrics, timeout=10)
    w.check(marks)

    # GC with no horizon: everything below the last LSN that images cover goes.
    gc = client.timeline_gc(tenant_id, timeline_id, gc_horizon=0)
    assert lsn_int(gc["cutoff"]) == marks[-1]
    assert gc["layers_removed"] >= 1, gc
    assert len(layer_files(env, tenant_id, timeline_id)) < len(after)
    w.check([marks[-1]])
    with pytest.raises(PageserverApiException) as e:
        client.test_get_value(tenant_id, timeline_id, next(iter(w.versions)), lsn_str(marks[0]))
    assert e.value.status_code == 400 and "GC cutoff" in e.value.msg
    # The cutoff survives a restart.
    env.pageserver.restart()
    assert client.timeline_gc(tenant_id, timeline_id)["cutoff"] == gc["cutoff"]
    w.check([marks[-1]])
    pagectl_verify(env)


def test_branching(neon_simple_env: NeonEnv):
    env = neon_simple_env
    client, tenant_id, parent = setup(env)
    w = ModelWriter(client, tenant_id, parent, seed=2)
    mid = w.put_batches(50)
    end = w.put_batches(50)

    # Bad branch points.
    for lsn, fragment in [(end + 8, "above the last record LSN")]:
        with pytest.raises(PageserverApiException) as e:
            client.timeline_create(tenant_id, ancestor_timeline_id=parent, ancestor_start_lsn=lsn_str(lsn))
        assert e.value.status_code == 400 and fragment in e.value.msg

    child = client.timeline_create(tenant_id, ancestor_timeline_id=parent, ancestor_start_lsn=lsn_str(mid))
    child_id = child["timeline_id"]
    assert child["ancestor_lsn"] == lsn_str(mid) and child["last_record_lsn"] == lsn_str(mid)
    # Default branch point: the parent's last record LSN.
    tip = client.timeline_create(tenant_id, ancestor_timeline_id=parent)
    assert tip["ancestor_lsn"] == lsn_str(end)

    # The child sees the parent's history up to the branch point only.
    cw = ModelWriter(client, tenant_id, child_id, start_lsn=mid, seed=3)
    cw.versions = {k: {l: v for l, v in vs.items() if l <= mid} for k, vs in w.versions.items()}
    cw.put_batches(40)
    client.timeline_checkpoint(tenant_id, child_id)
    cw.check([mid, cw.lsn])
    w.check([mid, end])

    # Deleting a parent with branches is refused.
    with pytest.raises(PageserverApiException) as e:
        client.timeline_delete(tenant_id, parent)
    assert e.value.status_code == 409

    # GC of the parent keeps what the branch point needs.
    client.timeline_checkpoint(tenant_id, parent)
    client.timeline_compact(tenant_id, parent)
    w.put_batches(20)
    client.timeline_compact(tenant_id, parent)
    gc = client.timeline_gc(tenant_id, parent, gc_horizon=0)
    assert lsn_int(gc["cutoff"]) > mid
    cw.check([mid, cw.lsn])
    # Branching below the GC cutoff is refused.
    with pytest.raises(PageserverApiException) as e:
        client.timeline_create(tenant_id, ancestor_timeline_id=parent, ancestor_start_lsn=lsn_str(mid))
    assert e.value.status_code == 400 and "GC cutoff" in e.value.msg
    env.pageserver.restart()
    cw.check([mid, cw.lsn])


def test_maintenance_routes_need_node_scope(neon_env_builder: NeonEnvBuilder):
    neon_env_builder.auth_enabled = True
    env = neon_env_builder.init_start()
    client, tenant_id, timeline_id = setup(env)
    tenant_client = env.pageserver.http_client(auth_token=env.auth_keys.tenant_token(tenant_id))
    for call in (tenant_client.timeline_checkpoint, tenant_client.timeline_compact, tenant_client.timeline_gc):
        with pytest.raises(PageserverApiException) as e:
            call(tenant_id, timeline_id)
        assert e.value.status_code == 403
    client.timeline_checkpoint(tenant_id, timeline_id)


FAILPOINTS = [
    ("flush-after-layer-write", "checkpoint"),
    ("flush-after-metadata", "checkpoint"),
    ("compaction-after-l1-write", "compact"),
    ("compaction-before-l0-delete", "compact"),
    ("gc-after-cutoff-update", "gc"),
    ("gc-before-file-delete", "gc"),
]


@pytest.mark.parametrize("failpoint,op", FAILPOINTS)
def test_kill9_during_storage_work(neon_simple_env: NeonEnv, failpoint: str, op: str):
    env = neon_simple_env
    # Layers only at explicit checkpoints, so that the paused operation is
    # the one that has work to do.
    client, tenant_id, timeline_id = setup(env, {**SMALL_LAYERS, "checkpoint_distance": 64 << 20})
    w = ModelWriter(client, tenant_id, timeline_id, seed=4)
    marks = []
    for _ in range(3):
        marks.append(w.put_batches(40))
        client.timeline_checkpoint(tenant_id, timeline_id)
    if op == "gc":
        client.timeline_compact(tenant_id, timeline_id)
    marks.append(w.put_batches(40))
    if op != "checkpoint":
        client.timeline_checkpoint(tenant_id, timeline_id)
    durable_before = lsn_int(client.timeline_detail(tenant_id, timeline_id)["disk_consistent_lsn"])

    client.configure_failpoints((failpoint, "pause"))
    slow = PageserverHttpClient(env.pageserver.http_port, timeout=60)
    call = {
        "checkpoint": lambda: slow.timeline_checkpoint(tenant_id, timeline_id),
        "compact": lambda: slow.timeline_compact(tenant_id, timeline_id),
        "gc": lambda: slow.timeline_gc(tenant_id, timeline_id, gc_horizon=0),
    }[op]
    done: dict = {}

    def run() -> None:
        try:
            call()
            done["ok"] = True
        except Exception as e:  # the connection dies with the process
            done["error"] = e

    t = threading.Thread(target=run)
    t.start()
    time.sleep(1.5)
    assert "ok" not in done, f"{op} finished without reaching {failpoint}"
    env.pageserver.stop(immediate=True)
    t.join(timeout=30)

    env.pageserver.start()
    detail = client.timeline_detail(tenant_id, timeline_id)
    assert detail["state"] == "Active"
    durable = lsn_int(detail["disk_consistent_lsn"])
    assert durable >= durable_before
    cutoff = lsn_int(client.timeline_gc(tenant_id, timeline_id, gc_horizon=1 << 40)["cutoff"])
    readable = [m for m in marks if cutoff <= m <= durable]
    assert readable, (marks, cutoff, durable)
    assert w.check(readable) > 0
    pagectl_verify(env)
    # The interrupted work completes after the restart; data above the
    # durable LSN was lost with the process (WAL ingest would bring it again).
    client.timeline_checkpoint(tenant_id, timeline_id)
    client.timeline_compact(tenant_id, timeline_id)
    w.check(readable)


def test_background_flush_and_compaction(neon_simple_env: NeonEnv):
    """checkpoint_timeout flushes without a checkpoint call; L0 layers past
    compaction_threshold are compacted by the background loop."""
    env = neon_simple_env
    conf = {**SMALL_LAYERS, "checkpoint_timeout": "1s", "compaction_period": "2s", "compaction_threshold": 2}
    client, tenant_id, timeline_id = setup(env, conf)
    w = ModelWriter(client, tenant_id, timeline_id, seed=5)
    last = w.put_batches(60)

    def flushed() -> None:
        assert client.timeline_detail(tenant_id, timeline_id)["disk_consistent_lsn"] == lsn_str(last)

    wait_until(flushed, timeout=20)

    def layer_count(level: str) -> int:
        line = next(
            l for l in client.metrics().splitlines()
            if l.startswith("pageserver_layers") and f'level="{level}"' in l and timeline_id in l
        )
        return int(line.rsplit(" ", 1)[1])

    def compacted() -> None:
        # Fewer L0 layers than the threshold stay until more arrive.
        names = layer_files(env, tenant_id, timeline_id)
        l0 = [n for n in names if n.startswith("0" * 36 + "-" + "f" * 36)]
        assert len(l0) < 2 and len(l0) < len(names), names
        assert layer_count("l0") == len(l0) and layer_count("l1") >= 1

    wait_until(compacted, timeout=30)
    w.check([last // 2, last])


def test_corrupt_layer_files_are_errors_never_wrong_data(neon_simple_env: NeonEnv):
    env = neon_simple_env
    env.pageserver.allowed_errors += [
        ".*request failed: layer file .* is corrupt at offset.*",
        ".*timeline is broken: layer file .* is corrupt.*",
        ".*upload failed \\(attempt.*",
        ".*object storage is failing.*",
        ".*at shutdown: the upload queue.*",
    ]
    client, tenant_id, timeline_id = setup(env, {**SMALL_LAYERS, "checkpoint_distance": 16 << 20})
    # The new layer stays local only: with a copy in remote storage, a
    # corrupt file is downloaded again instead (test_remote_storage.py).
    client.configure_failpoints(("remote-layer-upload", "return"))
    w = ModelWriter(client, tenant_id, timeline_id, seed=6)
    before = set(layer_files(env, tenant_id, timeline_id))
    last = w.put_batches(40)
    client.timeline_checkpoint(tenant_id, timeline_id)
    (name,) = set(layer_files(env, tenant_id, timeline_id)) - before
    path = env.pageserver.timeline_dir(tenant_id, timeline_id) / name

    # A flipped byte inside a value: reads that need that value fail naming
    # the file and offset; every other read still returns the right page.
    # A read stops at the newest image it needs, so every version is read
    # at its own LSN to reach the damaged one.
    data = bytearray(path.read_bytes())
    at = len(data) // 2
    data[at] ^= 0x40
    path.write_bytes(data)
    failures = []
    for key in sorted(w.versions):
        for lsn in sorted(w.versions[key]) + [last]:
            try:
                got = client.test_get_value(tenant_id, timeline_id, key, lsn_str(lsn))
                assert got == w.expected(key, lsn), f"wrong data for {key} at {lsn_str(lsn)}"
            except PageserverApiException as e:
                assert e.status_code == 500, e
                assert name in e.msg and "offset" in e.msg, e.msg
                failures.append((key, lsn))
    assert len(failures) >= 1

    # A flipped byte in the index: found when the file is opened at start-up;
    # the timeline is Broken and says which file.
    data = bytearray(path.read_bytes())
    data[len(data) - 28 - 5] ^= 0x40
    path.write_bytes(data)
    env.pageserver.restart()
    detail = client.timeline_detail(tenant_id, timeline_id)
    assert detail["state"] == "Broken", detail
    assert name in detail["broken_reason"], detail
    res = subprocess.run([str(BIN_DIR / "pagectl"), "verify", str(env.pageserver.workdir)], capture_output=True, text=True, timeout=60)
    assert res.returncode == 1 and name in res.stdout + res.stderr
