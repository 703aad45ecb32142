"""LSN-by-timestamp against a live primary: commits spread over a minute of
pgbench, each followed by a recorded (clock_timestamp(), current WAL LSN);
every recorded time maps to a commit between the previous and this
recording, a base backup there shows exactly what was committed by then,
and the answers survive a restart, a GC that keeps the range, and an attach
on another node. Also the past/future/nodata kinds and input errors."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from fixtures.neon_fixtures import NeonEnvBuilder
from fixtures.pageserver_http import PageserverApiException, PageserverHttpClient
from fixtures.pg import VanillaPostgres, wait_for
from fixtures.port_distributor import PortDistributor
from fixtures.s3 import local_remote_storage_config
from fixtures.utils import wait_until
from fixtures.storage import lsn_int

ROUNDS = 8
ROUND_PAUSE = 7.5


def wait_caught_up(client: PageserverHttpClient, tenant_id: str, timeline_id: str, lsn: str) -> None:
    def caught_up():
        d = client.timeline_detail(tenant_id, timeline_id)
        assert d["state"] == "Active", d
        return lsn_int(d["last_record_lsn"]) >= lsn_int(lsn)

    wait_for(caught_up, timeout=120, what=f"ingest to reach {lsn}")


def test_lsn_by_timestamp(neon_env_builder: NeonEnvBuilder, test_output_dir: Path, port_distributor: PortDistributor):
    # Two nodes sharing object storage, for the attach at the end.
    neon_env_builder.num_pageservers = 2
    neon_env_builder.pageserver_config_overrides["remote_storage"] = local_remote_storage_config(neon_env_builder.repo_dir / "remote_storage")
    env = neon_env_builder.init_start()
    for ps in env.pageservers:
        ps.allowed_errors.append(".*WAL streaming from .* failed, reconnecting.*")
    pg = VanillaPostgres(test_output_dir / "primary", port_distributor.get_port(), conf={"autovacuum": "off"}).start()
    try:
        client = env.pageserver.http_client()
        tenant_id = client.tenant_create()
        timeline_id = client.timeline_create(tenant_id, wal_source_connstr=pg.connstr())["timeline_id"]
        pg.pgbench("-i", "-s", "1", "-q")
        pg.sql("CREATE TABLE marks (n int, at timestamptz)")
        recorded: list[tuple[datetime, str]] = []
        sums: list[int] = []
        started = time.monotonic()
        for n in range(ROUNDS):
            pg.pgbench("-t", "30", "-c", "1")
            pg.sql(f"INSERT INTO marks VALUES ({n}, clock_timestamp())")
            # Quiet moment: no commit between these two readings.
            at, lsn, balance = pg.sql("SELECT clock_timestamp(), pg_current_wal_lsn(), (SELECT sum(abalance) FROM pgbench_accounts)")[0]
            recorded.append((at, lsn))
            sums.append(int(balance))
            time.sleep(ROUND_PAUSE)
        assert time.monotonic() - started < 120
        # A commit after the last recording, so that it falls between commits too.
        pg.sql("INSERT INTO marks VALUES (-1, clock_timestamp())")
        wait_caught_up(client, tenant_id, timeline_id, pg.current_lsn())

        def answers() -> list[dict]:
            return [client.get_lsn_by_timestamp(tenant_id, timeline_id, at.isoformat(), version=2) for at, _ in recorded]

        first = answers()
        for i, ((at, lsn), got) in enumerate(zip(recorded, first)):
            assert got["kind"] == "present", (at, got)
            found = lsn_int(got["lsn"])
            assert found <= lsn_int(lsn), f"round {i}: {got['lsn']} is after the recorded {lsn}"
            if i > 0:
                assert found > lsn_int(recorded[i - 1][1]), f"round {i}: {got['lsn']} is not after the previous recording {recorded[i - 1][1]}"
            # The seed format is the bare LSN string.
            assert client.get_lsn_by_timestamp(tenant_id, timeline_id, at.isoformat()) == got["lsn"]
            # The commit at that LSN happened at or before the recorded time.
            ts = client.get_timestamp_of_lsn(tenant_id, timeline_id, got["lsn"])
            assert ts["commit_lsn"] == got["lsn"]
            assert datetime.fromisoformat(ts["timestamp"].replace("Z", "+00:00")) <= at

        # A base backup at the LSN found for a time shows exactly what was
        # committed by then.
        for i in [0, ROUNDS // 2, ROUNDS - 1]:
            tar, _ = client.basebackup(tenant_id, timeline_id, lsn=first[i]["lsn"])
            restored = VanillaPostgres(test_output_dir / f"at_{i}", port_distributor.get_port(), basebackup=tar).start()
            try:
                got = restored.sql("SELECT (SELECT sum(abalance) FROM pgbench_accounts), (SELECT count(*) FROM marks)")[0]
                assert (int(got[0]), got[1]) == (sums[i], i + 1), f"round {i} at {first[i]['lsn']}"
            finally:
                restored.destroy()

        detail = client.timeline_detail(tenant_id, timeline_id)
        past = client.get_lsn_by_timestamp(tenant_id, timeline_id, "2001-01-01T00:00:00Z", version=2)
        assert past["kind"] == "past", past
        assert lsn_int(past["lsn"]) <= lsn_int(recorded[0][1])
        future_at = (datetime.now(timezone.utc) + timedelta(days=1)).isoformat()
        future = client.get_lsn_by_timestamp(tenant_id, timeline_id, future_at, version=2)
        assert future["kind"] == "future", future
        assert lsn_int(future["lsn"]) >= lsn_int(detail["last_record_lsn"])

        # Input errors name the expected format.
        with pytest.raises(PageserverApiException) as e:
            client.get_lsn_by_timestamp(tenant_id, timeline_id, "yesterday")
        assert e.value.status_code == 400 and "RFC 3339" in e.value.msg
        with pytest.raises(PageserverApiException) as e:
            client.get_timestamp_of_lsn(tenant_id, timeline_id, "nonsense")
        assert e.value.status_code == 400 and "0/16B3748" in e.value.msg

        # A bootstrapped timeline has no commit records: nodata, and no
        # timestamp for any LSN.
        fresh = client.timeline_create(tenant_id)
        nodata = client.get_lsn_by_timestamp(tenant_id, fresh["timeline_id"], future_at, version=2)
        assert nodata == {"lsn": fresh["last_record_lsn"], "kind": "nodata"}
        with pytest.raises(PageserverApiException) as e:
            client.get_timestamp_of_lsn(tenant_id, fresh["timeline_id"], fresh["last_record_lsn"])
        assert e.value.status_code == 404 and "no commit" in e.value.msg

        # Stored data: same answers after a restart and after a GC that keeps the range.
        client.timeline_checkpoint(tenant_id, timeline_id)
        env.pageserver.restart()
        client = env.pageserver.http_client()
        assert answers() == first
        client.timeline_compact(tenant_id, timeline_id)
        client.timeline_gc(tenant_id, timeline_id, gc_horizon=1 << 40)
        assert answers() == first

        # And on another node, attached from object storage.
        client.tenant_detach(tenant_id)
        client = env.pageservers[1].http_client()
        client.tenant_attach(tenant_id)

        def active() -> None:
            state = client.tenant_status(tenant_id)["state"]
            assert state == "Active", state

        wait_until(active, timeout=60)
        assert answers() == first
    finally:
        pg.destroy()
