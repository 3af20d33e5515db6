"""The listener's Redis round trips on a real redis-server: the hand-encoded lookup and beat script
call agree with :class:`hbdns.liveness.Liveness`, survive a flushed script cache without losing a
beat, and enforce the config fingerprint behind the listener's account cache."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence

import pytest
import redis
from hbdns_client import wire

from hbdns import keys, scripts, zone_serial
from hbdns.connection import connect
from hbdns.liveness import OK, BeatRequest, BeatResult
from hbdns.model import Account, config_fingerprint
from hbdns.resp import BatchConnection, ConnectionLost, encode_command
from hbdns.store import Store
from heartbeat_listener.protocol import AccountInfo, StoreUnavailable, process_batch
from heartbeat_listener.redis_io import RedisAccounts, RedisBeats
from tests.support.listener import ZONE
from tests.support.servers import free_port, wait_for


def noscript_count(r: redis.Redis) -> int:
    """NOSCRIPT replies Redis has sent so far."""
    return int(r.info("errorstats").get("errorstat_NOSCRIPT", {}).get("count", 0))


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def test_lookup_reads_key_plan_zone_fingerprint(real_redis: redis.Redis, store: Store, account: Account) -> None:
    real_redis.hset(keys.account(900), mapping={"hb_key": "zz", "plan": "heartbeat-c", "zone": ZONE, "fqdn": "x"})
    real_redis.hset(keys.account(901), mapping={"hb_key": "00" * 32, "plan": "nope", "zone": ZONE, "fqdn": "y"})
    real_redis.set(keys.account(902), "not a hash")
    lookups = RedisAccounts(BatchConnection(real_redis), store.plans)
    got = lookups([account.id, 899, 900, 901, 902])
    assert got == {
        account.id: AccountInfo(
            account.hb_key,
            store.plans["heartbeat-c"].expiry_ms,
            ZONE,
            config_fingerprint(account.hb_key, "heartbeat-c", ZONE),
        ),
        900: "bad_account",
        901: "bad_account",
        902: "bad_account",
    }


def test_fast_writer_agrees_with_liveness(real_redis: redis.Redis, store: Store, account: Account) -> None:
    writer = RedisBeats(BatchConnection(real_redis), store.liveness)
    t = now_ms()
    reqs = [
        BeatRequest(account.id, ZONE, 15000, ipv4="203.0.113.7", counter=t),
        BeatRequest(account.id, ZONE, 15000, ipv4="203.0.113.7", counter=t),  # replay
        BeatRequest(account.id, ZONE, 15000, ipv4="203.0.113.8", counter=t + 1),  # moves
        BeatRequest(account.id, ZONE, 15000, ipv4="203.0.113.8", counter=t - 600_000),  # old
        BeatRequest(account.id, ZONE, 15000, ipv6="2001:db8::8", counter=t + 700_000),  # stale (future)
        BeatRequest(account.id, ZONE, 15000, counter=t + 2, offline=True),
        BeatRequest(99999, ZONE, 15000, ipv4="203.0.113.9", counter=t),
    ]
    results = writer.beats(reqs)
    assert [r.status for r in results] == ["ok", "replay", "ok", "replay", "stale", "offline", "gone"]
    assert [r.changed for r in results] == [True, False, True, False, False, True, False]
    assert results[2].old_ipv4 == "203.0.113.7" and results[2].names == (f"h.{ZONE}", f"mx.{ZONE}")
    st = store.status(account).state
    assert (st.ipv4, st.state, st.counter) == ("203.0.113.8", "neutral", t + 2)


def test_flushed_script_cache_costs_no_beat(real_redis: redis.Redis, store: Store, account: Account) -> None:
    """Both batches in flight were sent after SCRIPT FLUSH (Redis restarted, a replica promoted):
    both run once the script is loaded again, in the order they were sent."""
    writer = RedisBeats(BatchConnection(real_redis), store.liveness)
    t = now_ms()
    assert writer.beats([BeatRequest(account.id, ZONE, 15000, ipv4="203.0.113.7", counter=t)])[0].status == "ok"
    real_redis.script_flush()
    first = writer.submit([BeatRequest(account.id, ZONE, 15000, ipv4="203.0.113.8", counter=t + 1)])
    second = writer.submit([BeatRequest(account.id, ZONE, 15000, ipv4="203.0.113.9", counter=t + 2)])
    [a] = writer.collect(first)
    [b] = writer.collect(second)
    assert (a.status, a.changed, a.old_ipv4) == ("ok", True, "203.0.113.7")
    assert (b.status, b.changed, b.old_ipv4) == ("ok", True, "203.0.113.8")
    st = store.status(account).state
    assert (st.ipv4, st.counter) == ("203.0.113.9", t + 2)
    assert writer.beats([BeatRequest(account.id, ZONE, 15000, ipv4="203.0.113.9", counter=t + 3)]) == [OK]


def test_a_batch_that_ran_is_not_run_again(real_redis: redis.Redis, store: Store, account: Account) -> None:
    """The script came back (another process loaded it) between two batches in flight: only the
    batch that got NOSCRIPT runs again, after the one that ran; the counter makes it a replay."""
    writer = RedisBeats(BatchConnection(real_redis), store.liveness)
    t = now_ms()
    writer.beats([BeatRequest(account.id, ZONE, 15000, ipv4="203.0.113.7", counter=t)])
    real_redis.script_flush()
    noscripts = noscript_count(real_redis)
    first = writer.submit([BeatRequest(account.id, ZONE, 15000, ipv4="203.0.113.8", counter=t + 1)])
    wait_for(lambda: noscript_count(real_redis) > noscripts, 5, what="the first batch refused")
    real_redis.script_load(scripts.BEAT.source)
    second = writer.submit([BeatRequest(account.id, ZONE, 15000, ipv4="203.0.113.9", counter=t + 2)])
    assert writer.collect(first)[0].status == "replay"
    assert writer.collect(second)[0].status == "ok"
    assert (
        real_redis.xlen(keys.events(keys.shard_of(account.id))) == 4
    )  # created, recovered, and one ip_changed: .9, never .8
    st = store.status(account).state
    assert (st.ipv4, st.counter) == ("203.0.113.9", t + 2)


def test_script_flushed_right_after_connect_is_loaded_again(
    real_redis: redis.Redis, store: Store, account: Account
) -> None:
    writer = RedisBeats(BatchConnection(real_redis), store.liveness)
    writer.conn.on_connect.append(lambda c: real_redis.script_flush())  # runs after the writer's own load
    [res] = writer.beats([BeatRequest(account.id, ZONE, 15000, ipv4="203.0.113.7", counter=now_ms())])
    assert res.status == "ok" and store.status(account).live


def test_a_script_that_cannot_be_loaded_fails_its_batch_only(
    real_redis: redis.Redis, store: Store, account: Account
) -> None:
    writer = RedisBeats(BatchConnection(real_redis), store.liveness)
    writer.beats([BeatRequest(account.id, ZONE, 15000, ipv4="203.0.113.7", counter=now_ms())])
    real_redis.script_flush()
    broken = scripts.Script("beat", scripts.BEAT.source)
    broken.load_command = encode_command("PING")  # the reload does not bring it back
    writer.script = broken
    [res] = writer.beats([BeatRequest(account.id, ZONE, 15000, ipv4="203.0.113.8", counter=now_ms())])
    assert (res.status, res.accepted) == ("noscript", False)
    assert store.status(account).state.ipv4 == "203.0.113.7"
    writer.script = scripts.BEAT
    [res] = writer.beats([BeatRequest(account.id, ZONE, 15000, ipv4="203.0.113.8", counter=now_ms())])
    assert res.status == "ok" and store.status(account).state.ipv4 == "203.0.113.8"


def test_unreachable_redis_is_store_unavailable() -> None:
    dead = connect(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=0.5)
    conn = BatchConnection(dead)
    with pytest.raises(StoreUnavailable):
        RedisAccounts(conn, {})([1])
    with pytest.raises(ConnectionLost):  # the raw connection's own error; the stages turn it into StoreUnavailable
        conn.read(1)


def test_process_batch_on_redis(real_redis: redis.Redis, store: Store, account: Account) -> None:
    """The pure step with the real lookup and writer: the replay of a captured packet from another
    address changes nothing, an IPv6 beat sets only AAAA, an offline beat neutralizes."""
    lookups = RedisAccounts(BatchConnection(real_redis), store.plans)
    writer = RedisBeats(BatchConnection(real_redis), store.liveness)
    t = now_ms()
    captured = wire.encode_beat(account.id, t, account.hb_key, wire.FLAG_REPLY)
    d = process_batch([(captured, ("203.0.113.7", 1))], lookups, writer)
    assert d.counts == {"accepted": 1} and d.purge == (f"h.{ZONE}", f"mx.{ZONE}")
    before = real_redis.hgetall(keys.account(account.id))
    d = process_batch([(captured, ("198.51.100.66", 1))], lookups, writer)
    assert d.counts == {"replay": 1} and d.replies == () and d.purge == ()
    assert real_redis.hgetall(keys.account(account.id)) == before

    v6 = wire.encode_beat(account.id, t + 1, account.hb_key, 0)
    d = process_batch([(v6, ("2001:db8::5", 1, 0, 0))], lookups, writer)
    st = store.status(account).state
    assert (st.ipv4, st.ipv6) == ("203.0.113.7", "2001:db8::5")

    off = wire.encode_beat(account.id, t + 2, account.hb_key, wire.FLAG_OFFLINE | wire.FLAG_REPLY)
    d = process_batch([(off, ("203.0.113.7", 1))], lookups, writer)
    assert d.counts == {"offline": 1}
    assert wire.parse_reply(d.replies[0][0], off, account.hb_key).status == wire.STATUS_OFFLINE_OK
    assert store.status(account).state.state == "neutral" and not store.status(account).live


# --- the config fingerprint: the beat script's check behind the listener's account cache -----------


def beat_state(r: redis.Redis, account_id: int) -> tuple[object, ...]:
    """Everything a beat could change (the alive key by presence; its TTL only shrinks)."""
    return (
        r.hgetall(keys.account(account_id)),
        r.exists(keys.alive(account_id)),
        r.zscore(keys.deadlines(keys.shard_of(account_id)), keys.deadline_member(account_id, 4)),
        r.xlen(keys.events(keys.shard_of(account_id))),
        r.lrange(keys.account_log(account_id), 0, -1),
        zone_serial.read(r, ZONE),
    )


def stored_fp(r: redis.Redis, account: Account) -> str:
    fp = r.hget(keys.account(account.id), "fp")
    assert fp, "no fp field stored"
    return str(fp)


RunBeats = Callable[[Sequence[BeatRequest]], list[BeatResult]]


@pytest.fixture(params=["liveness", "raw"])
def run_beats(request: pytest.FixtureRequest, real_redis: redis.Redis, store: Store) -> RunBeats:
    """The beat script through redis-py (:meth:`Liveness.beats`) and through the listener's writer."""
    if request.param == "liveness":
        return store.liveness.beats
    return RedisBeats(BatchConnection(real_redis), store.liveness).beats


def test_stored_fingerprint_is_the_config_fingerprint(real_redis: redis.Redis, account: Account) -> None:
    assert stored_fp(real_redis, account) == config_fingerprint(account.hb_key, account.plan, account.zone)


def test_beat_with_another_fingerprint_is_refused_and_changes_nothing(
    real_redis: redis.Redis, store: Store, account: Account, run_beats: RunBeats
) -> None:
    fp = stored_fp(real_redis, account)
    t = now_ms()
    [first] = run_beats([BeatRequest(account.id, ZONE, 15000, ipv4="203.0.113.7", counter=t, fp=fp)])
    assert first.status == "ok" and first.changed
    before = beat_state(real_redis, account.id)
    pttl = real_redis.pttl(keys.alive(account.id))
    reqs = [
        BeatRequest(account.id, ZONE, 135000, ipv4="198.51.100.9", counter=t + 1, fp="0" * 16),  # would move
        BeatRequest(account.id, ZONE, 135000, ipv4="203.0.113.7", counter=t + 2, fp="0" * 16),  # would refresh
        BeatRequest(account.id, ZONE, 135000, counter=t + 3, offline=True, fp="0" * 16),  # would neutralize
    ]
    results = run_beats(reqs)
    assert [r.status for r in results] == ["rekey"] * 3
    assert not any(r.changed or r.accepted for r in results)
    assert beat_state(real_redis, account.id) == before
    st = store.status(account)
    assert (st.state.counter, st.state.ipv4, st.state.state) == (t, "203.0.113.7", "live")
    assert real_redis.pttl(keys.alive(account.id)) <= pttl  # not refreshed with the refused 135 s

    # the stored fingerprint is accepted (a live beat from the same address: the bare 'ok')
    [ok] = run_beats([BeatRequest(account.id, ZONE, 15000, ipv4="203.0.113.7", counter=t + 4, fp=fp)])
    assert (ok.status, ok.changed) == ("ok", False)
    assert store.status(account).state.counter == t + 4


def test_refused_beat_on_a_fresh_account_does_not_make_it_live(
    real_redis: redis.Redis, store: Store, account: Account, run_beats: RunBeats
) -> None:
    before = beat_state(real_redis, account.id)
    [res] = run_beats([BeatRequest(account.id, ZONE, 15000, ipv4="203.0.113.7", counter=now_ms(), fp="f" * 16)])
    assert res.status == "rekey"
    assert beat_state(real_redis, account.id) == before
    assert not store.status(account).live
    assert real_redis.zscore(keys.deadlines(keys.shard_of(account.id)), keys.deadline_member(account.id, 4)) is None


def test_empty_fingerprint_is_not_checked(
    real_redis: redis.Redis, store: Store, account: Account, run_beats: RunBeats
) -> None:
    [res] = run_beats([BeatRequest(account.id, ZONE, 15000, ipv4="203.0.113.7", counter=now_ms())])
    assert res.status == "ok" and store.status(account).live


def test_rotate_key_changes_the_fingerprint_and_the_old_one_is_refused(
    real_redis: redis.Redis, store: Store, account: Account, run_beats: RunBeats
) -> None:
    old_fp = stored_fp(real_redis, account)
    rotated = store.rotate_key(account)
    new_fp = stored_fp(real_redis, account)
    assert new_fp != old_fp
    assert new_fp == config_fingerprint(rotated.hb_key, rotated.plan, rotated.zone)
    t = now_ms()
    [res] = run_beats([BeatRequest(account.id, ZONE, 15000, ipv4="203.0.113.7", counter=t, fp=old_fp)])
    assert res.status == "rekey" and not store.status(account).live
    [res] = run_beats([BeatRequest(account.id, ZONE, 15000, ipv4="203.0.113.7", counter=t + 1, fp=new_fp)])
    assert res.status == "ok" and store.status(account).state.ipv4 == "203.0.113.7"


def test_plan_change_changes_the_fingerprint(real_redis: redis.Redis, store: Store, account: Account) -> None:
    old_fp = stored_fp(real_redis, account)
    saved = store.save_account(account, dataclasses.replace(account, plan="heartbeat-a"))
    new_fp = stored_fp(real_redis, account)
    assert new_fp != old_fp
    assert new_fp == config_fingerprint(account.hb_key, "heartbeat-a", ZONE)
    # a change that is not key, plan or zone keeps it (a cached entry stays good)
    store.save_account(saved, dataclasses.replace(saved, webhook="https://hooks.test/x"))
    assert stored_fp(real_redis, account) == new_fp


def test_lookup_after_rotation_reads_the_new_key_and_fingerprint(
    real_redis: redis.Redis, store: Store, account: Account
) -> None:
    lookups = RedisAccounts(BatchConnection(real_redis), store.plans)
    before = lookups([account.id])[account.id]
    rotated = store.rotate_key(account)
    after = lookups([account.id])[account.id]
    assert isinstance(before, AccountInfo) and isinstance(after, AccountInfo)
    assert (after.key, after.fp) == (rotated.hb_key, stored_fp(real_redis, account))
    assert after.fp != before.fp
