"""The DNS backend on a real Redis Cluster (3 primaries, 3 replicas on loopback): lookups split per
shard and batched per primary, the answer cache kept true by one invalidation connection per
primary, a slot moved under a running backend."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

# the cluster fixture comes with the cluster plumbing (branch sh-cluster): once merged, import it directly
import tests.support.cluster as _cluster
from hbdns import config, keys
from hbdns.connection import connect
from pdns_backend.app import backend_redis, lookup_router
from pdns_backend.backend import Backend
from tests.support.sharded_accounts import put_account
from tests.support.zones import APEX, EXAMPLE_ZONE

started_cluster, fresh_cluster = _cluster.started_cluster, _cluster.fresh_cluster

cluster = pytest.fixture(scope="module")(started_cluster)
fresh = pytest.fixture(fresh_cluster)

ACCOUNTS = 48  # three per shard


def address(i: int) -> str:
    return f"203.0.113.{i}"


@pytest.fixture
def zone(fresh: Any) -> Iterator[Any]:
    """The zone and :data:`ACCOUNTS` accounts over every shard, the odd ones live."""
    r: Any = connect(fresh.url)
    r.hset(keys.zone(APEX), mapping={**EXAMPLE_ZONE.to_hash(), "serial": "100"})
    r.sadd(keys.zones(), APEX)
    for i in range(1, ACCOUNTS + 1):
        put_account(r, i, f"h{i}.{APEX}", ipv4=address(i), live_ms=600_000 if i % 2 else None)
    yield r
    r.close()


def backend(c: Any, **kw: Any) -> Backend:
    client = backend_redis(c.url)
    return Backend(client, config.load({}).plan_table(), router=lookup_router(client, c.url), **kw)


def a_records(b: Backend, names: list[str]) -> list[str | None]:
    out: list[str | None] = []
    for body in b.lookup_bodies([(n + ".", "A") for n in names]):
        assert isinstance(body, bytes), body
        result = json.loads(body)["result"]
        out.append(result[0]["content"] if result else None)
    return out


def expected(i: int) -> str:
    return address(i) if i % 2 else EXAMPLE_ZONE.neutral_ipv4


def test_a_batch_over_every_shard_is_answered_on_a_cluster(fresh: Any, zone: Any) -> None:
    b = backend(fresh)
    names = [f"h{i}.{APEX}" for i in range(1, ACCOUNTS + 1)]
    for _ in range(2):  # first sight (discovery), then known ids
        assert a_records(b, [*names, f"nope.{APEX}"]) == [*(expected(i) for i in range(1, ACCOUNTS + 1)), None]
    assert len(b.accounts.connections()) == 3  # every primary read, one connection each
    # the SOA serial: the zone's own plus every shard's count, wherever their slots are
    zone.hincrby(keys.serials(3), APEX, 2)
    zone.hincrby(keys.serials(12), APEX, 5)
    assert b.call("getDomainInfo", {"name": APEX + "."})["serial"] == 107


def test_the_answer_cache_hears_of_writes_on_every_primary(fresh: Any, zone: Any) -> None:
    b = backend(fresh, cache_entries=1000)
    names = [f"h{i}.{APEX}" for i in range(1, ACCOUNTS + 1)]
    a_records(b, names)  # the first pass connects (and drops the cache)
    a_records(b, names)
    hits = b.stats()["answer_cache"]["hits"]
    assert a_records(b, names) == [expected(i) for i in range(1, ACCOUNTS + 1)]
    assert b.stats()["answer_cache"]["hits"] == hits + ACCOUNTS
    assert b.stats()["answer_cache"]["tracking_connects"] == 3  # one invalidation connection per primary
    for i in range(1, ACCOUNTS + 1, 2):  # a write on each shard, read at once (read-your-writes)
        zone.hset(keys.account(i), "ipv4", f"198.51.100.{i}")
        got = a_records(b, [f"h{i}.{APEX}"])
        assert got == [f"198.51.100.{i}"], (i, got)


def test_a_moved_slot_is_followed(fresh: Any, zone: Any) -> None:
    b = backend(fresh, cache_entries=1000)
    names = [f"h{i}.{APEX}" for i in range(1, ACCOUNTS + 1)]
    a_records(b, names)
    slot = fresh.keyslot(keys.shard_names(5))
    source = fresh.owner(slot)
    target = next(n for n in fresh.primaries() if n is not source)
    fresh.move_slot(slot, target)
    assert a_records(b, names) == [expected(i) for i in range(1, ACCOUNTS + 1)]
    zone.hset(keys.account(5), "ipv4", "198.51.100.55")  # now written on the new owner
    assert a_records(b, [f"h5.{APEX}"]) == ["198.51.100.55"]
