"""Object storage unreachable when the page server starts: tenants whose
layers are all local load from disk and queue their uploads; the others
wait (Loading) and retry in the background until storage answers."""

from __future__ import annotations

import pytest

from fixtures.neon_fixtures import NeonEnvBuilder
from fixtures.pageserver_http import PageserverApiException
from fixtures.remote import make_writer, shared_local, wait_active, wait_uploaded
from fixtures.storage import lsn_int
from fixtures.utils import wait_until

OUTAGE_LOGS = [
    ".*upload failed \\(attempt.*",
    ".*object storage is failing.*",
    ".*every layer is on local disk: loading from it.*",
    ".*the tenant stays Loading until object storage answers.*",
    ".*retrying until object storage answers.*",
]


def test_start_with_object_storage_unreachable(neon_env_builder: NeonEnvBuilder):
    shared_local(neon_env_builder)
    env = neon_env_builder.init_start()
    ps = env.pageserver
    ps.allowed_errors += OUTAGE_LOGS
    client = ps.http_client()
    conf = {"compaction_period": "0s"}
    complete, partial, leaving = (make_writer(client, conf=conf) for _ in range(3))
    lsns = {}
    for w in (complete, partial, leaving):
        lsns[w.tenant_id] = w.put_batches(15)
        client.timeline_checkpoint(w.tenant_id, w.timeline_id)
        wait_uploaded(client, w.tenant_id, w.timeline_id)
    # Layers only in remote storage: these tenants cannot load without it.
    for w in (partial, leaving):
        assert client.timeline_evict(w.tenant_id, w.timeline_id)["evicted"] > 0

    ps.stop()
    ps.start(overrides={"remote_storage_faults": {"unreachable_for_ms": 12000}}, wait_ready=False)

    # Complete local state: Active from local disk, reads and writes go on,
    # uploads wait.
    wait_active(client, complete.tenant_id, timeout=10)
    complete.check([lsns[complete.tenant_id]])
    more = complete.put_batches(10)
    client.timeline_checkpoint(complete.tenant_id, complete.timeline_id)
    detail = client.timeline_detail(complete.tenant_id, complete.timeline_id)
    assert lsn_int(detail["remote_consistent_lsn"]) < lsn_int(detail["disk_consistent_lsn"]), detail

    # The others wait, Loading, and say so.
    assert client.tenant_status(partial.tenant_id)["state"] == "Loading"
    with pytest.raises(PageserverApiException) as e:
        client.test_get_value(partial.tenant_id, partial.timeline_id, next(iter(partial.versions)), "0/1000000")
    assert e.value.status_code == 503 and "Loading" in e.value.msg, e.value

    def outage_reported() -> None:
        res = client.readiness()
        assert res.status_code == 503, res.text
        body = res.json()
        assert "object storage failing" in body["status"] and "tenants wait for it to load" in body["status"], body
        assert body["checks"]["tenants_loading"] == 2, body

    wait_until(outage_reported, timeout=10, interval=0.2)
    # A waiting tenant can be detached: its retries stop at once.
    client.tenant_detach(leaving.tenant_id, timeout_secs=5)
    assert not ps.tenant_dir(leaving.tenant_id).exists()
    assert client.tenant_status(partial.tenant_id)["state"] == "Loading"

    # Storage answers again: the waiting tenant loads, uploads catch up.
    wait_active(client, partial.tenant_id, timeout=60)
    ps.wait_ready(timeout=30)
    assert ps.log_contains("tenant loaded once object storage answered")
    partial.check([lsns[partial.tenant_id]])
    wait_uploaded(client, complete.tenant_id, complete.timeline_id, at_least=detail["disk_consistent_lsn"])
    complete.check([lsns[complete.tenant_id], more])
    # The detached tenant's remote state is intact.
    client.tenant_attach(leaving.tenant_id)
    wait_active(client, leaving.tenant_id)
    leaving.check([lsns[leaving.tenant_id]])
