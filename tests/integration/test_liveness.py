"""The transition scripts on a real redis-server: exact expiry, replay checks, exactly-once sweeps."""

from __future__ import annotations

import json
import threading
import time

import redis

from hbdns import keys
from hbdns.liveness import BeatRequest, Liveness
from hbdns.model import Account, Zone
from hbdns.store import Store
from tests.support.servers import wait_for

ZONE = "dyn.example.net"


def _setup(store: Store, n: int = 1) -> list[Account]:
    store.add_zone(Zone(apex=ZONE, ns=("ns1.example.net",), hostmaster="hm.example.net", neutral_ipv4="192.0.2.1"))
    return [store.add_account(store.new_account(f"h{i}.{ZONE}", "heartbeat-c")) for i in range(n)]


def _now_ms() -> int:
    return int(time.time() * 1000)


def _events(r: redis.Redis, kind: str | None = None) -> list[dict[str, str]]:
    entries = [e for s in keys.all_shards() for e in r.xrange(keys.events(s))]
    out = [fields for _, fields in sorted(entries, key=lambda e: tuple(map(int, e[0].split("-"))))]
    return [e for e in out if kind is None or e["type"] == kind]


def test_first_beat_sets_address_and_goes_live(store: Store, real_redis: redis.Redis) -> None:
    (a,) = _setup(store)
    serial = store.zone_serial(ZONE)
    res = store.liveness.beat(BeatRequest(a.id, ZONE, 5000, ipv4="127.0.0.2", counter=_now_ms()))
    assert res.status == "ok" and res.changed and res.names == (a.fqdn,)
    st = store.status(a)
    assert st.live and st.state.state == "live" and st.state.ipv4 == "127.0.0.2"
    assert 0 < real_redis.pttl(keys.alive(a.id)) <= 5000
    assert store.zone_serial(ZONE) > serial
    kinds = [e["type"] for e in _events(real_redis)]
    assert kinds == ["created", "recovered", "ip_changed"]
    assert _events(real_redis, "recovered")[0]["first"] == "1"


def test_one_batch_across_shards_writes_each_account_in_its_own_shard(store: Store, real_redis: redis.Redis) -> None:
    accounts = _setup(store, keys.SHARDS + 2)  # every shard, two of them twice
    serial = store.zone_serial(ZONE)
    before = [int(real_redis.hget(keys.serials(s), ZONE) or 0) for s in keys.all_shards()]
    t = _now_ms()
    results = store.liveness.beats([BeatRequest(a.id, ZONE, 5000, ipv4="127.0.0.2", counter=t) for a in accounts])
    assert all(res.status == "ok" and res.changed for res in results)
    for a in accounts:
        shard = keys.shard_of(a.id)
        assert real_redis.zscore(keys.deadlines(shard), keys.deadline_member(a.id, 4)) is not None
        other = (shard + 1) % keys.SHARDS
        assert real_redis.zscore(keys.deadlines(other), keys.deadline_member(a.id, 4)) is None
        kinds = [f["type"] for _, f in real_redis.xrange(keys.events(shard)) if f["account"] == str(a.id)]
        assert kinds == ["created", "recovered", "ip_changed"]
    counts = [int(real_redis.hget(keys.serials(s), ZONE) or 0) - before[s] for s in keys.all_shards()]
    assert counts == [sum(1 for a in accounts if keys.shard_of(a.id) == s) for s in keys.all_shards()]
    assert store.zone_serial(ZONE) == serial + len(accounts)


def test_unchanged_beat_changes_nothing_but_the_deadline(store: Store, real_redis: redis.Redis) -> None:
    (a,) = _setup(store)
    c = _now_ms()
    store.liveness.beat(BeatRequest(a.id, ZONE, 5000, ipv4="127.0.0.2", counter=c))
    serial, n_events = store.zone_serial(ZONE), len(_events(real_redis))
    d1 = real_redis.zscore(keys.deadlines(keys.shard_of(a.id)), keys.deadline_member(a.id, 4))
    res = store.liveness.beat(BeatRequest(a.id, ZONE, 5000, ipv4="127.0.0.2", counter=c + 10))
    assert res.status == "ok" and not res.changed
    assert store.zone_serial(ZONE) == serial and len(_events(real_redis)) == n_events
    assert real_redis.zscore(keys.deadlines(keys.shard_of(a.id)), keys.deadline_member(a.id, 4)) >= d1


def test_replay_and_stale_beats_change_nothing(store: Store, real_redis: redis.Redis) -> None:
    (a,) = _setup(store)
    c = _now_ms()
    store.liveness.beat(BeatRequest(a.id, ZONE, 5000, ipv4="127.0.0.2", counter=c))
    before = real_redis.hgetall(keys.account(a.id)), len(_events(real_redis))
    for counter, expected in ((c, "replay"), (c - 1, "replay"), (c + 10 * 60_000, "stale")):
        res = store.liveness.beat(BeatRequest(a.id, ZONE, 5000, ipv4="127.0.0.9", counter=counter))
        assert res.status == expected and not res.accepted
    assert (real_redis.hgetall(keys.account(a.id)), len(_events(real_redis))) == before


def test_beat_for_removed_account_is_gone(store: Store, real_redis: redis.Redis) -> None:
    (a,) = _setup(store)
    store.remove_account(a.id)
    res = store.liveness.beat(BeatRequest(a.id, ZONE, 5000, ipv4="127.0.0.2", counter=_now_ms()))
    assert res.status == "gone"
    assert not real_redis.exists(keys.alive(a.id), keys.account(a.id))


def test_offline_beat_neutralizes_at_once(store: Store, real_redis: redis.Redis) -> None:
    (a,) = _setup(store)
    c = _now_ms()
    store.liveness.beat(BeatRequest(a.id, ZONE, 5000, ipv4="127.0.0.2", counter=c))
    res = store.liveness.beat(BeatRequest(a.id, ZONE, 5000, counter=c + 1, offline=True))
    assert res.status == "offline" and res.changed
    assert not real_redis.exists(keys.alive(a.id))
    assert real_redis.zscore(keys.deadlines(keys.shard_of(a.id)), keys.deadline_member(a.id, 4)) is None
    assert _events(real_redis, "neutralized")[0]["reason"] == "offline"
    assert store.status(a).state.ipv4 == "127.0.0.2"  # kept: comes back with the next beat


def test_sweep_records_each_expiry_once_at_its_deadline(store: Store, real_redis: redis.Redis) -> None:
    accounts = _setup(store, 3)
    for a in accounts:
        store.liveness.beat(BeatRequest(a.id, ZONE, 200, ipv4="127.0.0.2", counter=_now_ms()))
    deadlines = {
        a.id: int(real_redis.zscore(keys.deadlines(keys.shard_of(a.id)), keys.deadline_member(a.id, 4)))
        for a in accounts
    }
    wait_for(lambda: not any(real_redis.exists(keys.alive(a.id)) for a in accounts), 5, what="expiry")
    swept = store.liveness.sweep()
    assert sorted(n.account_id for n in swept) == sorted(deadlines)
    assert store.liveness.sweep() == []
    neutral = _events(real_redis, "neutralized")
    assert len(neutral) == 3
    for e in neutral:
        assert int(e["at"]) == deadlines[int(e["account"])]
        assert int(e["swept_at"]) >= int(e["at"])


def test_two_sweepers_record_each_transition_once(store: Store, real_redis: redis.Redis, settings) -> None:
    accounts = _setup(store, 40)
    for a in accounts:
        store.liveness.beat(BeatRequest(a.id, ZONE, 100, ipv4="127.0.0.2", counter=_now_ms()))
    wait_for(lambda: len(store.liveness.due()) == 40, 5, what="all due")
    results: list[int] = []
    lock = threading.Lock()

    def sweeper() -> None:
        mine = Liveness(redis.Redis(connection_pool=real_redis.connection_pool))
        for _ in range(20):
            got = mine.sweep(limit=7)
            with lock:
                results.extend(n.account_id for n in got)

    threads = [threading.Thread(target=sweeper) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == sorted(a.id for a in accounts)
    assert len(_events(real_redis, "neutralized")) == 40


def test_beat_after_unswept_expiry_records_the_outage(store: Store, real_redis: redis.Redis) -> None:
    (a,) = _setup(store)
    store.liveness.beat(BeatRequest(a.id, ZONE, 100, ipv4="127.0.0.2", counter=_now_ms()))
    deadline = int(real_redis.zscore(keys.deadlines(keys.shard_of(a.id)), keys.deadline_member(a.id, 4)))
    wait_for(lambda: not real_redis.exists(keys.alive(a.id)), 5, what="expiry")
    store.liveness.beat(BeatRequest(a.id, ZONE, 5000, ipv4="127.0.0.2", counter=_now_ms()))
    kinds = [e["type"] for e in _events(real_redis)][-2:]
    assert kinds == ["neutralized", "recovered"]
    assert int(_events(real_redis, "neutralized")[0]["at"]) == deadline
    rec = _events(real_redis, "recovered")[-1]
    assert rec["first"] == "0" and int(rec["neutral_since"]) == deadline
    assert int(rec["duration_ms"]) == int(rec["at"]) - deadline
    assert store.liveness.sweep() == []  # nothing left to record


def test_account_log_is_capped_newest_first(real_redis: redis.Redis, settings) -> None:
    store = Store(real_redis, settings)
    store.liveness.log_size = 5
    (a,) = _setup(store)
    c = _now_ms()
    for i in range(10):
        store.liveness.beat(BeatRequest(a.id, ZONE, 5000, ipv4=f"127.0.0.{i + 2}", counter=c + i))
    log = store.account_log(a.id)
    assert len(log) == 5
    assert log[0]["type"] == "ip_changed" and log[0]["new"] == "127.0.0.11"


def test_bulk_add_matches_add(store: Store, real_redis: redis.Redis) -> None:
    (single,) = _setup(store)
    bulk = store.bulk_add_accounts([store.new_account(f"b{i}.{ZONE}", "heartbeat-c") for i in range(5)])
    assert [a.id for a in bulk] == list(range(single.id + 1, single.id + 6))
    fields_single = set(real_redis.hgetall(keys.account(single.id)))
    for a in bulk:
        assert store.get_account(a.id) == a
        assert set(real_redis.hgetall(keys.account(a.id))) == fields_single
        assert store.account_id_for(a.fqdn) == a.id
    assert len(_events(real_redis, "created")) == 6
    import pytest

    from hbdns.store import StoreError

    with pytest.raises(StoreError, match="taken"):
        store.bulk_add_accounts([store.new_account(f"b0.{ZONE}", "heartbeat-c")])


def test_mixed_sources_in_one_call_keep_their_own_source_log_and_serial(store: Store, real_redis: redis.Redis) -> None:
    """The script takes one source per call and builds log and zone keys itself: a mixed batch is
    split, and each transition lands in its own account's log with its own source, bumping the serial."""
    a, b, c = _setup(store, 3)
    serial = store.zone_serial(ZONE)
    now = _now_ms()
    results = store.liveness.beats(
        [
            BeatRequest(a.id, ZONE, 5000, ipv4="127.0.0.2", counter=now),
            BeatRequest(b.id, ZONE, 5000, ipv4="127.0.0.3", source="update"),
            BeatRequest(c.id, ZONE, 5000, ipv4="127.0.0.4", counter=now),
        ]
    )
    assert [r.status for r in results] == ["ok", "ok", "ok"] and all(r.changed for r in results)
    sources = {(e["account"], e["type"]): e["source"] for e in _events(real_redis) if "source" in e}
    assert sources[(str(a.id), "ip_changed")] == "beat"
    assert sources[(str(b.id), "ip_changed")] == "update"
    assert sources[(str(c.id), "recovered")] == "beat"
    for acct in (a, b, c):
        logged = [json.loads(x)["type"] for x in real_redis.lrange(keys.account_log(acct.id), 0, -1)]
        assert logged[:2] == ["ip_changed", "recovered"]
    assert store.zone_serial(ZONE) > serial
