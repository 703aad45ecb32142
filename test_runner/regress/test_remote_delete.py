"""Tenant deletion survives kill -9: remote objects go through the persisted
deletion queue, and a deletion interrupted before the local state was
removed is finished at the next start; an attach cut short is done again."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import requests

from fixtures.neon_fixtures import NeonEnvBuilder
from fixtures.pageserver_http import PageserverApiException, PageserverHttpClient
from fixtures.remote import make_writer, shared_local, wait_active, wait_uploaded
from fixtures.storage import ModelWriter
from fixtures.utils import wait_until


def remote_objects(root: Path, tenant_id: str) -> set[str]:
    base = root / "tenants" / tenant_id
    if not base.exists():
        return set()
    return {str(p.relative_to(base)) for p in base.rglob("*") if p.is_file()}


def two_tenants(client: PageserverHttpClient) -> tuple[ModelWriter, ModelWriter, dict]:
    doomed, kept = (make_writer(client, conf={"compaction_period": "0s"}) for _ in range(2))
    lsns = {}
    for w in (doomed, kept):
        lsns[w.tenant_id] = [w.put_batches(10), w.put_batches(10)]
        client.timeline_checkpoint(w.tenant_id, w.timeline_id)
        wait_uploaded(client, w.tenant_id, w.timeline_id)
    return doomed, kept, lsns


def check_gone(client: PageserverHttpClient, root: Path, tenant_id: str) -> None:
    with pytest.raises(PageserverApiException) as e:
        client.tenant_status(tenant_id)
    assert e.value.status_code == 404

    def remote_empty() -> None:
        left = remote_objects(root, tenant_id)
        assert not left, left

    wait_until(remote_empty, timeout=30, interval=0.2)


@pytest.mark.parametrize("failpoint", ["deletion-queue-before-delete", "deletion-queue-after-delete"])
def test_kill9_during_remote_deletion(neon_env_builder: NeonEnvBuilder, failpoint: str):
    """The remote deletion is in progress (its list persisted, the deletion
    failing on a failpoint before or after the objects went, and retried)
    when the node is killed; after the restart the list runs again and the
    tenant's prefix is empty, and the other tenant is untouched."""
    root = shared_local(neon_env_builder)
    env = neon_env_builder.init_start()
    ps = env.pageserver
    ps.allowed_errors.append(f".*deletion queue: failpoint {failpoint}.*")
    client = ps.http_client()
    doomed, kept, lsns = two_tenants(client)
    kept_objects = remote_objects(root, kept.tenant_id)
    total = len(remote_objects(root, doomed.tenant_id))
    assert total >= 3, total

    client.configure_failpoints((failpoint, "return"))
    client.tenant_delete(doomed.tenant_id)
    assert not ps.tenant_dir(doomed.tenant_id).exists()

    def under_way() -> None:
        assert ps.log_contains(f"deletion queue: failpoint {failpoint}")

    wait_until(under_way, timeout=30, interval=0.1)
    left = len(remote_objects(root, doomed.tenant_id))
    if failpoint == "deletion-queue-before-delete":
        assert left == total
    else:
        assert left == 0
    assert list((ps.workdir / "deletion").glob("*.list")), "the deletion list is gone"
    ps.stop(immediate=True)
    ps.start()
    check_gone(client, root, doomed.tenant_id)

    def queue_empty() -> None:
        assert not list((ps.workdir / "deletion").glob("*.list"))

    wait_until(queue_empty, timeout=30, interval=0.2)
    assert remote_objects(root, kept.tenant_id) == kept_objects
    kept.check(lsns[kept.tenant_id])


def test_kill9_before_local_state_removed(neon_env_builder: NeonEnvBuilder):
    """Killed after the remote deletion was queued but before the local
    directory went: the restart finishes the deletion instead of bringing
    the tenant back without its remote objects."""
    root = shared_local(neon_env_builder)
    env = neon_env_builder.init_start()
    ps = env.pageserver
    client = ps.http_client()
    doomed, kept, lsns = two_tenants(client)
    kept_objects = remote_objects(root, kept.tenant_id)
    client.configure_failpoints(("tenant-delete-before-local-remove", "sleep(60000)"))

    def delete() -> None:
        try:
            requests.delete(f"{client.base}/v1/tenant/{doomed.tenant_id}", timeout=20)
        except requests.RequestException:
            pass  # the server is killed under the request

    deleter = threading.Thread(target=delete)
    deleter.start()
    marker = ps.tenant_dir(doomed.tenant_id) / "deleted"
    def queued() -> None:
        assert marker.exists() and list((ps.workdir / "deletion").glob("*.list"))

    wait_until(queued, timeout=30, interval=0.05)
    ps.stop(immediate=True)
    deleter.join(timeout=30)
    assert ps.tenant_dir(doomed.tenant_id).exists(), "the local state went before the kill"

    ps.start()
    check_gone(client, root, doomed.tenant_id)
    assert not ps.tenant_dir(doomed.tenant_id).exists()
    assert ps.log_contains("finishing a tenant deletion interrupted by a restart")
    assert remote_objects(root, kept.tenant_id) == kept_objects
    kept.check(lsns[kept.tenant_id])
    assert [t["id"] for t in client.tenant_list()] == [kept.tenant_id]


def test_kill9_during_attach(neon_env_builder: NeonEnvBuilder):
    """Killed while an attach has built only some of the tenant's
    timelines: the restart attaches the tenant again from remote storage
    instead of loading it without the missing timelines."""
    shared_local(neon_env_builder)
    env = neon_env_builder.init_start()
    ps = env.pageserver
    client = ps.http_client()
    main = make_writer(client, conf={"compaction_period": "0s"})
    t = main.tenant_id
    main_lsns = [main.put_batches(10)]
    branch_id = client.timeline_create(t, ancestor_timeline_id=main.timeline_id)["timeline_id"]
    branch = ModelWriter(client, t, branch_id, seed=5)
    branch_lsns = [branch.put_batches(10)]
    for tl in (main.timeline_id, branch_id):
        client.timeline_checkpoint(t, tl)
        wait_uploaded(client, t, tl)
    client.tenant_detach(t)

    client.configure_failpoints(("attach-after-timeline", "sleep(60000)"))
    client.tenant_attach(t)
    timelines = ps.tenant_dir(t) / "timelines"

    def one_built() -> None:
        assert (ps.tenant_dir(t) / "attaching").exists()
        assert len(list(timelines.iterdir())) == 1

    wait_until(one_built, timeout=30, interval=0.05)
    ps.stop(immediate=True)

    ps.start()
    wait_active(client, t)
    assert not (ps.tenant_dir(t) / "attaching").exists()
    assert sorted(x["timeline_id"] for x in client.timeline_list(t)) == sorted([main.timeline_id, branch_id])
    assert ps.log_contains("an attach was interrupted; attaching the tenant again")
    main.check(main_lsns)
    branch.check(branch_lsns)
