"""What a customer's resolver sees: a real pdns-recursor (forward zone to the test pdns, local root
hints, a negative trust anchor for the unsigned zone) in front of pdns and the backend, with
writes made as the CLI, the admin API and the update API make them (purging pdns).

Negative answers are cached by the recursor for the zone's negative TTL, positive ones for the
record TTL: the bounds asserted here are those, plus a margin for a loaded machine."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dns.message
import dns.rcode
import dns.rdatatype
import pytest
import redis

from hbdns import config, provision
from hbdns.connection import connect
from hbdns.liveness import BeatRequest
from hbdns.provision_zones import ZoneChanges, create_zone
from hbdns.purge import Purger
from hbdns.store import Store
from tests.support.pdns import PdnsServer, answer_texts, started_pdns, stop_all
from tests.support.recursor import Recursor
from tests.support.servers import RedisServer, wait_for
from tests.support.update_api import UpdateApiServer

ZONE = "dyn.resolve.test"
NEG_TTL = 3  # the zone's negative TTL: short, so the bounds below are quick to check
MARGIN = 3.0
HOME_IP = "203.0.114.7"  # public unicast next to the documentation range, never contacted
IID = "::1a2b:3c4d:5e6f:7081"


@dataclass
class World:
    r: redis.Redis
    store: Store
    pdns: PdnsServer
    recursor: Recursor
    api: UpdateApiServer
    lan_password: str

    def resolve(self, qname: str, rdtype: str) -> dns.message.Message:
        return self.recursor.query(qname, rdtype)

    def answers(self, qname: str, rdtype: str) -> set[str]:
        return answer_texts(self.resolve(qname, rdtype), qname, rdtype)


@pytest.fixture(scope="module")
def world(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    work = Path(tmp_path_factory.mktemp("resolver"))
    r = connect(redis_server.url)
    r.flushall()
    store = Store(r, config.load({}))
    create_zone(store, ZONE, ZoneChanges(ns=[f"ns1.{ZONE}"], negative_ttl=NEG_TTL))
    provision.create_account(store, f"mail.office.{ZONE}", "setip-a")  # office.<zone>: an empty non-terminal
    home = provision.create_account(store, f"home.{ZONE}", "setip-a", wildcard=True).account
    provision.create_account(store, f"mail.home.{ZONE}", "setip-a")  # another account below home's wildcard
    lan = provision.create_account(store, f"lan.{ZONE}", "setip-a", ipv6_interface_id=IID)
    store.liveness.beat(BeatRequest(home.id, ZONE, 3_600_000, ipv4=HOME_IP, source="update"))
    store.liveness.beat(BeatRequest(lan.account.id, ZONE, 3_600_000, ipv4="203.0.114.8", source="update"))
    pdns = started_pdns(work / "pdns", redis_server.url)
    purger = Purger([pdns.api_url], pdns.api_key).start()
    recursor = api = None
    try:
        recursor = Recursor(work / "recursor", ZONE, pdns.port).start()
        api = UpdateApiServer(work / "api", redis_server.url, pdns.writer_env).start()
        assert lan.password is not None
        yield World(r, Store(r, config.load({}), purger), pdns, recursor, api, lan.password)
    finally:
        for proc in (api, recursor):
            if proc is not None:
                proc.stop()
        purger.stop()
        stop_all(pdns)
        r.close()


def _nodata(msg: dns.message.Message) -> bool:
    """NOERROR, no answer, the zone's SOA in the authority section."""
    soa = [rr for rr in msg.authority if rr.rdtype == dns.rdatatype.SOA]
    return msg.rcode() == dns.rcode.NOERROR and not msg.answer and bool(soa)


def test_an_empty_non_terminal_is_nodata_and_the_account_below_resolves(world: World) -> None:
    for _ in range(2):  # the second answer comes from the recursor's cache: NODATA was cached
        assert _nodata(world.resolve(f"office.{ZONE}", "A"))
    assert world.answers(f"mail.office.{ZONE}", "A") == {"192.0.2.1"}  # neutral until its first update
    assert world.resolve(f"x.office.{ZONE}", "A").rcode() == dns.rcode.NXDOMAIN


def _timed(cond: object, what: str) -> float:
    t0 = time.monotonic()
    wait_for(cond, NEG_TTL + MARGIN, interval=0.05, what=what)  # type: ignore[arg-type]
    return time.monotonic() - t0


def test_a_new_account_resolves_within_the_negative_ttl_of_a_cached_nxdomain(world: World) -> None:
    new, below = f"new.{ZONE}", f"a.later.{ZONE}"
    for name in (new, f"later.{ZONE}"):
        msg = world.resolve(name, "A")
        assert msg.rcode() == dns.rcode.NXDOMAIN
        assert all(rr.ttl <= NEG_TTL for rr in msg.authority)  # the recursor caches it that long at most
    provision.create_account(world.store, new, "setip-a")
    provision.create_account(world.store, below, "setip-a")  # later.<zone> becomes a non-terminal
    took = _timed(lambda: world.answers(new, "A") == {"192.0.2.1"}, f"{new} through the resolver")
    assert took <= NEG_TTL + MARGIN
    _timed(lambda: _nodata(world.resolve(f"later.{ZONE}", "A")), "later.<zone>: NXDOMAIN -> NODATA")
    assert world.answers(below, "A") == {"192.0.2.1"}


def test_the_wildcard_answers_and_never_covers_another_account(world: World) -> None:
    assert world.answers(f"www.home.{ZONE}", "A") == {HOME_IP}
    assert world.answers(f"a.b.home.{ZONE}", "A") == {HOME_IP}
    assert world.answers(f"mail.home.{ZONE}", "A") == {"192.0.2.1"}  # its own (neutral), not home's
    assert world.resolve(f"x.mail.home.{ZONE}", "A").rcode() == dns.rcode.NXDOMAIN  # below another account


def test_an_ip6lanprefix_update_gives_prefix_plus_interface_id(world: World) -> None:
    name = f"lan.{ZONE}"
    assert _nodata(world.resolve(name, "AAAA"))  # live on IPv4 only: the recursor caches NODATA
    params = {"hostname": name, "myip": "203.0.114.9", "ip6lanprefix": "2001:db9:1:2::/64"}
    status, body = world.api.update(params, (name, world.lan_password))
    assert (status, body.split()[0]) == (200, "good"), body
    want = {"2001:db9:1:2:1a2b:3c4d:5e6f:7081"}
    took = _timed(lambda: world.answers(name, "AAAA") == want, "first AAAA through the resolver")
    assert took <= NEG_TTL + MARGIN
    assert world.answers(name, "A") == {"203.0.114.9"}
    # a new prefix: pdns answers it at once (the resolver holds the old one for the record TTL)
    status, body = world.api.update({**params, "ip6lanprefix": "2001:db9:7:8::/64"}, (name, world.lan_password))
    assert status == 200, body
    world.pdns.wait_answer(name, "AAAA", {"2001:db9:7:8:1a2b:3c4d:5e6f:7081"}, timeout=5)
