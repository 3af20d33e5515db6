"""The listener's Redis Cluster stages (heartbeat_listener/cluster_io.py) on a stand-in router.

The router here runs every command on one fakeredis (whose Lua runs the beat script) and can make
a shard's primary "away" (its replies lost): what the stages do with slots, held beats and
NOSCRIPT, without a cluster. The real router on a real cluster is the cluster tests' part.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import fakeredis
import pytest
import redis

from hbdns import keys
from hbdns.liveness import BeatRequest, Liveness
from hbdns.plans import Plan
from hbdns.resp import BatchConnection, ConnectionLost, encode_command
from heartbeat_listener.cluster_io import UNAVAILABLE, ClusterAccounts, ClusterBeats
from heartbeat_listener.protocol import AccountInfo, StoreUnavailable

ZONE = "dyn.test"
TAG = re.compile(rb"\{s:(\d+)\}")


class Router:
    """Runs each command on one Redis; shards in ``away`` answer with a lost reply."""

    def __init__(self, r: redis.Redis) -> None:
        self.conn = BatchConnection(r)
        self.on_connect: list[Any] = []
        self.away: set[int] = set()
        self.calls: list[set[int]] = []  # per command: the shards its keys name

    def execute(self, commands: Sequence[tuple[Any, bytes]], *, idempotent: bool = False) -> list[Any]:
        if not self.conn.connected:  # as the real router does on each (re)connect
            self.conn.roundtrip(encode_command("PING"), 1)
            for hook in self.on_connect:
                hook(self.conn)
        out = []
        for target, payload in commands:
            if payload.startswith(b"*3\r\n$6\r\nSCRIPT"):
                out.append(self.conn.roundtrip(payload, 1)[0])
                continue
            shards = {int(m) for m in TAG.findall(payload)}
            assert {int(m) for m in TAG.findall(str(target).encode())} == shards  # one slot per command
            self.calls.append(shards)
            if shards & self.away:
                out.append(ConnectionLost("the primary is away"))
            else:
                out.append(self.conn.roundtrip(payload, 1)[0])
        return out

    def close(self) -> None:
        self.conn.close()


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def add(r: redis.Redis, account_id: int) -> None:
    r.hset(keys.account(account_id), mapping={"fqdn": f"h{account_id}.{ZONE}", "zone": ZONE, "state": "neutral",
                                              "counter": "0", "hb_key": "ab" * 32, "plan": "p", "fp": "f"})  # fmt: skip


def beat(account_id: int, counter: int) -> BeatRequest:
    return BeatRequest(account_id, ZONE, 60_000, ipv4=f"203.0.113.{account_id % 200}", counter=counter)


@pytest.fixture
def r() -> redis.Redis:
    r = fakeredis.FakeRedis(decode_responses=True)
    for i in (1, 2, 17, 33):  # shards 1, 2, 1, 1
        add(r, i)
    return r


def now_ms(r: redis.Redis) -> int:
    sec, usec = r.time()
    return int(sec) * 1000 + int(usec) // 1000


def test_a_batch_runs_one_call_per_shard_in_order(r: redis.Redis) -> None:
    router = Router(r)
    writer = ClusterBeats(router, Liveness(r))
    t = now_ms(r)
    reqs = [beat(1, t), beat(2, t), beat(17, t), beat(1, t), beat(33, t + 1)]
    statuses = [(res.status, res.changed) for res in writer.beats(reqs)]
    assert statuses == [("ok", True), ("ok", True), ("ok", True), ("replay", False), ("ok", True)]
    assert router.calls == [{1}, {2}]  # each call one shard (one slot), shards in order of appearance
    assert r.zscore(keys.deadlines(1), keys.deadline_member(33, 4)) is not None
    assert r.hincrby(keys.serials(2), ZONE, 0) == 1  # the change counted in its shard's serials


def test_a_shard_whose_primary_is_away_is_held_while_the_others_go_on(r: redis.Redis) -> None:
    router, clock = Router(r), Clock()
    writer = ClusterBeats(router, Liveness(r), backoff=0.5, clock=clock)
    t = now_ms(r)
    router.away = {2}
    results = writer.beats([beat(1, t), beat(2, t)])
    assert results[0].status == "ok" and results[1] is UNAVAILABLE
    assert [req.account_id for req in writer.held.beats()] == [2]
    calls = len(router.calls)
    assert writer.beats([beat(2, t + 1)]) == [UNAVAILABLE]  # down for the backoff: not even tried
    assert len(router.calls) == calls and len(writer.held) == 1
    router.away = set()
    clock.now += 1.0
    assert writer.beats([beat(1, t + 2)])[0].status == "ok"
    assert (writer.reapplied, writer.rerecorded, len(writer.held)) == (1, 1, 0)  # its recovery, recorded now
    assert r.hget(keys.account(2), "counter") == str(t + 1)  # the newest held beat of the account


def test_a_batch_of_which_nothing_could_be_stored_raises_and_is_held(r: redis.Redis) -> None:
    router = Router(r)
    writer = ClusterBeats(router, Liveness(r))
    router.away = {1}
    with pytest.raises(StoreUnavailable):
        writer.submit([beat(1, now_ms(r)), beat(17, now_ms(r))])
    assert sorted(req.account_id for req in writer.held.beats()) == [1, 17]


def test_noscript_loads_the_script_on_that_node_and_runs_again(r: redis.Redis) -> None:
    writer = ClusterBeats(Router(r), Liveness(r))
    t = now_ms(r)
    writer.beats([beat(1, t)])
    r.script_flush()
    assert writer.beats([beat(1, t + 1), beat(2, t + 1)])[0].status == "ok"
    assert r.hget(keys.account(1), "counter") == str(t + 1)


def test_lookups_go_per_account_and_a_lost_reply_is_unavailable(r: redis.Redis) -> None:
    router = Router(r)
    lookup = ClusterAccounts(router, {"p": Plan(name="p", kind="heartbeat", interval=5, misses=3, ttl=5)})
    found = lookup([1, 2, 99])
    assert isinstance(found[1], AccountInfo) and found[1].zone == ZONE and 99 not in found
    assert router.calls == [{1}, {2}, {99 % keys.SHARDS}]
    router.away = {2}
    with pytest.raises(StoreUnavailable):
        lookup([1, 2])
