"""Crash safety: kill -9 at and around create, and damaged files on disk.
A half-made tenant or timeline is either fully there or absent after
restart; a corrupt file makes its object Broken with a reason, never
silently wrong."""

from __future__ import annotations

import random
import secrets
import tempfile
import threading
import time
from pathlib import Path

import pytest

from fixtures.neon_fixtures import NeonEnv
from fixtures.pageserver_http import PageserverApiException, PageserverHttpClient
from fixtures.utils import wait_until


def leftovers(ps) -> list[str]:
    return [str(p) for p in ps.workdir.rglob("*") if p.name.endswith("___temp") or p.name.endswith("___deleted")]


def scratch_dirs_of(pid: int) -> list[str]:
    """The initdb / import scratch directories process ``pid`` made in the
    system's temporary directory."""
    return [str(p) for p in Path(tempfile.gettempdir()).glob(f"pageserver-*-{pid}")]


@pytest.mark.parametrize("failpoint", ["tenant-create-before-rename", "timeline-create-before-rename"])
def test_kill9_at_create_failpoint(neon_simple_env: NeonEnv, failpoint: str):
    ps = neon_simple_env.pageserver
    client = ps.http_client()
    tenant_id = client.tenant_create() if failpoint.startswith("timeline") else None
    client.configure_failpoints((failpoint, "pause"))

    new_id = secrets.token_hex(16)
    slow = PageserverHttpClient(ps.http_port, timeout=60)
    result: dict = {}

    def create() -> None:
        try:
            if tenant_id is None:
                slow.tenant_create(new_id)
            else:
                slow.timeline_create(tenant_id, new_timeline_id=new_id)
            result["ok"] = True
        except Exception as e:  # the connection dies with the process
            result["error"] = e

    thread = threading.Thread(target=create)
    thread.start()
    # The temporary directory appears while the request is parked at the failpoint.
    def parked() -> None:
        assert leftovers(ps), "no temporary directory yet"

    wait_until(parked, timeout=10)
    ps.stop(immediate=True)
    thread.join(timeout=30)
    assert "ok" not in result

    ps.start()
    assert leftovers(ps) == []
    if tenant_id is None:
        assert new_id not in [t["id"] for t in client.tenant_list()]
        assert not ps.tenant_dir(new_id).exists()
        assert client.tenant_create(new_id) == new_id
    else:
        assert new_id not in [t["timeline_id"] for t in client.timeline_list(tenant_id)]
        assert client.timeline_create(tenant_id, new_timeline_id=new_id)["timeline_id"] == new_id


def test_kill9_during_concurrent_creates(neon_simple_env: NeonEnv):
    """Kill the process at random moments under a stream of creates and
    deletes; after each restart every acknowledged object is present and
    Active, and nothing half-made is visible."""
    ps = neon_simple_env.pageserver
    client = ps.http_client()
    rng = random.Random(1234)
    acknowledged_tenants: set[str] = set()
    acknowledged_timelines: dict[str, set[str]] = {}
    deleted: set[str] = set()
    delete_attempted: set[str] = set()

    for round_no in range(4):
        stop = threading.Event()
        lock = threading.Lock()

        def worker(seed: int) -> None:
            local = PageserverHttpClient(ps.http_port, timeout=10)
            wrng = random.Random(seed)
            while not stop.is_set():
                try:
                    tenant_id = local.tenant_create()
                    with lock:
                        acknowledged_tenants.add(tenant_id)
                        acknowledged_timelines[tenant_id] = set()
                    for _ in range(wrng.randint(1, 3)):
                        tl = local.timeline_create(tenant_id)["timeline_id"]
                        with lock:
                            acknowledged_timelines[tenant_id].add(tl)
                    if wrng.random() < 0.2:
                        with lock:
                            delete_attempted.add(tenant_id)
                        local.tenant_delete(tenant_id)
                        with lock:
                            deleted.add(tenant_id)
                except Exception:
                    return

        threads = [threading.Thread(target=worker, args=(round_no * 10 + i,)) for i in range(3)]
        for t in threads:
            t.start()
        time.sleep(rng.uniform(0.2, 0.8))
        assert ps.process is not None
        killed_pid = ps.process.pid
        ps.stop(immediate=True)
        stop.set()
        for t in threads:
            t.join(timeout=30)
        killed_scratch = scratch_dirs_of(killed_pid)

        ps.start()
        assert leftovers(ps) == []
        # The creates in flight left initdb clusters in the temporary
        # directory; start-up removes them (in the background, once the
        # killed node's initdb children stop writing into them).
        def scratch_removed() -> None:
            assert scratch_dirs_of(killed_pid) == [], f"left behind (of {len(killed_scratch)} at the kill)"

        wait_until(scratch_removed, timeout=30)
        present = {t["id"]: t for t in client.tenant_list()}
        for tenant_id, info in present.items():
            assert info["state"] == "Active", info
            timelines = client.timeline_list(tenant_id)
            assert all(t["state"] == "Active" for t in timelines), timelines
        with lock:
            # A delete that was in flight at the kill may or may not have happened.
            for tenant_id in acknowledged_tenants - delete_attempted:
                assert tenant_id in present, f"acknowledged tenant {tenant_id} lost in round {round_no}"
                listed = {t["timeline_id"] for t in client.timeline_list(tenant_id)}
                missing = acknowledged_timelines[tenant_id] - listed
                assert not missing, f"acknowledged timelines {missing} of {tenant_id} lost"
            for tenant_id in deleted:
                assert tenant_id not in present, f"deleted tenant {tenant_id} came back"
    assert len(acknowledged_tenants) > 0


def test_corrupt_files_make_objects_broken(neon_simple_env: NeonEnv):
    ps = neon_simple_env.pageserver
    ps.allowed_errors += [".*tenant is broken.*", ".*timeline is broken.*"]
    client = ps.http_client()
    good = client.tenant_create()
    bad_config = client.tenant_create()
    tl_ok = client.timeline_create(good)["timeline_id"]
    tl_bad = client.timeline_create(good)["timeline_id"]
    ps.stop()

    metadata = ps.timeline_dir(good, tl_bad) / "metadata"
    data = bytearray(metadata.read_bytes())
    data[20] ^= 0xFF
    metadata.write_bytes(bytes(data))
    (ps.tenant_dir(bad_config) / "config").write_text("gc_horizon = 'not a number'\n")
    ps.start()

    info = client.tenant_status(bad_config)
    assert "Broken" in info["state"], info
    assert "config" in info["state"]["Broken"]["reason"]
    with pytest.raises(PageserverApiException) as e:
        client.timeline_create(bad_config)
    assert e.value.status_code == 412 and "Broken" in e.value.msg

    assert client.tenant_status(good)["state"] == "Active"
    assert client.timeline_detail(good, tl_ok)["state"] == "Active"
    broken = client.timeline_detail(good, tl_bad)
    assert broken["state"] == "Broken"
    assert "checksum" in broken["broken_reason"] and "metadata" in broken["broken_reason"]
    with pytest.raises(PageserverApiException) as e:
        client.timeline_create(good, ancestor_timeline_id=tl_bad)
    assert e.value.status_code == 412

    # Broken objects can be deleted, which is how an operator clears them.
    client.timeline_delete(good, tl_bad)
    client.tenant_delete(bad_config)
    ps.restart()
    assert {t["id"] for t in client.tenant_list()} == {good}
    assert [t["timeline_id"] for t in client.timeline_list(good)] == [tl_ok]
