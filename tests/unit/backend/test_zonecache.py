"""Zone configuration may be cached up to 1 s; the account part of an answer never is."""

from __future__ import annotations

import fakeredis
import pytest
import redis

from hbdns import config, keys
from hbdns.liveness import BeatRequest
from hbdns.model import Zone
from hbdns.store import Store
from pdns_backend.backend import Backend, BackendError
from pdns_backend.zones import ZoneCache
from tests.support.clock import Clock


@pytest.fixture
def backend(store: Store, r: redis.Redis, settings: config.Settings, clock: Clock) -> Backend:
    return Backend(r, settings.plan_table(), zone_max_age=1.0, clock=clock)


def soa_serial(backend: Backend) -> int:
    result = backend.call("lookup", {"qname": "example.com.", "qtype": "SOA"})
    return int(result[0]["content"].split()[2])


def a_record(backend: Backend, name: str) -> str | None:
    result = backend.call("lookup", {"qname": name, "qtype": "A"})
    return result[0]["content"] if result else None


def test_zone_config_is_at_most_max_age_old(backend: Backend, store: Store, clock: Clock) -> None:
    first = soa_serial(backend)
    acct = store.add_account(store.new_account("host.example.com", "heartbeat-c"))  # bumps the serial
    assert store.zone_serial("example.com") > first
    clock.now += 0.5
    assert soa_serial(backend) == first  # cached
    clock.now += 0.5
    assert soa_serial(backend) == store.zone_serial("example.com")  # 1 s: reloaded
    assert acct


def test_account_answers_are_never_cached(backend: Backend, store: Store, clock: Clock) -> None:
    soa_serial(backend)  # cache loaded
    acct = store.add_account(store.new_account("host.example.com", "heartbeat-c"))
    assert a_record(backend, "host.example.com.") == "192.0.2.1"  # new name: seen at once
    store.liveness.beat(BeatRequest(acct.id, "example.com", 60_000, ipv4="203.0.113.5"))
    assert a_record(backend, "host.example.com.") == "203.0.113.5"  # live: at once
    store.liveness.beat(BeatRequest(acct.id, "example.com", 60_000, offline=True))
    assert a_record(backend, "host.example.com.") == "192.0.2.1"  # neutral: at once
    store.remove_account(acct.id)
    assert a_record(backend, "host.example.com.") is None
    assert clock.now == 1000.0  # all without the clock moving


def test_new_zone_is_served_within_max_age(backend: Backend, store: Store, clock: Clock) -> None:
    assert a_record(backend, "host.other.org.") is None
    store.add_zone(Zone(apex="other.org", ns=("ns1.other.org",), hostmaster="h.other.org", neutral_ipv4="192.0.2.9"))
    store.add_account(store.new_account("host.other.org", "heartbeat-c"))
    clock.now += 1.0
    assert a_record(backend, "host.other.org.") == "192.0.2.9"
    # getAllDomains always reads Redis (pdns' zone cache refresh) and refreshes this cache too
    store.add_zone(Zone(apex="third.net", ns=("ns1.third.net",), hostmaster="h.third.net", neutral_ipv4="192.0.2.3"))
    assert {d["zone"] for d in backend.call("getAllDomains", {})} == {"example.com.", "other.org.", "third.net."}
    assert backend.call("lookup", {"qname": "third.net.", "qtype": "SOA"})


def test_account_at_apex_is_asked_from_redis(backend: Backend, store: Store, clock: Clock) -> None:
    acct = store.add_account(store.new_account("example.com", "heartbeat-c"))
    clock.now += 1.0  # the cache learns that the apex name has an account
    store.liveness.beat(BeatRequest(acct.id, "example.com", 60_000, ipv4="203.0.113.8"))
    assert a_record(backend, "example.com.") == "203.0.113.8"


def test_redis_down_fails_account_lookups_at_once_and_apex_within_max_age(
    backend: Backend, store: Store, server: fakeredis.FakeServer, clock: Clock
) -> None:
    store.add_account(store.new_account("host.example.com", "heartbeat-c"))
    soa_serial(backend)
    server.connected = False
    with pytest.raises(BackendError):
        a_record(backend, "host.example.com.")
    soa_serial(backend)  # zone config still fresh enough
    clock.now += 1.0
    with pytest.raises(BackendError):
        soa_serial(backend)


def test_unchanged_zone_keeps_its_parsed_view() -> None:
    fields = ["1", '["ns1.example.net"]', "h.example.net", *[None] * 7, "192.0.2.1", "", "", "50"]
    flat: list[object] = ["example.com", fields, 0, ""]
    clock = Clock(1000.0)
    loads: list[int] = []

    def load() -> list[object]:
        loads.append(1)
        return flat

    cache = ZoneCache(load, 1.0, clock)
    view = cache.get()["example.com"].view
    assert cache.get()["example.com"].view is view and len(loads) == 1
    clock.now += 1.0
    assert cache.get()["example.com"].view is view and len(loads) == 2
    flat[1] = ["2", *fields[1:]]
    clock.now += 1.0
    entry = cache.get()["example.com"]
    assert entry.view is not view and entry.serial == 2


def test_a_zones_revision_moves_with_its_answers_but_not_with_its_serial(
    backend: Backend, store: Store, r: redis.Redis, clock: Clock
) -> None:
    """What the answer cache checks (pdns_backend/cached.py): answers below the apex outlive a serial
    bump, which every account change makes; any other change of the zone, or of the set of zones,
    ends them."""
    zones, apexes = backend.zones.snapshot()
    rev = zones["example.com"].rev
    store.add_account(store.new_account("host.example.com", "heartbeat-c"))  # serial and name index
    clock.now += 1
    zones, same_apexes = backend.zones.snapshot()
    assert zones["example.com"].rev == rev and same_apexes == apexes
    assert zones["example.com"].serial == store.zone_serial("example.com")
    r.hset(keys.zone("example.com"), "neutral_ipv4", "192.0.2.55")
    clock.now += 1
    zones, _ = backend.zones.snapshot()
    assert zones["example.com"].rev != rev
    store.add_zone(
        Zone(apex="sub.example.com", ns=("ns1.example.com",), hostmaster="h.example.com", neutral_ipv4="192.0.2.9")
    )
    clock.now += 1
    assert backend.zones.snapshot()[1] != apexes


def test_the_soa_serial_is_the_zone_serial_plus_every_shards_count(
    backend: Backend, store: Store, r: redis.Redis, clock: Clock
) -> None:
    base = int(r.hget(keys.zone("example.com"), "serial") or 0)
    assert soa_serial(backend) == base
    r.hincrby(keys.serials(0), "example.com", 2)
    r.hincrby(keys.serials(11), "example.com", 3)
    r.hincrby(keys.serials(11), "other.example", 100)  # another zone's count
    clock.now += 1
    assert soa_serial(backend) == base + 5
    assert [d["serial"] for d in backend.call("getAllDomains", {})] == [base + 5]
    assert backend.call("getDomainInfo", {"name": "example.com."})["serial"] == base + 5
    listed = backend.call("list", {"zonename": "example.com."})
    assert int(listed[0]["content"].split()[2]) == base + 5  # the SOA comes first
    assert backend.call("getDomainInfo", {"name": "other.example."}) is False  # counts alone: no zone
    r.hset(keys.serials(15), "example.com", str(2**32 - base - 5))  # wraps modulo 2**32
    clock.now += 1
    assert soa_serial(backend) == 0
