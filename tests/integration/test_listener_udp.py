"""The real listener process on loopback UDP with a real redis-server (issue 4's integration list)."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis
from hbdns_client import wire

from hbdns import config, keys
from hbdns.connection import connect
from hbdns.model import Account, Zone
from hbdns.store import Store
from tests.support.listener import ZONE, Listener, beat, now_ms, send, snapshot
from tests.support.servers import RedisServer, wait_for


def accept(lst: Listener, data: bytes, source: str = "127.0.0.1") -> wire.Reply:
    """Send a beat that must be accepted and return its (verified) reply."""
    key = lst._key  # type: ignore[attr-defined]
    raw = send(data, lst.port, source, wait=5)
    assert raw is not None, "no reply:\n" + lst.log()[-2000:]
    return wire.parse_reply(raw, data, key)


@pytest.fixture
def lst(listener: Listener, account: Account) -> Listener:
    listener._key = account.hb_key  # type: ignore[attr-defined]
    return listener


def test_first_beat_sets_a_and_answers_with_the_public_address(
    lst: Listener, account: Account, store: Store, real_redis: redis.Redis
) -> None:
    serial = store.zone_serial(ZONE)
    reply = accept(lst, beat(account.id, account.hb_key, now_ms()))
    assert reply == wire.Reply(wire.STATUS_OK, "127.0.0.1")
    status = store.status(account)
    assert status.live and status.state.ipv4 == "127.0.0.1" and status.state.state == "live"
    assert 0 < status.alive_ms <= 15500  # heartbeat-c: 3 x 5 s + 0.5 s grace
    assert real_redis.zscore(keys.deadlines(keys.shard_of(account.id)), keys.deadline_member(account.id, 4)) is not None
    assert store.zone_serial(ZONE) > serial
    kinds = [e["type"] for e in store.account_log(account.id)]
    assert kinds[:2] == ["ip_changed", "recovered"]


def test_beats_from_other_addresses_move_the_address(lst: Listener, account: Account, store: Store) -> None:
    t = now_ms()
    assert accept(lst, beat(account.id, account.hb_key, t), "127.0.0.2").address == "127.0.0.2"
    assert store.status(account).state.ipv4 == "127.0.0.2"
    serial = store.zone_serial(ZONE)
    assert accept(lst, beat(account.id, account.hb_key, t + 1), "127.0.0.3").address == "127.0.0.3"
    assert store.status(account).state.ipv4 == "127.0.0.3"
    assert store.zone_serial(ZONE) > serial
    moved = store.account_log(account.id)[0]
    assert (moved["type"], moved["old"], moved["new"]) == ("ip_changed", "127.0.0.2", "127.0.0.3")


def test_replayed_capture_from_another_address_changes_nothing(
    lst: Listener, account: Account, real_redis: redis.Redis
) -> None:
    captured = beat(account.id, account.hb_key, now_ms())
    accept(lst, captured, "127.0.0.2")
    before, replays = snapshot(real_redis, account.id, ZONE), lst.count("replay")
    assert send(captured, lst.port, "127.0.0.3", wait=0.3) is None  # no answer to a replay
    wait_for(lambda: lst.count("replay") == replays + 1, 10, what="replay counted")
    assert snapshot(real_redis, account.id, ZONE) == before
    assert real_redis.hget(keys.account(account.id), "ipv4") == "127.0.0.2"


BAD_INPUTS = {
    "short": lambda a, t: b"\x01\x02\x03",
    "long": lambda a, t: beat(a.id, a.hb_key, t + 5) + b"\x00",
    "version": lambda a, t: b"GET / HTTP/1.0\r\n\r\n\x00\x00\x00\x00\x00\x00",  # garbage of beat length
    "flags": lambda a, t: (
        wire.encode_beat(a.id, t + 5, a.hb_key)[:1] + b"\x40" + wire.encode_beat(a.id, t + 5, a.hb_key)[2:]
    ),
    "unknown_account": lambda a, t: beat(a.id + 1000, a.hb_key, t + 5),
    "bad_mac": lambda a, t: beat(a.id, bytes(32), t + 5),
    "replay": lambda a, t: beat(a.id, a.hb_key, t),  # the accepted beat again
    "replay/rollback": lambda a, t: beat(a.id, a.hb_key, t - 1000),  # counter rolled back
    "stale": lambda a, t: beat(a.id, a.hb_key, t + 10 * 60 * 1000),  # clock 10 min ahead
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_changes_nothing_and_is_counted(
    lst: Listener, account: Account, real_redis: redis.Redis, case: str
) -> None:
    reason = case.split("/")[0]
    t = now_ms()
    accept(lst, beat(account.id, account.hb_key, t))
    before, count = snapshot(real_redis, account.id, ZONE), lst.count(reason)
    data = BAD_INPUTS[case](account, t)
    answer = send(data, lst.port, "127.0.0.4", wait=0.5 if reason == "stale" else 0.0)
    wait_for(lambda: lst.count(reason) == count + 1, 10, what=f"{reason} counted")
    assert snapshot(real_redis, account.id, ZONE) == before
    if reason == "stale":  # authentic but off-clock: the client is told why, nothing else
        assert answer is not None and wire.parse_reply(answer, data, account.hb_key).status == wire.STATUS_CLOCK_SKEW
    assert lst.process is not None and lst.process.alive()


def test_offline_flag_neutralizes(lst: Listener, account: Account, store: Store) -> None:
    t = now_ms()
    accept(lst, beat(account.id, account.hb_key, t))
    assert store.status(account).live
    reply = accept(lst, beat(account.id, account.hb_key, t + 1, wire.FLAG_OFFLINE | wire.FLAG_REPLY))
    assert reply.status == wire.STATUS_OFFLINE_OK
    status = store.status(account)
    assert not status.live and status.state.state == "neutral"
    event = store.account_log(account.id)[0]
    assert (event["type"], event["reason"]) == ("neutralized", "offline")


def test_ipv6_beat_sets_aaaa_only(lst: Listener, account: Account, store: Store) -> None:
    t = now_ms()
    accept(lst, beat(account.id, account.hb_key, t), "127.0.0.2")
    assert accept(lst, beat(account.id, account.hb_key, t + 1), "::1") == wire.Reply(wire.STATUS_OK, "::1")
    state = store.status(account).state
    assert (state.ipv4, state.ipv6) == ("127.0.0.2", "::1")


def test_junk_from_a_source_is_counted_and_never_limits_its_beats(lst: Listener, account: Account) -> None:
    """Issue 14: 400 one-byte datagrams from the customer's own address used to use up its limit."""
    limited, shorts = lst.count("rate_limited"), lst.count("short")
    for _ in range(400):
        send(b"x", lst.port, "127.0.0.9")
    wait_for(lambda: lst.count("short") >= shorts + 400, 10, what="junk counted")
    assert accept(lst, beat(account.id, account.hb_key, now_ms()), "127.0.0.9").status == wire.STATUS_OK
    assert lst.count("rate_limited") == limited


def test_metrics_page_is_prometheus_text(lst: Listener, account: Account) -> None:
    m = lst.metrics()
    for reason in ("accepted", "short", "long", "version", "flags", "unknown_account", "bad_mac", "replay", "stale"):
        assert f'hbdns_heartbeat_packets_total{{result="{reason}"}}' in m
    assert m["hbdns_heartbeat_redis_up"] == 1
    assert "hbdns_heartbeat_kernel_drops_total" in m
    assert account.hb_key.hex() not in lst.log()  # keys are never logged


def test_two_listeners_on_one_port_accept_each_beat_once(
    listener: Listener, store: Store, redis_server: RedisServer, tmp_path: Path
) -> None:
    store.add_zone(Zone(ZONE, ("ns1.test",), "hostmaster.test", "192.0.2.1"))
    accounts = [store.add_account(store.new_account(f"n{i}.{ZONE}", "heartbeat-c")) for i in range(40)]
    second = Listener(tmp_path, redis_server.url, port=listener.port).start()
    try:
        procs = (listener, second)
        before = [(p.count("accepted"), p.count("replay")) for p in procs]
        t = now_ms()
        for a in accounts:  # each beat twice, from two sockets: the kernel spreads them over both
            data = beat(a.id, a.hb_key, t, flags=0)
            send(data, listener.port)
            send(data, listener.port)

        def totals() -> tuple[int, int]:
            now = [(p.count("accepted"), p.count("replay")) for p in procs]
            return (
                sum(n[0] - b[0] for n, b in zip(now, before, strict=True)),
                sum(n[1] - b[1] for n, b in zip(now, before, strict=True)),
            )

        wait_for(lambda: sum(totals()) == 80, 15, what="80 beats handled")
        assert totals() == (40, 40)
        got = [(p.count("accepted") + p.count("replay")) - sum(b) for p, b in zip(procs, before, strict=True)]
        assert all(n > 0 for n in got), f"SO_REUSEPORT did not spread the beats: {got}"
        assert all(store.status(a).state.counter == t for a in accounts)
    finally:
        second.stop()


def test_redis_down_keeps_receiving_then_recovers(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "redis").start()
    lst = Listener(tmp_path, server.url).start()
    try:
        store = Store(connect(server.url), config.load({}))
        store.add_zone(Zone(ZONE, ("ns1.test",), "hostmaster.test", "192.0.2.1"))
        acct = store.add_account(store.new_account(f"h.{ZONE}", "heartbeat-c"))
        lst._key = acct.hb_key  # type: ignore[attr-defined]
        accept(lst, beat(acct.id, acct.hb_key, now_ms()))
        server.stop()
        t = now_ms()
        for i in range(5):  # distinct counters: copies of one beat are replays, known without Redis
            send(beat(acct.id, acct.hb_key, t + 1 + i), lst.port)
        wait_for(lambda: lst.count("redis_down") >= 5, 15, what="beats counted as redis_down")
        assert lst.metrics()["hbdns_heartbeat_redis_up"] == 0
        assert lst.process is not None and lst.process.alive()

        server.start()  # no persistence: the data is gone, so set it up again
        store = Store(connect(server.url), config.load({}))
        store.add_zone(Zone(ZONE, ("ns1.test",), "hostmaster.test", "192.0.2.1"))
        acct2 = store.add_account(store.new_account(f"h.{ZONE}", "heartbeat-c"))

        def beat_accepted() -> bool:
            data = beat(acct2.id, acct2.hb_key, now_ms())
            raw = send(data, lst.port, wait=0.3)
            return raw is not None and wire.parse_reply(raw, data, acct2.hb_key).status == wire.STATUS_OK

        wait_for(beat_accepted, 20, interval=0.2, what="listener back on redis")
        assert store.status(acct2).live
        assert "redis failed" in lst.log()
    finally:
        lst.stop()
        server.stop()
