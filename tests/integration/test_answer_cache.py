"""The backend's answer cache on a real redis-server: Redis' client tracking keeps it true.

In-process :class:`Backend` with its cache (the transports' ``lookup_bodies``); the writes come
through the store, on other connections, as the writers' do. ``cmdstat_evalsha`` on the server
tells whether an answer came from the cache (no lookup script run) or from Redis.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from prometheus_client import generate_latest

from hbdns import config, keys
from hbdns.connection import connect
from hbdns.liveness import BeatRequest
from hbdns.model import Account
from hbdns.store import Store
from pdns_backend.app import backend_redis
from pdns_backend.backend import Backend
from tests.support.servers import RedisServer, wait_for
from tests.support.zones import APEX, EXAMPLE_ZONE

NAME = "host.example.com"


@pytest.fixture
def rs(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "redis", extra=["enable-debug-command local"]).start()
    yield server
    server.stop()


@pytest.fixture
def writer(rs: RedisServer) -> Iterator[redis.Redis]:
    r = connect(rs.url)
    yield r
    r.close()


@pytest.fixture
def store(writer: redis.Redis) -> Store:
    s = Store(writer, config.load({}))
    s.add_zone(EXAMPLE_ZONE)
    return s


@pytest.fixture
def account(store: Store) -> Account:
    acct = store.add_account(store.new_account(NAME, "heartbeat-c"))
    store.liveness.beat(BeatRequest(acct.id, APEX, 3_600_000, ipv4="203.0.113.1"))
    return acct


@pytest.fixture
def backend(rs: RedisServer) -> Iterator[Backend]:
    b = Backend(backend_redis(rs.url), config.load({}).plan_table(), cache_entries=1000)
    yield b
    assert b.tracker is not None
    b.tracker.close()


def a_records(b: Backend, name: str = NAME) -> set[str]:
    body = b.lookup_bodies([(name + ".", "ANY")])[0]
    assert isinstance(body, bytes), body
    result = json.loads(body)["result"]
    return {r["content"] for r in result or [] if r["qtype"] == "A"}


def scripts_run(r: redis.Redis) -> int:
    return int(r.info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0))


def cached(b: Backend, name: str = NAME) -> set[str]:
    """The answer, after making sure it is in the cache (the first read after a (re)connect is
    not kept: the connect dropped the cache while it was in flight)."""
    assert b.cache is not None
    wait_for(lambda: a_records(b, name) is not None and (name, "ANY") in b.cache, 5, what="cached")
    return a_records(b, name)


def test_a_repeated_lookup_is_answered_without_redis(backend: Backend, account: Account, writer: redis.Redis) -> None:
    assert cached(backend) == {"203.0.113.1"}
    before = scripts_run(writer)
    hits = backend.stats()["answer_cache"]["hits"]
    for _ in range(20):
        assert a_records(backend) == {"203.0.113.1"}
        assert backend.lookup_bodies([("HOST.example.com", "ANY")])[0] == backend.lookup_bodies([(NAME, "ANY")])[0]
    assert scripts_run(writer) == before
    assert backend.stats()["answer_cache"]["hits"] == hits + 60
    exported = generate_latest(backend.metrics.registry).decode()  # what /metrics shows
    assert f"hbdns_backend_answer_cache_hits_total {float(hits + 60)}" in exported
    assert 'hbdns_backend_lookups_total{result="live"}' in exported  # hits counted like the rest


def test_a_write_from_another_connection_is_seen_by_the_next_lookup(
    backend: Backend, store: Store, account: Account
) -> None:
    assert cached(backend) == {"203.0.113.1"}
    for n in range(2, 50):
        store.liveness.beat(BeatRequest(account.id, APEX, 3_600_000, ipv4=f"203.0.113.{n}"))
        assert a_records(backend) == {f"203.0.113.{n}"}  # no wait: the write's reply came first
    stats: dict[str, Any] = backend.stats()["answer_cache"]
    assert stats["invalidations"] >= 48
    store.remove_account(account.id)  # the name index changes: no answer at all now
    assert backend.lookup_bodies([(NAME, "ANY")])[0] == b'{"result":false}'


def test_a_cached_live_answer_turns_neutral_at_its_expiry_without_redis(
    backend: Backend, store: Store, writer: redis.Redis
) -> None:
    acct = store.add_account(store.new_account("brief.example.com", "heartbeat-c"))
    writer.execute_command("DEBUG", "SET-ACTIVE-EXPIRE", "0")  # no DEL, so no invalidation: only the deadline
    try:
        store.liveness.beat(BeatRequest(acct.id, APEX, 1_500, ipv4="203.0.113.99"))
        assert cached(backend, "brief.example.com") == {"203.0.113.99"}
        pttl = writer.pttl(keys.alive(acct.id))
        before = scripts_run(writer)
        t0 = time.monotonic()
        wait_for(lambda: a_records(backend, "brief.example.com") == {"192.0.2.1"}, 5, interval=0.005, what="neutral")
        assert time.monotonic() - t0 <= pttl / 1000 + 0.5  # at the deadline, not some time later
        assert scripts_run(writer) == before  # made from the cache, as Redis would have answered
        assert writer.exists(keys.alive(acct.id)) == 0  # which it does: the key is past its time
        assert backend.stats()["answer_cache"]["expiries"] == 1
    finally:
        writer.execute_command("DEBUG", "SET-ACTIVE-EXPIRE", "1")


def test_a_key_expired_by_redis_while_cached_drops_the_answer(backend: Backend, store: Store) -> None:
    acct = store.add_account(store.new_account("short.example.com", "heartbeat-c"))
    store.liveness.beat(BeatRequest(acct.id, APEX, 300, ipv4="203.0.113.98"))
    assert cached(backend, "short.example.com") == {"203.0.113.98"}
    wait_for(lambda: a_records(backend, "short.example.com") == {"192.0.2.1"}, 5, interval=0.01, what="neutral")


def invalidation_client(r: redis.Redis) -> dict[str, Any]:
    (client,) = [c for c in r.client_list() if c["name"] == "hbdns-backend-invalidations"]
    return client


def test_killing_the_invalidation_connection_drops_the_cache_before_the_next_answer(
    backend: Backend, store: Store, account: Account, writer: redis.Redis
) -> None:
    assert cached(backend) == {"203.0.113.1"}
    writer.client_kill_filter(_id=invalidation_client(writer)["id"])
    # this write's invalidation reaches nobody: the next answer must not come from the cache
    store.liveness.beat(BeatRequest(account.id, APEX, 3_600_000, ipv4="203.0.113.7"))
    assert a_records(backend) == {"203.0.113.7"}
    assert backend.stats()["answer_cache"]["tracking_connects"] == 2
    assert cached(backend) == {"203.0.113.7"}  # a new invalidation connection, caching again
    store.liveness.beat(BeatRequest(account.id, APEX, 3_600_000, ipv4="203.0.113.8"))
    assert a_records(backend) == {"203.0.113.8"}


def test_killing_a_reading_connection_leaves_answers_true(
    backend: Backend, store: Store, account: Account, writer: redis.Redis
) -> None:
    assert cached(backend) == {"203.0.113.1"}
    for c in writer.client_list():
        if c["name"] != "hbdns-backend-invalidations" and c["cmd"] == "evalsha":
            writer.client_kill_filter(_id=c["id"])
    store.liveness.beat(BeatRequest(account.id, APEX, 3_600_000, ipv4="203.0.113.9"))
    assert a_records(backend) == {"203.0.113.9"}


def test_a_flush_drops_everything(backend: Backend, account: Account, writer: redis.Redis) -> None:
    assert cached(backend) == {"203.0.113.1"}
    flushes = backend.stats()["answer_cache"]["flushes"]
    writer.flushall()
    # a flush's notice may leave Redis after its reply (measured on 7.0.15; key writes' never do)
    wait_for(lambda: backend.lookup_bodies([(NAME, "ANY")])[0] == b'{"result":false}', 5, what="no account")
    assert backend.stats()["answer_cache"]["flushes"] == flushes + 1


def test_a_redis_restart_drops_the_cache(tmp_path: Path) -> None:
    rs = RedisServer(tmp_path / "restart", persist=True).start()
    try:
        r = connect(rs.url)
        store = Store(r, config.load({}))
        store.add_zone(EXAMPLE_ZONE)
        acct = store.add_account(store.new_account(NAME, "heartbeat-c"))
        store.liveness.beat(BeatRequest(acct.id, APEX, 3_600_000, ipv4="203.0.113.1"))
        b = Backend(backend_redis(rs.url), config.load({}).plan_table(), cache_entries=1000, zone_max_age=0)
        assert cached(b) == {"203.0.113.1"}
        rs.stop()
        rs.start()  # from its append-only file; then a change this backend can only see by asking
        redis.Redis(port=rs.port).hset(keys.account(acct.id), "ipv4", "203.0.113.2")
        assert a_records(b) == {"203.0.113.2"}
        stats = b.stats()["answer_cache"]
        assert stats["flushes"] >= 2 and stats["tracking_connects"] == 2
        assert b.tracker is not None
        b.tracker.close()
    finally:
        rs.stop()


def test_each_address_family_turns_neutral_at_its_own_expiry(
    backend: Backend, store: Store, writer: redis.Redis
) -> None:
    acct = store.add_account(store.new_account("dual.example.com", "heartbeat-c"))
    writer.execute_command("DEBUG", "SET-ACTIVE-EXPIRE", "0")
    try:
        store.liveness.beat(BeatRequest(acct.id, APEX, 1_200, ipv4="203.0.113.44"))
        store.liveness.beat(BeatRequest(acct.id, APEX, 3_600_000, ipv6="2001:db8:44::1"))

        def addresses() -> set[str]:
            body = backend.lookup_bodies([("dual.example.com", "ANY")])[0]
            assert isinstance(body, bytes)
            return {r["content"] for r in json.loads(body)["result"] if r["qtype"] in ("A", "AAAA")}

        wait_for(
            lambda: (
                addresses() == {"203.0.113.44", "2001:db8:44::1"}
                and backend.cache is not None
                and ("dual.example.com", "ANY") in backend.cache
            ),
            5,
            what="cached, both live",
        )
        before = scripts_run(writer)
        wait_for(lambda: addresses() == {"192.0.2.1", "2001:db8:44::1"}, 5, interval=0.005, what="IPv4 neutral")
        assert scripts_run(writer) == before  # from the cache: IPv6 still live, IPv4 past its time
        assert backend.stats()["answer_cache"]["expiries"] == 1
    finally:
        writer.execute_command("DEBUG", "SET-ACTIVE-EXPIRE", "1")
