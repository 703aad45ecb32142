"""Timeline lifecycle over HTTP: create, branch, list, get, delete."""

from __future__ import annotations

import secrets

import pytest

from fixtures.storage import lsn_int
from fixtures.neon_fixtures import NeonEnv, raw_request
from fixtures.pageserver_http import PageserverApiException

# Every field of seed 004's TimelineInfo, required ones included.
SEED_TIMELINE_FIELDS = {
    "timeline_id",
    "tenant_id",
    "last_record_lsn",
    "disk_consistent_lsn",
    "remote_consistent_lsn",
    "ancestor_timeline_id",
    "ancestor_lsn",
    "prev_record_lsn",
    "current_logical_size",
    "current_physical_size",
    "current_logical_size_non_incremental",
    "current_physical_size_non_incremental",
    "wal_source_connstr",
    "last_received_msg_lsn",
    "last_received_msg_ts",
    "awaits_download",
    "state",
    "local",
    "remote",
}


def new_id() -> str:
    return secrets.token_hex(16)


def test_timeline_create_get_list_delete(neon_simple_env: NeonEnv):
    env = neon_simple_env
    client = env.pageserver.http_client()
    tenant_id = client.tenant_create()

    created = client.timeline_create(tenant_id)
    timeline_id = created["timeline_id"]
    assert SEED_TIMELINE_FIELDS <= set(created)
    assert created["tenant_id"] == tenant_id
    assert created["state"] == "Active"
    assert created["pg_version"] == 15
    assert created["ancestor_timeline_id"] is None
    # A root timeline holds a fresh initdb cluster, durable at its checkpoint LSN.
    assert lsn_int(created["last_record_lsn"]) > 0
    assert created["disk_consistent_lsn"] == created["last_record_lsn"]
    assert created["remote_consistent_lsn"] is None
    assert created["current_logical_size"] is None
    assert created["current_physical_size"] > 0
    assert created["awaits_download"] is False
    assert created["remote"] == {"remote_consistent_lsn": None}

    chosen = new_id()
    assert client.timeline_create(tenant_id, new_timeline_id=chosen, pg_version=15)["timeline_id"] == chosen
    with pytest.raises(PageserverApiException) as e:
        client.timeline_create(tenant_id, new_timeline_id=chosen)
    assert e.value.status_code == 409 and chosen in e.value.msg

    listed = {t["timeline_id"] for t in client.timeline_list(tenant_id)}
    assert listed == {timeline_id, chosen}
    assert client.tenant_status(tenant_id)["timeline_count"] == 2

    detail = client.timeline_detail(tenant_id, chosen, include_non_incremental_physical_size=True)
    assert detail["current_physical_size_non_incremental"] == detail["current_physical_size"] > 0
    assert detail["current_logical_size_non_incremental"] is None
    assert client.timeline_detail(tenant_id, chosen)["current_physical_size_non_incremental"] is None

    assert client.timeline_delete(tenant_id, chosen) == {}
    assert not env.pageserver.timeline_dir(tenant_id, chosen).exists()
    for call in (lambda: client.timeline_detail(tenant_id, chosen), lambda: client.timeline_delete(tenant_id, chosen)):
        with pytest.raises(PageserverApiException) as e:
            call()
        assert e.value.status_code == 404
    assert {t["timeline_id"] for t in client.timeline_list(tenant_id)} == {timeline_id}


def test_branches(neon_simple_env: NeonEnv):
    client = neon_simple_env.pageserver.http_client()
    tenant_id = client.tenant_create()
    root = client.timeline_create(tenant_id)["timeline_id"]

    root_lsn = client.timeline_detail(tenant_id, root)["last_record_lsn"]
    branch = client.timeline_create(tenant_id, ancestor_timeline_id=root)
    assert branch["ancestor_timeline_id"] == root
    assert branch["ancestor_lsn"] == root_lsn
    assert branch["local"]["ancestor_timeline_id"] == root
    grandchild = client.timeline_create(tenant_id, ancestor_timeline_id=branch["timeline_id"], ancestor_start_lsn=root_lsn)
    assert grandchild["ancestor_timeline_id"] == branch["timeline_id"]

    # The branch point must be inside the ancestor's history.
    with pytest.raises(PageserverApiException) as e:
        client.timeline_create(tenant_id, ancestor_timeline_id=root, ancestor_start_lsn="1/16B3748")
    assert e.value.status_code == 400 and "above the last record LSN" in e.value.msg
    missing = new_id()
    with pytest.raises(PageserverApiException) as e:
        client.timeline_create(tenant_id, ancestor_timeline_id=missing)
    assert e.value.status_code == 400 and missing in e.value.msg
    with pytest.raises(PageserverApiException) as e:
        client.timeline_create(tenant_id, ancestor_start_lsn="0/0")
    assert e.value.status_code == 400 and "ancestor_timeline_id" in e.value.msg

    # A timeline with branches cannot be deleted; leaves first.
    with pytest.raises(PageserverApiException) as e:
        client.timeline_delete(tenant_id, root)
    assert e.value.status_code == 409 and branch["timeline_id"] in e.value.msg
    client.timeline_delete(tenant_id, grandchild["timeline_id"])
    client.timeline_delete(tenant_id, branch["timeline_id"])
    client.timeline_delete(tenant_id, root)
    assert client.timeline_list(tenant_id) == []


@pytest.mark.parametrize(
    "body, fragment",
    [
        ({"pg_version": 14}, "pg_version 14 is not supported"),
        ({"pg_version": "fifteen"}, "pg_version"),
        ({"new_timeline_id": "nothex"}, "new_timeline_id"),
        ({"ancestor_timeline_id": 12}, "ancestor_timeline_id"),
        ({"ancestor_start_lsn": "16B3748"}, "invalid LSN"),
        ({"ancestor_start_lsn": "0/123456789"}, "invalid LSN"),
        ({"surprise": True}, "surprise"),
    ],
)
def test_timeline_create_bad_bodies(neon_simple_env: NeonEnv, body: dict, fragment: str):
    env = neon_simple_env
    client = env.pageserver.http_client()
    tenant_id = client.tenant_create()
    res = raw_request("POST", env.pageserver.http_port, f"/v1/tenant/{tenant_id}/timeline/", json=body)
    assert res.status_code == 400, res.text
    assert fragment in res.json()["msg"]
    assert client.timeline_list(tenant_id) == []


def test_timeline_bad_ids_and_flags(neon_simple_env: NeonEnv):
    env = neon_simple_env
    port = env.pageserver.http_port
    client = env.pageserver.http_client()
    tenant_id = client.tenant_create()
    timeline_id = client.timeline_create(tenant_id)["timeline_id"]
    for method in ("GET", "DELETE"):
        res = raw_request(method, port, f"/v1/tenant/{tenant_id}/timeline/not-an-id")
        assert res.status_code == 400 and "timeline_id" in res.json()["msg"]
    res = raw_request("GET", port, f"/v1/tenant/{tenant_id}/timeline/{new_id()}")
    assert res.status_code == 404
    res = raw_request(
        "GET", port, f"/v1/tenant/{tenant_id}/timeline/{timeline_id}?include-non-incremental-physical-size=maybe"
    )
    assert res.status_code == 400 and "include-non-incremental-physical-size" in res.json()["msg"]
    res = raw_request("GET", port, f"/v1/tenant/{tenant_id}/timeline?include-non-incremental-logical-size=yes")
    assert res.status_code == 400


def test_tenant_delete_removes_timelines(neon_simple_env: NeonEnv):
    env = neon_simple_env
    client = env.pageserver.http_client()
    tenant_id = client.tenant_create()
    root = client.timeline_create(tenant_id)["timeline_id"]
    client.timeline_create(tenant_id, ancestor_timeline_id=root)
    client.tenant_delete(tenant_id)
    assert not env.pageserver.tenant_dir(tenant_id).exists()
    env.pageserver.restart()
    assert client.tenant_list() == []
