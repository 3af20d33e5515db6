"""The beat write path on a real 3-primary / 3-replica Redis Cluster (tests/support/cluster.py).

The listener's stages through the slot router (one EVALSHA per shard, each to its primary),
``Liveness.beats`` through redis-py's ``RedisCluster`` (grouped by shard), every shard's ingest
mark, and a primary failover mid-run that loses no beat: what a batch that spans every shard
needs from a cluster, where one script call may touch one slot only.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import redis

import hbdns.cluster_route as cluster_route
import tests.support.cluster as cluster_support
from hbdns import keys, zone_serial
from hbdns.connection import connect
from hbdns.liveness import BeatRequest, Liveness
from hbdns.plans import Plan
from heartbeat_listener.cluster_io import ClusterAccounts, ClusterBeats
from heartbeat_listener.ingest import IngestMark
from heartbeat_listener.protocol import AccountInfo, StoreUnavailable
from tests.support.listener import Listener, send
from tests.support.listener import beat as listener_beat
from tests.support.servers import wait_for

cluster = pytest.fixture(scope="module")(cluster_support.started_cluster)
fresh = pytest.fixture(cluster_support.fresh_cluster)

ZONE = "dyn.test"
IDS = list(range(1, 2 * keys.SHARDS + 1))  # two accounts in every shard
KEY = b"\xab" * 32
PLANS = {"p": Plan(name="p", kind="heartbeat", interval=5, misses=3, ttl=5)}


def add_accounts(r: redis.Redis, plan: str = "p") -> None:
    for i in IDS:
        r.hset(keys.account(i), mapping={"fqdn": f"h{i}.{ZONE}", "zone": ZONE, "state": "neutral", "counter": "0",
                                         "hb_key": KEY.hex(), "plan": plan, "fp": "f"})  # fmt: skip


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def beat(i: int, counter: int) -> BeatRequest:
    return BeatRequest(i, ZONE, 60_000, ipv4=f"203.0.113.{i}", counter=counter, fp="f")


def test_the_listener_stages_run_each_shard_on_its_primary(fresh: Any) -> None:
    r = connect(fresh.url)
    add_accounts(r)
    router = cluster_route.ClusterRouter.from_url(fresh.url)
    try:
        found = ClusterAccounts(router, PLANS)(IDS)
        assert all(isinstance(found[i], AccountInfo) and found[i].zone == ZONE for i in IDS)
        writer = ClusterBeats(router, Liveness(r))
        t = now_ms()
        first = writer.beats([beat(i, t) for i in IDS])
        assert [(res.status, res.changed) for res in first] == [("ok", True)] * len(IDS)
        assert all(res.status == "ok" and not res.changed for res in writer.beats([beat(i, t + 1) for i in IDS]))
        for i in IDS:
            assert r.zscore(keys.deadlines(keys.shard_of(i)), keys.deadline_member(i, 4)) is not None
            assert [f["type"] for _, f in r.xrange(keys.events(keys.shard_of(i)))].count("recovered") == 2
        assert zone_serial.read(r, ZONE) == len(IDS)  # one change per account, each in its shard
    finally:
        router.close()


def test_liveness_beats_group_by_shard_on_a_cluster_client(fresh: Any) -> None:
    r = connect(fresh.url)
    add_accounts(r)
    t = now_ms()
    results = Liveness(r).beats([beat(i, t) for i in IDS] + [beat(1, t)])
    assert [res.status for res in results] == ["ok"] * len(IDS) + ["replay"]
    assert int(r.hget(keys.account(IDS[-1]), "counter")) == t


def test_the_ingest_mark_reaches_every_shard(fresh: Any) -> None:
    r = connect(fresh.url)
    assert IngestMark(r, lambda: True, keep_ms=60_000, every=0.0).step()
    assert all(r.hget(keys.ingest(s), "mark") for s in keys.all_shards())


def test_a_primary_killed_mid_run_loses_no_beat(fresh: Any) -> None:
    """SIGKILL of shard 0's primary: its replica takes over after the node timeout; meanwhile that
    primary's shards' beats are held (the others go on) and stored, with their age, once it has."""
    r = connect(fresh.url)
    add_accounts(r)
    router = cluster_route.ClusterRouter.from_url(fresh.url)
    try:
        writer = ClusterBeats(router, Liveness(r), backoff=0.1)
        t = now_ms()
        writer.beats([beat(i, t) for i in IDS])
        fresh.owner(cluster_route.slot(keys.deadlines(0))).kill()
        counter, most_held = t, 0

        def stored() -> bool:
            nonlocal counter, most_held
            counter += 1
            try:
                writer.beats([beat(i, counter) for i in IDS])
            except StoreUnavailable:
                pass  # nothing of the batch stored: held, as the shell would go on
            most_held = max(most_held, len(writer.held))
            return not writer.held and all(int(r.hget(keys.account(i), "counter") or 0) == counter for i in IDS)

        wait_for(stored, 30, interval=0.05, what="every account's newest beat stored after the failover")
        assert most_held > 0 and writer.reapplied > 0 and writer.held.dropped == 0
    finally:
        router.close()


def test_the_listener_process_stores_beats_of_every_shard(fresh: Any, tmp_path: Path) -> None:
    r = connect(fresh.url)
    add_accounts(r, plan="heartbeat-c")
    listener = Listener(tmp_path, fresh.url).start()
    try:
        t = now_ms()
        for i in IDS:
            send(listener_beat(i, KEY, t, flags=0), listener.port)
        wait_for(lambda: listener.count("accepted") == len(IDS), 20, what="every beat accepted")
        assert all(int(r.hget(keys.account(i), "counter")) == t for i in IDS)
        assert all(r.hget(keys.ingest(s), "mark") for s in keys.all_shards())  # marked on every shard
    finally:
        listener.stop()
