"""Issue 14: junk spoofed from a customer's address costs the customer nothing (real listener, real Redis).

Each test starts a listener of its own: they remember unknown ids and account ids between batches,
and the ids of a flushed Redis are handed out again.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from hbdns_client import wire

from hbdns import config, keys
from hbdns.model import Account, Zone
from hbdns.store import Store
from sweeper.main import SweeperService
from tests.support import junk_flood
from tests.support.listener import ZONE, Listener, beat, now_ms, send
from tests.support.servers import RedisServer, wait_for

CUSTOMER = "127.0.0.50"  # the customer's public address, as its A record publishes it


@pytest.fixture
def listeners(redis_server: RedisServer, tmp_path: Path, real_redis: redis.Redis) -> Iterator[Callable[..., Listener]]:
    started: list[Listener] = []

    def start(**env: str) -> Listener:
        lst = Listener(tmp_path, redis_server.url, **env).start()
        started.append(lst)
        return lst

    yield start
    for lst in started:
        lst.stop()


@pytest.fixture
def zone(store: Store) -> str:
    store.add_zone(Zone(ZONE, ("ns1.test",), "hostmaster.test", "192.0.2.1"))
    return ZONE


def new_account(store: Store, name: str) -> Account:
    return store.add_account(store.new_account(f"{name}.{ZONE}", "heartbeat-c"))


def accepted(lst: Listener, account: Account, counter: int, source: str, wait: float = 3.0) -> bool:
    """Whether the beat was answered OK (a beat that is not accepted is not answered: ``wait`` less)."""
    data = beat(account.id, account.hb_key, counter)
    raw = send(data, lst.port, source, wait=wait)
    return raw is not None and wire.parse_reply(raw, data, account.hb_key).status == wire.STATUS_OK


def commands(r: redis.Redis, name: str) -> int:
    """Calls of a Redis command so far (scripts' calls included)."""
    return int(r.info("commandstats").get(f"cmdstat_{name}", {}).get("calls", 0))


def test_junk_flood_spoofed_from_a_customer_costs_it_no_beat(
    listeners: Callable[..., Listener],
    store: Store,
    zone: str,
    sweepers: Callable[..., SweeperService],
    redis_url: str,
) -> None:
    """10,000 datagrams/s for 30 s from the customer's address (a mix of 1-byte datagrams, wrong
    versions, forged MACs with its account id, unknown ids and replays of its own captured beats)
    while it beats every second and 20 neighbours behind the same address (a CGNAT) beat too."""
    customer = new_account(store, "customer")
    neighbours = tuple(new_account(store, f"n{i}") for i in range(20))
    gone = [new_account(store, f"gone{i}").id for i in range(10)]
    for account_id in gone:  # unknown ids below the id sequence: looked up, then remembered
        store.remove_account(account_id)
    lst = listeners(HBDNS_LOG_LEVEL="WARNING")
    sweepers(config.load({"HBDNS_REDIS_URL": redis_url}))
    assert accepted(lst, customer, now_ms(), CUSTOMER)

    f = junk_flood.run(lst, store, customer, CUSTOMER, seconds=30, deleted=tuple(gone), neighbours=neighbours)

    report = str(f)
    assert f.junk_sent >= 250_000, report  # the flood ran (10k/s, with margin for a loaded machine)
    assert f.beats >= 29 and f.dropped == 0, report  # every beat answered OK
    assert f.neighbours_behind == 0 and f.neutralized == 0, report
    assert f.accepted == f.beats + f.neighbour_beats, report  # and nothing else was accepted
    assert f.junk_replies == 0, report  # junk is never answered
    junk_counted = sum(n for reason, n in f.results.items() if reason != "accepted")
    assert junk_counted >= f.junk_sent - f.kernel_drops, report
    # the work junk causes: the listener's CPU, and next to nothing at Redis
    assert f.cpu_per_s < 0.5, report
    work = f.extra["listener_metrics"]
    assert work["lookups"] + work["refreshes"] < f.junk_sent / 1000, report
    assert work["known_replays"] == f.results["replay"], report  # no replay reached the beat script
    assert store.status(customer).live


def test_limits_count_authenticated_beats_only(listeners: Callable[..., Listener], store: Store, zone: str) -> None:
    lst = listeners(
        HBDNS_HEARTBEAT_SOURCE_RATE="0.01",
        HBDNS_HEARTBEAT_SOURCE_BURST="5",
        HBDNS_HEARTBEAT_ACCOUNT_RATE="0.01",
        HBDNS_HEARTBEAT_ACCOUNT_BURST="3",
    )
    rng = random.Random(14)
    a, b = new_account(store, "a"), new_account(store, "b")
    t = now_ms()
    # junk from a's address first: it charges nothing
    for _ in range(200):
        send(b"x", lst.port, "127.0.0.60")
        send(wire.encode_beat(a.id, t, bytes(32))[:14] + rng.randbytes(10), lst.port, "127.0.0.60")
    wait_for(lambda: lst.count("short") >= 200 and lst.count("bad_mac") >= 200, 10, what="junk counted")
    assert [accepted(lst, a, t + i, "127.0.0.60", wait=1.0) for i in range(4)] == [True, True, True, False]
    assert lst.count("account_rate_limited") == 1
    # a replayer of b's captured beat, 300 times from b's address: b's own next beats still pass
    captured = beat(b.id, b.hb_key, t)
    assert accepted(lst, b, t, "127.0.0.62")  # the original
    replays = lst.count("replay")
    for _ in range(300):
        send(captured, lst.port, "127.0.0.62")
    wait_for(lambda: lst.count("replay") >= replays + 300, 10, what="replays counted")
    assert [accepted(lst, b, t + i, "127.0.0.62") for i in (1, 2)] == [True, True]
    # per source: 5 authenticated beats of different accounts, then the limit
    others = [new_account(store, f"o{i}") for i in range(6)]
    assert [accepted(lst, o, t, "127.0.0.61", wait=1.0) for o in others] == [True] * 5 + [False]
    assert lst.count("rate_limited") == 1


def test_unknown_ids_cost_no_lookup_and_a_new_account_is_seen(
    listeners: Callable[..., Listener], store: Store, zone: str, real_redis: redis.Redis
) -> None:
    lst = listeners()
    customer = new_account(store, "customer")
    assert accepted(lst, customer, now_ms(), CUSTOMER)
    # an account created under the next id, which was just refused as unknown: seen at once
    next_id = int(real_redis.get(keys.account_seq()) or 0) + 1
    for _ in range(3):
        send(wire.encode_beat(next_id, now_ms(), bytes(32)), lst.port, CUSTOMER)
    wait_for(lambda: lst.count("unknown_account") >= 3, 10, what="next id refused")
    new = new_account(store, "new")
    assert new.id == next_id and accepted(lst, new, now_ms(), CUSTOMER)

    gone = new_account(store, "gone")
    store.remove_account(gone.id)
    rng = random.Random(14)
    unknown0, hmget0 = lst.count("unknown_account"), commands(real_redis, "hmget")
    for _ in range(300):  # ids above the sequence, and a removed account's below it
        send(wire.encode_beat(rng.randrange(10**6, 2**32), now_ms(), bytes(32)), lst.port, CUSTOMER)
        send(wire.encode_beat(gone.id, now_ms(), bytes(32)), lst.port, CUSTOMER)
    wait_for(lambda: lst.count("unknown_account") >= unknown0 + 600, 10, what="unknown ids counted")
    assert commands(real_redis, "hmget") - hmget0 <= 3  # the removed id, once per 2 s
    assert lst.metrics()["hbdns_heartbeat_above_ceiling_total"] >= 300
    # right after that flood of ids above the sequence, a new account is seen within 1 / 2 s
    after_flood = new_account(store, "after-flood")
    t0 = now_ms()
    wait_for(lambda: accepted(lst, after_flood, now_ms(), CUSTOMER, wait=0.3), 10, interval=0.05, what="accepted")
    assert now_ms() - t0 <= 500 + 1000

    # an account whose id was cached as unknown (its record was not written yet): seen within the ttl
    late = new_account(store, "late")
    real_redis.rename(keys.account(late.id), "parked")
    probe = new_account(store, "probe")  # once it is accepted, the listener's id ceiling is past late's id
    wait_for(lambda: accepted(lst, probe, now_ms(), CUSTOMER, wait=0.3), 10, interval=0.05, what="accepted")
    negative0 = lst.metrics()["hbdns_heartbeat_negative_hits_total"]
    assert not accepted(lst, late, now_ms(), CUSTOMER, wait=0.5)
    real_redis.rename("parked", keys.account(late.id))
    assert lst.metrics()["hbdns_heartbeat_negative_cache_entries"] >= 1
    t0 = now_ms()
    assert not accepted(lst, late, now_ms(), CUSTOMER, wait=0.3)  # still remembered as unknown
    assert lst.metrics()["hbdns_heartbeat_negative_hits_total"] == negative0 + 1
    wait_for(lambda: accepted(lst, late, now_ms(), CUSTOMER, wait=0.3), 10, interval=0.05, what="accepted")
    assert now_ms() - t0 <= 2000 + 1000  # HBDNS_HEARTBEAT_UNKNOWN_TTL (2 s)
