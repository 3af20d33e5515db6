"""Failed-login limits of the real update API process (waitress, real scrypt, real redis-server), with
clients on distinct loopback source addresses: a wrong password behind a shared CGNAT/DS-Lite address
locks out nobody else, while password spraying from one address and brute force on one account from
many addresses are still refused (``abuse``, 429) before the password hash runs."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from hbdns import keys
from hbdns.model import Account, Zone
from hbdns.store import Store
from tests.support.servers import wait_for
from tests.support.update_api import UpdateApiServer, redis_snapshot, update

ZONE = "dyn.example.net"
PW = "right-password"
OK = ("good", "nochg")


def _accounts(store: Store, *names: str) -> list[Account]:
    store.add_zone(Zone(apex=ZONE, ns=("ns1.example.net",), hostmaster="hm.example.net", neutral_ipv4="192.0.2.1"))
    return [store.add_account(store.new_account(f"{n}.{ZONE}", "business-c", password=PW)) for n in names]


@pytest.fixture
def api_factory(redis_url: str, tmp_path: Path) -> Iterator[type[UpdateApiServer]]:
    started: list[UpdateApiServer] = []

    class Started(UpdateApiServer):
        def __init__(self, env: dict[str, str] | None = None) -> None:
            super().__init__(tmp_path / f"api{len(started)}", redis_url, env=env)
            started.append(self)
            self.start()

    yield Started
    for server in started:
        server.stop()


def _code(answer: tuple[int, str]) -> str:
    return answer[1].split(" ", 1)[0].strip()


def test_a_wrong_password_behind_a_shared_address_locks_out_nobody_else(
    store: Store, real_redis: redis.Redis, api_factory: type[UpdateApiServer]
) -> None:
    bad, alice, bob = _accounts(store, "bad", "alice", "bob")
    api = api_factory()  # the default limits
    shared = "127.0.0.2"  # one CGNAT address for all three customers
    stop = threading.Event()
    bad_answers: Counter[int] = Counter()

    def misconfigured_router() -> None:
        while not stop.is_set():
            status, _ = update(
                api, {"hostname": bad.fqdn, "myip": "203.0.114.2"}, (bad.fqdn, "old-password"), source=shared
            )
            bad_answers[status] += 1
            time.sleep(0.02)

    router = threading.Thread(target=misconfigured_router)
    router.start()
    try:
        answers = []
        for i in range(24):  # the whole run the router keeps failing
            account = (alice, bob)[i % 2]
            ip = f"203.0.114.{10 + (i // 4) % 2}"  # a change now and then: good, then nochg
            answers.append(
                _code(update(api, {"hostname": account.fqdn, "myip": ip}, (account.fqdn, PW), source=shared))
            )
            if i == 11:  # halfway: let the router run into its limit, then go on beside it
                wait_for(lambda: bad_answers[429] >= 3, 30, what="the router to be limited")
    finally:
        stop.set()
        router.join()
    assert set(answers) <= set(OK), answers  # its neighbours were never limited
    assert answers.count("good") >= 4 and answers.count("nochg") >= 4
    assert bad_answers[401] <= 10 + 4  # the pair's burst (+ at most one in flight per worker thread)
    assert bad_answers[429] > bad_answers[401]
    assert real_redis.hget(keys.account(bad.id), "ipv4") == ""
    assert (real_redis.hget(keys.account(alice.id), "ipv4"), real_redis.hget(keys.account(bob.id), "ipv4")) == (
        "203.0.114.11",
        "203.0.114.11",
    )


def test_password_spraying_from_one_address_is_stopped(
    store: Store, real_redis: redis.Redis, api_factory: type[UpdateApiServer]
) -> None:
    known, fresh, *others = _accounts(store, "known", "fresh", *(f"user{i}" for i in range(6)))
    api = api_factory({"HBDNS_UPDATE_AUTHFAIL_SOURCE_BURST": "12", "HBDNS_UPDATE_AUTHFAIL_SOURCE_RATE": "0.01"})
    sprayer = "127.0.0.3"
    # the "known" customer's router already updates from this (shared) address
    assert (
        _code(update(api, {"hostname": known.fqdn, "myip": "203.0.114.30"}, (known.fqdn, PW), source=sprayer)) == "good"
    )
    names = [a.fqdn for a in others] + [f"nobody{i}.{ZONE}" for i in range(10)]  # 1-2 guesses per name
    statuses = [update(api, {"hostname": n}, (n, "Summer2026!"), source=sprayer)[0] for n in names + names[:4]]
    assert statuses == [401] * 12 + [429] * 8  # the source's ceiling, though no account saw 2 failures
    before = redis_snapshot(real_redis)
    # an account never updated from here waits too (the price of a shared address); the known one does not
    assert update(api, {"hostname": fresh.fqdn, "myip": "203.0.114.31"}, (fresh.fqdn, PW), source=sprayer)[0] == 429
    assert redis_snapshot(real_redis) == before  # refused before the hash, and counted nowhere
    assert (
        _code(update(api, {"hostname": known.fqdn, "myip": "203.0.114.32"}, (known.fqdn, PW), source=sprayer)) == "good"
    )
    assert (
        _code(update(api, {"hostname": fresh.fqdn, "myip": "203.0.114.31"}, (fresh.fqdn, PW), source="127.0.0.4"))
        == "good"
    )


def test_brute_force_on_one_account_from_many_addresses_is_stopped(
    store: Store, real_redis: redis.Redis, api_factory: type[UpdateApiServer]
) -> None:
    victim, neighbour = _accounts(store, "victim", "neighbour")
    api = api_factory({"HBDNS_UPDATE_AUTHFAIL_ACCOUNT_BURST": "12", "HBDNS_UPDATE_AUTHFAIL_ACCOUNT_RATE": "0.01"})
    home = "127.0.0.5"
    assert (
        _code(update(api, {"hostname": victim.fqdn, "myip": "203.0.114.50"}, (victim.fqdn, PW), source=home)) == "good"
    )
    bots = [f"127.0.1.{i}" for i in range(1, 19)]  # one guess from each of 18 addresses
    statuses = [
        update(api, {"hostname": victim.fqdn}, (victim.fqdn, f"guess{i}"), source=b)[0] for i, b in enumerate(bots)
    ]
    assert statuses == [401] * 12 + [429] * 6  # the account's ceiling, though no address failed twice
    # the password from a new address waits; the victim's own router, and other accounts, do not
    assert (
        update(api, {"hostname": victim.fqdn, "myip": "203.0.114.51"}, (victim.fqdn, PW), source="127.0.2.1")[0] == 429
    )
    assert (
        _code(update(api, {"hostname": victim.fqdn, "myip": "203.0.114.52"}, (victim.fqdn, PW), source=home)) == "good"
    )
    assert (
        _code(update(api, {"hostname": neighbour.fqdn, "myip": "203.0.114.53"}, (neighbour.fqdn, PW), source=bots[-1]))
        == "good"
    )
    assert real_redis.hget(keys.account(victim.id), "ipv4") == "203.0.114.52"
