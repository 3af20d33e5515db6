"""The real listener's account cache against a real redis-server: a key rotated or a plan changed with
the store takes effect on the next beat, however warm the listener's cache is."""

from __future__ import annotations

import dataclasses

import redis
from hbdns_client import wire

from hbdns import keys
from hbdns.model import Account
from hbdns.store import Store
from tests.support.listener import ZONE, Listener, beat, now_ms, send, snapshot
from tests.support.servers import wait_for


def accept(lst: Listener, data: bytes, key: bytes, source: str) -> wire.Reply:
    """Send a beat that must be accepted; return its reply (verified with ``key``)."""
    raw = send(data, lst.port, source, wait=5)
    assert raw is not None, "no reply:\n" + lst.log()[-2000:]
    return wire.parse_reply(raw, data, key)


def refused(lst: Listener, data: bytes, source: str) -> None:
    """Send a beat that must be refused as bad_mac or key_changed, and wait until it is counted."""
    before = lst.count("bad_mac") + lst.count("key_changed")
    accepted = lst.count("accepted")
    assert send(data, lst.port, source, wait=0.5) is None  # a refused beat gets no reply
    wait_for(lambda: lst.count("bad_mac") + lst.count("key_changed") == before + 1, 10, what="refusal counted")
    assert lst.count("accepted") == accepted


def test_rotated_away_key_is_refused_with_a_warm_cache(
    listener: Listener, account: Account, store: Store, real_redis: redis.Redis
) -> None:
    t = now_ms()
    for i in range(3):  # the first fills the listener's cache, the others are served from it
        assert accept(listener, beat(account.id, account.hb_key, t + i), account.hb_key, "127.0.0.2").status == 0
    assert store.status(account).state.ipv4 == "127.0.0.2"

    rotated = store.rotate_key(account)
    assert rotated.hb_key != account.hb_key
    before = snapshot(real_redis, account.id, ZONE)
    refused(listener, beat(account.id, account.hb_key, t + 10), "127.0.0.3")  # the old key, newer counter
    assert snapshot(real_redis, account.id, ZONE) == before
    state = store.status(account).state
    assert (state.counter, state.ipv4) == (t + 2, "127.0.0.2")

    data = beat(account.id, rotated.hb_key, t + 11)
    assert accept(listener, data, rotated.hb_key, "127.0.0.4") == wire.Reply(wire.STATUS_OK, "127.0.0.4")
    state = store.status(account).state
    assert (state.counter, state.ipv4) == (t + 11, "127.0.0.4")

    # the new key is cached now; the old one stays refused
    before = snapshot(real_redis, account.id, ZONE)
    refused(listener, beat(account.id, account.hb_key, t + 20), "127.0.0.5")
    assert snapshot(real_redis, account.id, ZONE) == before
    assert accept(listener, beat(account.id, rotated.hb_key, t + 21), rotated.hb_key, "127.0.0.4").status == 0


def test_new_key_first_then_old_key_after_rotation(
    listener: Listener, account: Account, store: Store, real_redis: redis.Redis
) -> None:
    t = now_ms()
    accept(listener, beat(account.id, account.hb_key, t), account.hb_key, "127.0.0.2")
    rotated = store.rotate_key(account)
    # the cache still holds the old key: the new one fails with it, then passes with a fresh lookup
    reply = accept(listener, beat(account.id, rotated.hb_key, t + 1), rotated.hb_key, "127.0.0.3")
    assert reply == wire.Reply(wire.STATUS_OK, "127.0.0.3")
    before = snapshot(real_redis, account.id, ZONE)
    refused(listener, beat(account.id, account.hb_key, t + 2), "127.0.0.4")
    assert snapshot(real_redis, account.id, ZONE) == before
    state = store.status(account).state
    assert (state.counter, state.ipv4) == (t + 1, "127.0.0.3")


def test_plan_change_takes_effect_on_the_next_beat(
    listener: Listener, account: Account, store: Store, real_redis: redis.Redis
) -> None:
    old_expiry, new_expiry = store.plans["heartbeat-c"].expiry_ms, store.plans["heartbeat-a"].expiry_ms
    assert new_expiry > old_expiry
    t = now_ms()
    for i in range(2):  # cached with heartbeat-c's expiry
        accept(listener, beat(account.id, account.hb_key, t + i), account.hb_key, "127.0.0.2")
    assert 0 < real_redis.pttl(keys.alive(account.id)) <= old_expiry

    store.save_account(account, dataclasses.replace(account, plan="heartbeat-a"))
    reply = accept(listener, beat(account.id, account.hb_key, t + 2), account.hb_key, "127.0.0.2")
    assert reply == wire.Reply(wire.STATUS_OK, "127.0.0.2")
    assert old_expiry < real_redis.pttl(keys.alive(account.id)) <= new_expiry
    assert store.status(account).state.counter == t + 2
    deadline = real_redis.zscore(keys.deadlines(keys.shard_of(account.id)), keys.deadline_member(account.id, 4))
    assert deadline is not None and deadline > now_ms() + old_expiry

    # and back: the shorter expiry applies again at once
    store.save_account(dataclasses.replace(account, plan="heartbeat-a"), account)
    accept(listener, beat(account.id, account.hb_key, t + 3), account.hb_key, "127.0.0.2")
    assert 0 < real_redis.pttl(keys.alive(account.id)) <= old_expiry
