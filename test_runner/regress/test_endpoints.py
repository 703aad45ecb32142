"""Compute endpoints through `cplane`: stock PostgreSQL started on base
backups of branches, writing back into them, restarted from the page
server, and read-only at a past LSN."""

from __future__ import annotations

import json
from pathlib import Path

import psycopg2
import pytest

from fixtures.cplane import consecutive_ports, cplane
from fixtures.port_distributor import PortDistributor


def sql(port: int, query: str):
    conn = psycopg2.connect(host="127.0.0.1", port=port, user="postgres", dbname="postgres")
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(query)
            return cur.fetchall() if cur.description else []
    finally:
        conn.close()


class Cluster:
    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.ports: dict[str, int] = {}

    def __call__(self, *args: str, check: bool = True):
        return cplane(self.workdir, *args, check=check)

    def endpoint(self, name: str, tenant: str, timeline: str, *extra: str) -> int:
        out = self("endpoint", "create", name, "--tenant", tenant, "--timeline", timeline, *extra).stdout
        port = int(out.split("port ")[1])
        self.ports[name] = port
        return port

    def count(self, name: str) -> int:
        return sql(self.ports[name], "SELECT count(*) FROM t")[0][0]


@pytest.fixture
def cluster(test_output_dir: Path, port_distributor: PortDistributor):
    workdir = test_output_dir / "cplane"
    c = Cluster(workdir)
    http_port = consecutive_ports(port_distributor, 1)
    pg_port = consecutive_ports(port_distributor, 1)
    c("init", "--http-port", str(http_port), "--pg-port", str(pg_port))
    c("start")
    try:
        yield c
    finally:
        listing = c("endpoint", "list", check=False).stdout
        for line in listing.splitlines():
            if " running " in line:
                c("endpoint", "stop", line.split()[0], "--immediate", check=False)
            # Data directories may live in the system temporary directory.
            c("endpoint", "remove", line.split()[0], check=False)
        c("stop")
        log = (workdir / "pageserver_1" / "pageserver.log").read_text()
        # The only warnings: the walreceiver losing a compute that stopped.
        bad = [
            line
            for line in log.splitlines()
            if (" WARN " in line or " ERROR " in line) and "WAL streaming from" not in line
        ]
        assert not bad, "\n".join(bad[:20])


def test_branch_loop(cluster: Cluster):
    c = cluster
    tenant = c("tenant", "create").stdout.strip()
    main = json.loads(c("timeline", "create", "--tenant-id", tenant).stdout)["timeline_id"]

    c.endpoint("main", tenant, main)
    c("endpoint", "start", "main")
    sql(c.ports["main"], "CREATE TABLE t (x int PRIMARY KEY, src text)")
    sql(c.ports["main"], "INSERT INTO t SELECT g, 'main' FROM generate_series(1, 100) g")
    branch_lsn = sql(c.ports["main"], "SELECT pg_current_wal_lsn()")[0][0]
    sql(c.ports["main"], "INSERT INTO t SELECT g, 'main' FROM generate_series(101, 200) g")
    c("endpoint", "stop", "main")

    # Two branches from one point, each with its own compute.
    branches = {}
    for name in ["b1", "b2"]:
        info = json.loads(
            c("timeline", "branch", "--tenant-id", tenant, "--ancestor-timeline-id", main, "--ancestor-start-lsn", branch_lsn).stdout
        )
        assert info["ancestor_lsn"] == branch_lsn
        branches[name] = info["timeline_id"]
        c.endpoint(name, tenant, info["timeline_id"])
        c("endpoint", "start", name)
        assert c.count(name) == 100

    # Only one writer per timeline.
    c.endpoint("b1-twin", tenant, branches["b1"])
    res = c("endpoint", "start", "b1-twin", check=False)
    assert res.returncode != 0 and "already writes" in res.stderr

    sql(c.ports["b1"], "INSERT INTO t SELECT g, 'b1' FROM generate_series(1001, 1010) g")
    sql(c.ports["b2"], "DELETE FROM t WHERE x <= 50")
    sql(c.ports["b2"], "CREATE INDEX t_src ON t (src)")
    for name in ["b1", "b2"]:
        c("endpoint", "stop", name)
        c("endpoint", "start", name)
    # Each branch kept its own writes across the restart, and only those.
    assert c.count("b1") == 110
    assert sql(c.ports["b1"], "SELECT count(*) FROM t WHERE src = 'b1'")[0][0] == 10
    assert c.count("b2") == 50
    assert sql(c.ports["b2"], "SELECT min(x) FROM t")[0][0] == 51
    assert sql(c.ports["b2"], "SELECT count(*) FROM pg_indexes WHERE indexname = 't_src'")[0][0] == 1

    # A second round on one branch, then the parent is as it was.
    sql(c.ports["b1"], "UPDATE t SET src = 'b1-again' WHERE x <= 5")
    c("endpoint", "stop", "b1")
    c("endpoint", "start", "b1")
    assert sql(c.ports["b1"], "SELECT count(*) FROM t WHERE src = 'b1-again'")[0][0] == 5
    c("endpoint", "start", "main")
    assert c.count("main") == 200
    assert sql(c.ports["main"], "SELECT count(*) FROM t WHERE src <> 'main'")[0][0] == 0

    # Read-only at the branch point, while the parent's compute runs.
    c.endpoint("past", tenant, main, "--lsn", branch_lsn)
    c("endpoint", "start", "past")
    assert c.count("past") == 100
    assert sql(c.ports["past"], "SELECT pg_is_in_recovery()")[0][0] is True
    with pytest.raises(psycopg2.Error, match="read-only"):
        sql(c.ports["past"], "INSERT INTO t VALUES (-1, 'nope')")

    listing = c("endpoint", "list").stdout
    assert "past running" in listing and "read-only at" in listing and "b2 running" in listing
    c("endpoint", "remove", "past")
    assert "past" not in c("endpoint", "list").stdout


def test_endpoint_bad_input(cluster: Cluster):
    c = cluster
    tenant = c("tenant", "create").stdout.strip()
    main = json.loads(c("timeline", "create", "--tenant-id", tenant).stdout)["timeline_id"]
    for name, err in [("bad name", "must be"), ("x" * 64, "must be")]:
        res = c("endpoint", "create", name, "--tenant", tenant, "--timeline", main, check=False)
        assert res.returncode != 0 and err in res.stderr
    res = c("endpoint", "create", "e", "--tenant", tenant, "--timeline", "0" * 32, check=False)
    assert res.returncode != 0 and "404" in res.stderr
    res = c("endpoint", "create", "e", "--tenant", tenant, "--timeline", main, "--lsn", "FF/0", check=False)
    assert res.returncode != 0 and "ahead of" in res.stderr
    c("endpoint", "create", "e", "--tenant", tenant, "--timeline", main)
    res = c("endpoint", "create", "e", "--tenant", tenant, "--timeline", main, check=False)
    assert res.returncode != 0 and "already exists" in res.stderr
    res = c("endpoint", "start", "nope", check=False)
    assert res.returncode != 0 and "no endpoint nope" in res.stderr
    assert "not running" in c("endpoint", "stop", "e").stdout
