"""Liveness per address family on a real redis-server: beats over one family keep only that
family's record live, an update keeps the families it names, and the sweeper records a family lost
or back, ``neutralized`` only when none is left (issue 13: a client that kept beating over IPv6
kept its stale A record for good). DNS answers per family: tests/unit/backend/test_app.py and the
mail scenario (tests/e2e/test_mail_backup_mx.py)."""

from __future__ import annotations

import redis

from hbdns import keys
from hbdns.liveness import BeatRequest
from hbdns.model import Account, Zone
from hbdns.store import Store
from tests.support.servers import wait_for

ZONE = "fam.test"
SHORT = 400  # ms: a family not beaten again goes within a test


def account(store: Store) -> Account:
    store.add_zone(Zone(ZONE, ("ns1.fam.test",), "hostmaster.fam.test", "192.0.2.1"))
    return store.add_account(store.new_account(f"dual.{ZONE}", "heartbeat-c", mx=True))


def beat(store: Store, a: Account, ttl: int, source: str = "beat", **kw: str) -> None:
    assert store.liveness.beat(BeatRequest(a.id, ZONE, ttl, source=source, **kw)).accepted  # type: ignore[arg-type]


def events(r: redis.Redis, a: Account) -> list[tuple[str, str]]:
    """The account's liveness transitions (not ``created``, ``ip_changed``) with their family."""
    return [
        (f["type"], f.get("family", ""))
        for _, f in r.xrange(keys.events(keys.shard_of(a.id)))
        if f["account"] == str(a.id) and f["type"] not in ("created", "ip_changed")
    ]


def swept(store: Store, r: redis.Redis, a: Account, want: tuple[str, str]) -> bool:
    """One sweep (the sweeper's step, by hand); whether ``want`` is now the last event."""
    store.liveness.sweep()
    return events(r, a)[-1] == want


def test_the_ipv4_path_dies_while_ipv6_beats_go_on(store: Store, real_redis: redis.Redis) -> None:
    r = real_redis
    a = account(store)
    beat(store, a, SHORT, ipv4="203.0.113.5")
    beat(store, a, 60_000, ipv6="2001:db8::5")
    assert events(r, a)[-2:] == [("recovered", "4"), ("family_back", "6")]
    assert store.status(a).state.live == "46"
    wait_for(lambda: swept(store, r, a, ("family_lost", "4")), 5, interval=0.05, what="IPv4 lost")
    st = store.status(a)
    assert st.live and st.alive4_ms == 0 and st.alive6_ms > 0 and st.state.state == "live" and st.state.live == "6"
    assert store.liveness.sweep() == []  # recorded once
    beat(store, a, 60_000, ipv4="203.0.113.5")  # IPv4 is back
    assert events(r, a)[-1] == ("family_back", "4")
    log = store.account_log(a.id)[0]
    assert log["type"] == "family_back" and int(log["duration_ms"]) > 0 and log["first"] == "0"


def test_neutralized_only_when_no_family_is_left(store: Store, real_redis: redis.Redis) -> None:
    r = real_redis
    a = account(store)
    beat(store, a, SHORT, ipv4="203.0.113.5")
    beat(store, a, SHORT * 3, ipv6="2001:db8::5")
    wait_for(lambda: swept(store, r, a, ("family_lost", "4")), 5, interval=0.05, what="IPv4 lost")
    wait_for(lambda: swept(store, r, a, ("neutralized", "6")), 5, interval=0.05, what="IPv6 lost last")
    assert [e for e in events(r, a) if e[0] in ("neutralized", "family_lost")] == [
        ("family_lost", "4"),
        ("neutralized", "6"),
    ]
    assert store.status(a).state.state == "neutral"
    beat(store, a, 60_000, ipv6="2001:db8::5")
    assert events(r, a)[-1] == ("recovered", "6")  # the first family back


def test_an_update_naming_only_ipv4_lets_a_stale_aaaa_expire(store: Store, real_redis: redis.Redis) -> None:
    r = real_redis
    a = account(store)
    beat(store, a, SHORT, source="update", ipv4="203.0.113.5", ipv6="2001:db8::5")  # both named
    assert events(r, a)[0] == ("recovered", "4,6")
    for _ in range(3):  # the router's updates now name only its IPv4 address
        beat(store, a, 60_000, source="update", ipv4="203.0.113.5")
    wait_for(lambda: swept(store, r, a, ("family_lost", "6")), 5, interval=0.05, what="IPv6 lost")
    assert store.status(a).alive4_ms > 0 and store.status(a).alive6_ms == 0
    beat(store, a, 60_000, source="update", fams="46")  # myip=<v4>&myipv6=preserve names both
    assert events(r, a)[-1] == ("family_back", "6") and store.status(a).alive6_ms > 0


def test_an_offline_beat_neutralizes_every_family(store: Store, real_redis: redis.Redis) -> None:
    r = real_redis
    a = account(store)
    beat(store, a, 60_000, ipv4="203.0.113.5")
    beat(store, a, 60_000, ipv6="2001:db8::5")
    assert store.liveness.beat(BeatRequest(a.id, ZONE, 60_000, ipv6="2001:db8::5", offline=True)).changed
    assert events(r, a)[-1] == ("neutralized", "4,6")
    assert not r.exists(keys.alive(a.id, 4), keys.alive(a.id, 6))
    assert r.zrangebyscore(keys.deadlines(keys.shard_of(a.id)), "-inf", "+inf") == []
