"""The sweeper on the sharded schema (issue 16), on a real redis-server: one sweep covers every
shard, each transition lands in its own shard's keys (stream, serial count, live count), every
script call touches one slot, two sweepers record a transition once, the trim and the metrics work
per shard and sum. Accounts are written straight into Redis (the state a beat leaves), so these
tests need nothing but the sweeper's side."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
import redis
from redis.crc import key_slot

from hbdns import config, keys, mass, scripts
from hbdns.event_trim import EventTrimmer, per_shard, stream_status
from hbdns.liveness import Liveness
from hbdns.mass import MassEvent
from sweeper.hints import HintSubscriber
from sweeper.main import SweeperService
from sweeper.mass_watch import MassWatch
from sweeper.metrics import liveness_counts
from sweeper.sweeper import Sweeper
from tests.support.servers import wait_for
from tests.support.services import env_for

ZONE = "example.test"
GROUP = "hbdns-notifier"


def _redis_ms(r: redis.Redis) -> int:
    sec, usec = r.time()
    return int(sec) * 1000 + int(usec) // 1000


def _live(r: redis.Redis, ids: Sequence[int], *, deadline_ms: int = 1, alive_ms: int = 0, plan: str = "") -> None:
    """Accounts recorded live over IPv4 with their deadline at ``deadline_ms``; an ``alive`` key for
    ``alive_ms`` (0: none, silent). The shards' live counts include them."""
    pipe = r.pipeline(transaction=False)
    for i in ids:
        pipe.hset(
            keys.account(i),
            mapping={
                "fqdn": f"a{i}.{ZONE}",
                "zone": ZONE,
                "plan": plan or "heartbeat-c",
                "state": "live",
                "live": "4",
                "ipv4": "203.0.113.1",
                "aliases": "[]",
            },
        )
        pipe.zadd(keys.deadlines(keys.shard_of(i)), {keys.deadline_member(i, 4): deadline_ms})
        pipe.hincrby(keys.stats(keys.shard_of(i)), "live", 1)
        if alive_ms:
            pipe.set(keys.alive(i, 4), "1", px=alive_ms)
    pipe.sadd(keys.accounts(), *ids)
    pipe.execute()


def _entries(r: redis.Redis, shard: int) -> list[dict[str, str]]:
    raw: Any = r.xrange(keys.events(shard))
    return [fields for _, fields in raw]


def _neutralized(r: redis.Redis) -> list[int]:
    return sorted(int(e["account"]) for s in keys.all_shards() for e in _entries(r, s) if e["type"] == "neutralized")


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[str, list[str]]]]:
    """Every script call's (name, KEYS), each checked to touch one Redis Cluster slot."""
    seen: list[tuple[str, list[str]]] = []
    real = scripts.Script.__call__

    def checked(self: scripts.Script, client: Any, keys_: Sequence[str] = (), args: Sequence[Any] = ()) -> Any:
        slots = {key_slot(k.encode()) for k in keys_}
        assert len(slots) <= 1, f"{self.name} spans slots: {list(keys_)}"
        seen.append((self.name, list(keys_)))
        return real(self, client, keys_, args)

    monkeypatch.setattr(scripts.Script, "__call__", checked)
    yield seen


# --- the sweep ---------------------------------------------------------------------------------


def test_one_step_sweeps_every_shard_into_each_shards_own_keys(
    real_redis: redis.Redis, calls: list[tuple[str, list[str]]]
) -> None:
    due = list(range(1, 49))  # three in each shard
    _live(real_redis, due)
    _live(real_redis, range(49, 65), deadline_ms=1, alive_ms=60_000)  # due, but beat meanwhile: alive
    sweeper = Sweeper(Liveness(real_redis))
    assert sweeper.step() == 48
    assert _neutralized(real_redis) == due
    for s in keys.all_shards():
        mine = [int(e["account"]) for e in _entries(real_redis, s)]
        assert sorted(mine) == [i for i in due if i % keys.SHARDS == s]
        assert real_redis.hget(keys.serials(s), ZONE) == "3"  # each transition counted in its shard
        assert real_redis.hget(keys.stats(s), "live") == "1"  # 4 live, 3 went
        assert real_redis.zcard(keys.deadlines(s)) == 1  # the alive one, moved to its key's expiry
    assert {name for name, _ in calls} == {"due", "neutralize"}
    assert sum(1 for name, _ in calls if name == "due") == keys.SHARDS  # one per shard, pipelined
    assert sweeper.step() == 0 and len(_neutralized(real_redis)) == 48  # recorded once


def test_rounds_take_a_batch_of_every_shard_so_a_backlog_starves_none(real_redis: redis.Redis) -> None:
    heavy = [keys.SHARDS * k for k in range(1, 11)]  # ten due in shard 0
    light = list(range(1, keys.SHARDS))  # one due in each other shard
    _live(real_redis, heavy + light)
    sweeper = Sweeper(Liveness(real_redis), batch=2, max_batches=1)
    assert sweeper.step() == 2 + len(light)  # one round: a batch of each shard
    assert set(light) <= set(_neutralized(real_redis))
    sweeper.max_batches = 100
    assert sweeper.step() == 8 and _neutralized(real_redis) == sorted(heavy + light)


def test_two_sweepers_at_once_record_each_transition_once(real_redis: redis.Redis, redis_url: str) -> None:
    ids = list(range(1, 321))
    _live(real_redis, ids)
    clients = [redis.Redis.from_url(redis_url, decode_responses=True) for _ in range(2)]
    sweepers = [Sweeper(Liveness(c), batch=7) for c in clients]
    counts: list[int] = []
    start = threading.Barrier(2)

    def run(s: Sweeper) -> None:
        start.wait()
        counts.append(s.step())

    threads = [threading.Thread(target=run, args=(s,)) for s in sweepers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sum(counts) == 320 and _neutralized(real_redis) == ids
    for c in clients:
        c.close()


def test_an_ingest_outage_holds_the_deadlines_of_its_shard_only(real_redis: redis.Redis) -> None:
    held, other = 5, 6  # shards 5 and 6
    now = _redis_ms(real_redis)
    _live(real_redis, [held, other], deadline_ms=now - 10)
    # shard 5's listeners stopped marking 10 s ago (an outage going on); shard 6's are untracked
    real_redis.hset(keys.ingest(keys.shard_of(held)), mapping={"mark": now - 10_000, "gap_ms": 2000})
    lv = Liveness(real_redis, windows={"heartbeat-c": 15_500})
    assert [n.account_id for n in lv.sweep()] == [other]
    assert lv.held == 1 and real_redis.hget(keys.account(held), "held4") == str(now - 10)
    assert (real_redis.zscore(keys.deadlines(keys.shard_of(held)), f"{held}:4") or 0) > now


def test_due_asks_the_shards_given(real_redis: redis.Redis) -> None:
    _live(real_redis, [1, 2, 17])
    lv = Liveness(real_redis)
    assert sorted(lv.due(shards=[1])) == [(1, 4), (17, 4)]
    assert lv.due(limit=1, shards=[1, 2]) in ([(1, 4), (2, 4)], [(17, 4), (2, 4)])
    real_redis.zadd(keys.deadlines(3), {"junk": 1})  # not ours: removed, not returned
    assert sorted(lv.due()) == [(1, 4), (2, 4), (17, 4)] and not real_redis.exists(keys.deadlines(3))


def test_a_hint_names_a_sharded_alive_key_and_neutralizes_it(real_redis: redis.Redis) -> None:
    hints = HintSubscriber(real_redis, Liveness(real_redis))
    try:
        assert hints.step(timeout=0.5) == 0 and hints.subscriptions == 1  # subscribed, caught up
        now = _redis_ms(real_redis)
        _live(real_redis, [21], deadline_ms=now + 100, alive_ms=100)
        done: list[int] = []

        def hinted() -> bool:
            done.append(hints.step(timeout=0.5))
            return sum(done) == 1

        wait_for(hinted, 10, what="neutralized by a hint")
        assert hints.subscriptions == 1  # no catch-up sweep since: the hint did it
        assert _entries(real_redis, keys.shard_of(21))[-1]["type"] == "neutralized"
    finally:
        hints.close()


# --- the events trim, per shard ----------------------------------------------------------------


def _add(r: redis.Redis, shard: int, n: int) -> None:
    pipe = r.pipeline(transaction=False)
    for _ in range(n):
        pipe.xadd(keys.events(shard), {"type": "ip_changed", "account": str(shard), "fqdn": "x", "at": "1"})
    pipe.execute()


def test_each_shards_stream_is_trimmed_below_what_its_groups_acknowledged(
    real_redis: redis.Redis, calls: list[tuple[str, list[str]]]
) -> None:
    for shard, n, read in ((2, 50, 30), (9, 40, 40)):
        real_redis.xgroup_create(keys.events(shard), GROUP, id="0", mkstream=True)
        _add(real_redis, shard, n)
        got: Any = real_redis.xreadgroup(GROUP, "c", {keys.events(shard): ">"}, count=read)
        real_redis.xack(keys.events(shard), GROUP, *[i for _, items in got for i, _ in items])
    _add(real_redis, 4, 25)  # no group yet: every entry kept
    res = EventTrimmer(real_redis, keep=5, cap=1000).step()
    assert (res.removed, res.capped, res.length) == (30 + 35, 0, 20 + 5 + 25)
    assert [real_redis.xlen(keys.events(s)) for s in (2, 9, 4)] == [20, 5, 25]
    assert real_redis.hget(keys.events_trim(2), "removed") == "30"
    assert real_redis.hget(keys.events_trim(9), "removed") == "35"
    assert sum(1 for name, _ in calls if name == "events_trim") == keys.SHARDS
    st = stream_status(real_redis)
    assert (st["length"], st["removed"]) == (50, 65)
    assert st["groups"] == [{"name": GROUP, "pending": 0, "lag": 20}]  # summed over the shards
    assert [(x["shard"], x["length"]) for x in st["shards"] if x["length"]] == [(2, 20), (4, 25), (9, 5)]


def test_the_hard_cap_holds_per_shard_and_counts_the_unread_there(real_redis: redis.Redis) -> None:
    for shard in (3, 11):
        real_redis.xgroup_create(keys.events(shard), GROUP, id="0", mkstream=True)
    _add(real_redis, 3, 30)
    _add(real_redis, 11, 8)
    res = EventTrimmer(real_redis, keep=2, cap=10).step()
    assert (res.capped, res.unread, res.length) == (20, 20, 18)  # shard 11 is below its cap
    assert real_redis.hget(keys.events_trim(3), f"unread:{GROUP}") == "20"
    assert not real_redis.exists(keys.events_trim(11))
    st = stream_status(real_redis)
    assert (st["capped"], st["unread"], st["unread_by_group"]) == (20, 20, {GROUP: 20})
    assert st["last_unread_ms"] > 0


def test_the_length_settings_are_for_all_shards_together(redis_url: str, real_redis: redis.Redis) -> None:
    assert (per_shard(100), per_shard(16), per_shard(1)) == (7, 1, 1)
    settings = config.load(env_for(redis_url, HBDNS_EVENTS_MAXLEN="1600", HBDNS_EVENTS_HARD_CAP="3200"))
    service = SweeperService(settings, r=real_redis)
    assert (service.trimmer.keep, service.trimmer.cap) == (100, 200)


# --- mass outages, metrics -----------------------------------------------------------------------


def test_a_mass_outage_over_every_shard_is_marked_once_in_the_mass_shard(
    real_redis: redis.Redis, redis_url: str, calls: list[tuple[str, list[str]]]
) -> None:
    settings = config.load(env_for(redis_url, HBDNS_MASS_MIN_ACCOUNTS="5", HBDNS_MASS_SHARE="0.5"))
    service = SweeperService(settings, r=real_redis)
    now = _redis_ms(real_redis)
    silent, fine = list(range(1, 33)), list(range(33, 41))
    _live(real_redis, silent + fine, deadline_ms=now + 60_000, plan="heartbeat-c")
    assert service.watch.census_step() == {mass.SYSTEM: 40, mass.zone_scope(ZONE): 40}
    census_at = int(real_redis.hget(keys.mass_census(), "@at") or 0)
    gone = wait_for(lambda: (t := _redis_ms(real_redis)) > census_at + 1 and t, 5, what="a ms after the census")
    for s in keys.all_shards():  # silent since the census, in every shard
        real_redis.zadd(keys.deadlines(s), {keys.deadline_member(i, 4): gone for i in silent if i % 16 == s})
    assert service.sweeper.step() == 32
    [started] = mass.load(real_redis).values()
    assert (started.scope, started.silent, started.of) == (mass.SYSTEM, 32, 40)
    stream = _entries(real_redis, keys.MASS_SHARD)
    assert [e["type"] for e in stream].count(mass.STARTED) == 1
    assert stream[0]["type"] == mass.STARTED  # before the shard's neutralized entries
    assert all(mass.STARTED not in [e["type"] for e in _entries(real_redis, s)] for s in range(1, keys.SHARDS))
    [(_, mark_keys)] = [c for c in calls if c[0] == "mass_mark"]
    assert mark_keys == [keys.mass_events(), keys.events(keys.MASS_SHARD)]


def test_mass_mark_is_once_per_event(real_redis: redis.Redis, redis_url: str) -> None:
    watch = MassWatch(real_redis, config.load(env_for(redis_url)), {})
    event = MassEvent(mass.SYSTEM, 1, 0, int(time.time() * 1000) + 60_000, 5, 10)
    assert watch._mark("start", event) and not watch._mark("start", event)
    assert [e["type"] for e in _entries(real_redis, keys.MASS_SHARD)] == [mass.STARTED]


def test_the_live_count_is_the_sum_over_shards_once_every_shard_has_one(real_redis: redis.Redis) -> None:
    now = _redis_ms(real_redis)
    for s in keys.all_shards():
        real_redis.hset(keys.stats(s), "live", 0)
    _live(real_redis, [1, 2, 3, 18], deadline_ms=now + 60_000)
    real_redis.sadd(keys.accounts(), 99)  # neutral
    real_redis.zadd(keys.deadlines(5), {"5:4": now - 3000})
    real_redis.zadd(keys.deadlines(7), {"7:6": now - 1000})
    c = liveness_counts(real_redis)
    assert (c["live"], c["neutral"], c["backlog"]) == (4, 1, 2)
    assert c["lag"] is not None and 2.5 < c["lag"] < 60
    real_redis.delete(keys.stats(15))  # one shard not counted yet: no sum
    assert liveness_counts(real_redis)["live"] is None
