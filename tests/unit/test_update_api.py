"""The dyndns2 update API through Flask's test client on fakeredis (whose Lua runs the beat script).

Addresses: 203.0.114.0/24, 198.51.101.0/24 and 2001:db9::/32 sit right next to the documentation
ranges but are public unicast, which the update API requires (documentation ranges get ``badip``).
"""

from __future__ import annotations

import base64
import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Any

import pytest
import redis
from flask.testing import FlaskClient

from hbdns import config, keys, validate
from hbdns.connection import connect
from hbdns.model import Account, Zone
from hbdns.passwords import hash_password
from hbdns.purge import Purger
from hbdns.store import Store
from tests.support.servers import free_port
from tests.support.update_api import redis_snapshot
from tests.unit.test_address_class import NON_PUBLIC
from update_api import service as service_module
from update_api.app import create_app
from update_api.parsing import NEVER_PUBLISHED, parse_addresses
from update_api.service import UpdateService

ZONE = "dyn.example.net"
HOST = f"home.{ZONE}"
ALIAS = f"www.{ZONE}"
OTHER = f"other.{ZONE}"
PW = "s3cret-Pässword"
OTHER_PW = "other-password"
CLIENT = "198.51.101.9"


class RecordingPurger(Purger):
    def __init__(self) -> None:
        super().__init__([], "")
        self.purged: list[str] = []

    def purge(self, names: Iterable[str]) -> None:
        self.purged.extend(names)


def _basic(user: str, pw: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{pw}".encode()).decode()}


class Api:
    """A test client plus the store behind it, with helpers that speak the protocol."""

    def __init__(self, r: redis.Redis, settings: config.Settings, accounts: tuple[Account, Account]) -> None:
        self.r: Any = r  # decode_responses: str in, str out
        self.store = Store(r, settings)
        self.purger = RecordingPurger()
        self.app = create_app(UpdateService(settings, r, self.purger))
        self.client: FlaskClient = self.app.test_client()
        self.account, self.other = accounts

    def get(
        self,
        query: str = "",
        *,
        path: str = "/nic/update",
        auth: tuple[str, str] | None = (HOST, PW),
        source: str = CLIENT,
        headers: dict[str, str] | None = None,
        method: str = "GET",
        **kw: Any,
    ) -> Any:
        h = {"User-Agent": "test-client/1.0", **(headers or {})}
        if auth:
            h.update(_basic(*auth))
        url = path + (f"?{query}" if query else "")
        return self.client.open(url, method=method, headers=h, environ_base={"REMOTE_ADDR": source}, **kw)

    def state(self, account: Account | None = None) -> dict[str, str]:
        return self.r.hgetall(keys.account((account or self.account).id))

    def alive_ms(self, account: Account | None = None) -> int:
        return int(self.r.pttl(keys.alive((account or self.account).id)))

    def events(self, kind: str | None = None) -> list[dict[str, str]]:
        entries = [e for s in keys.all_shards() for e in self.r.xrange(keys.events(s))]
        entries.sort(key=lambda e: tuple(map(int, e[0].split("-"))))  # every shard's, in time order
        return [f for _, f in entries if kind is None or f["type"] == kind]

    def allow_private(self, allow: bool = True) -> None:
        zone = self.store.get_zone(ZONE)
        assert zone is not None
        self.store.update_zone(replace(zone, allow_private=allow))


def _store_with_accounts(r: redis.Redis, settings: config.Settings) -> tuple[Account, Account]:
    store = Store(r, settings)
    store.add_zone(Zone(apex=ZONE, ns=("ns1.example.net",), hostmaster="hm.example.net", neutral_ipv4="192.0.2.1"))
    # a cheap scrypt cost: these tests are about the protocol (the service reads the cost from the hash)
    a = store.new_account(HOST, "setip-c", aliases=[ALIAS])
    b = store.new_account(OTHER, "business-c")
    a = store.add_account(replace(a, pw_hash=hash_password(PW, n=16)))
    b = store.add_account(replace(b, pw_hash=hash_password(OTHER_PW, n=16)))
    return a, b


@pytest.fixture
def make_api(fake_redis: redis.Redis) -> Callable[..., Api]:
    made: dict[str, tuple[Account, Account]] = {}

    def make(**env: str) -> Api:
        settings = config.load({f"HBDNS_{k.upper()}": v for k, v in env.items()})
        if "accounts" not in made:
            made["accounts"] = _store_with_accounts(fake_redis, settings)
        return Api(fake_redis, settings, made["accounts"])

    return make


@pytest.fixture
def api(make_api: Callable[..., Api]) -> Api:
    return make_api()


def _text(resp: Any) -> str:
    assert resp.mimetype == "text/plain"
    return str(resp.get_data(as_text=True))


# --- answers ------------------------------------------------------------------------------------------


def test_good_then_nochg_and_every_update_refreshes_liveness(api: Api) -> None:
    serial = api.store.zone_serial(ZONE)
    resp = api.get(f"hostname={HOST}&myip=203.0.114.7")
    assert (resp.status_code, _text(resp)) == (200, "good 203.0.114.7\n")
    st = api.state()
    assert st["ipv4"] == "203.0.114.7" and st["state"] == "live"
    assert 295_000 < api.alive_ms() <= 305_000  # setip-c: 5 minutes + 5 s grace
    assert api.store.zone_serial(ZONE) > serial
    assert [e["type"] for e in api.events()][-2:] == ["recovered", "ip_changed"]
    assert api.events("ip_changed")[-1]["source"] == "update"
    assert set(api.purger.purged) == {HOST, ALIAS}

    api.r.pexpire(keys.alive(api.account.id), 1000)  # almost expired
    api.purger.purged.clear()
    n_events, serial = len(api.events()), api.store.zone_serial(ZONE)
    resp = api.get(f"hostname={HOST}&myip=203.0.114.7")
    assert (resp.status_code, _text(resp)) == (200, "nochg 203.0.114.7\n")
    assert api.alive_ms() > 295_000  # nochg refreshed the expiry plan's liveness
    assert len(api.events()) == n_events and api.store.zone_serial(ZONE) == serial
    assert api.purger.purged == []
    assert resp.headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize("path", ["/nic/update", "/update", "/v3/update"])
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_every_update_path_and_method(api: Api, path: str, method: str) -> None:
    resp = api.get(f"hostname={HOST}&myip=203.0.114.8", path=path, method=method)
    assert (resp.status_code, _text(resp)) == (200, "good 203.0.114.8\n")


def test_post_form_body_is_read_too(api: Api) -> None:
    resp = api.get(method="POST", data={"hostname": HOST, "myip": "203.0.114.9"})
    assert _text(resp) == "good 203.0.114.9\n"


@pytest.mark.parametrize("user", [HOST, HOST.upper() + ".", "1", ALIAS])
def test_username_is_the_fqdn_or_the_id(api: Api, user: str) -> None:
    resp = api.get(f"hostname={HOST}&myip=203.0.114.10", auth=(user, PW))
    assert _text(resp) == "good 203.0.114.10\n"


def test_query_string_credentials_for_routers_without_basic_auth(api: Api) -> None:
    resp = api.get(f"hostname={HOST}&myip=203.0.114.11&username={HOST}&password=s3cret-P%C3%A4ssword", auth=None)
    assert (resp.status_code, _text(resp)) == (200, "good 203.0.114.11\n")


@pytest.mark.parametrize(
    "auth",
    [None, (HOST, "wrong"), ("nobody.dyn.example.net", PW), ("999", PW), (OTHER, PW), ("", ""), ("x" * 300, PW)],
)
def test_badauth_is_401_with_a_challenge_and_changes_nothing(api: Api, auth: tuple[str, str] | None) -> None:
    resp = api.get(f"hostname={HOST}&myip=203.0.114.12", auth=auth)
    assert (resp.status_code, _text(resp)) == (401, "badauth\n")
    assert resp.headers["WWW-Authenticate"].startswith("Basic")
    assert not api.state().get("ipv4") and api.alive_ms() < 0


def test_malformed_authorization_header_is_badauth(api: Api) -> None:
    resp = api.get(f"hostname={HOST}", auth=None, headers={"Authorization": "Basic !!notbase64"})
    assert (resp.status_code, _text(resp)) == (401, "badauth\n")


def test_hostname_list_answers_one_line_per_name_in_order(api: Api) -> None:
    resp = api.get(f"hostname={HOST},{ALIAS},nohost.{ZONE},{OTHER},nodot&myip=203.0.114.13")
    assert resp.status_code == 200  # some lines succeeded: the body is parsed line by line
    assert _text(resp).splitlines() == [
        "good 203.0.114.13",
        "good 203.0.114.13",
        "nohost",
        "nohost",  # another account's name: no "!yours" oracle
        "notfqdn",
    ]
    assert api.state(api.other).get("ipv4") in (None, "")


@pytest.mark.parametrize("query", ["", "hostname=", "hostname=YES"])
def test_missing_hostname_means_the_accounts_own_name(api: Api, query: str) -> None:
    resp = api.get(f"{query}&myip=203.0.114.14")
    assert _text(resp) == "good 203.0.114.14\n"


def test_unknown_hostname_alone_is_404_nohost(api: Api) -> None:
    resp = api.get(f"hostname=nohost.{ZONE}&myip=203.0.114.15")
    assert (resp.status_code, _text(resp)) == (404, "nohost\n")
    assert api.alive_ms() < 0


def test_twenty_hostnames_pass_twenty_one_are_numhost(api: Api) -> None:
    resp = api.get("hostname=" + ",".join([HOST] * 20) + "&myip=203.0.114.16")
    assert _text(resp).splitlines() == ["good 203.0.114.16"] + ["good 203.0.114.16"] * 19
    resp = api.get("hostname=" + ",".join([HOST] * 21) + "&myip=203.0.114.17")
    assert (resp.status_code, _text(resp)) == (400, "numhost\n")
    assert api.state()["ipv4"] == "203.0.114.16"


@pytest.mark.parametrize(
    "hostname",
    [
        "nodot",
        "bad_name.dyn.example.net",
        "home.dyn.example.net%0d%0aX-Injected:%20yes",
        "home.dyn.example.net;rm%20-rf%20/",
        "%3Cscript%3Ealert(1)%3C/script%3E.dyn.example.net",
        "'%20OR%201=1%20--",
        "../../etc/passwd",
        "h%C3%B6me.dyn.example.net",
        "home.dyn.example.net%00",
        "-home.dyn.example.net",
        ("a" * 64) + ".dyn.example.net",
        ".".join(["a" * 60] * 5),
        "*.dyn.example.net",
        "home..dyn.example.net",
    ],
)
def test_injection_attempts_in_hostname_are_notfqdn_and_not_echoed(api: Api, hostname: str) -> None:
    resp = api.get(f"hostname={hostname}&myip=203.0.114.18")
    assert (resp.status_code, _text(resp)) == (400, "notfqdn\n")
    assert "X-Injected" not in resp.headers
    assert api.alive_ms() < 0 and not api.state().get("ipv4")


# --- addresses ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("myip", "v4", "v6"),
    [
        ("203.0.114.20,2001:db9::20", "203.0.114.20", "2001:db9::20"),
        ("2001:db9::20,203.0.114.20", "203.0.114.20", "2001:db9::20"),  # v6,v4 order
        ("2001:db9::20%2C%20203.0.114.20", "203.0.114.20", "2001:db9::20"),  # encoded comma, space
        ("2001:DB9:0:0::20", "", "2001:db9::20"),  # normalised
        ("::ffff:203.0.114.20", "203.0.114.20", ""),  # v4-mapped is v4
        ("203.0.114.20,", "203.0.114.20", ""),  # FRITZ!Box without IPv6: <ip6addr> stays empty
        (",2001:db9::20", "", "2001:db9::20"),  # ... and without IPv4
    ],
)
def test_myip_forms(api: Api, myip: str, v4: str, v6: str) -> None:
    resp = api.get(f"hostname={HOST}&myip={myip}")
    assert _text(resp) == "good " + ",".join(a for a in (v4, v6) if a) + "\n"
    st = api.state()
    assert st.get("ipv4", "") == v4 and st.get("ipv6", "") == v6


def test_one_family_leaves_the_other_alone(api: Api) -> None:
    api.get(f"hostname={HOST}&myip=203.0.114.21,2001:db9::21")
    assert _text(api.get(f"hostname={HOST}&myipv6=2001:db9::22")) == "good 2001:db9::22\n"
    assert (api.state()["ipv4"], api.state()["ipv6"]) == ("203.0.114.21", "2001:db9::22")
    assert _text(api.get(f"hostname={HOST}&myip=203.0.114.23")) == "good 203.0.114.23\n"
    assert (api.state()["ipv4"], api.state()["ipv6"]) == ("203.0.114.23", "2001:db9::22")
    # deSEC's preserve: v6 named but kept, v4 set; the connection's address is not used
    assert _text(api.get(f"hostname={HOST}&myip=203.0.114.24&myipv6=preserve")) == "good 203.0.114.24\n"
    assert api.state()["ipv6"] == "2001:db9::22"


def test_preserve_both_is_a_pure_keepalive(api: Api) -> None:
    api.get(f"hostname={HOST}&myip=203.0.114.25,2001:db9::25")
    api.r.pexpire(keys.alive(api.account.id), 1000)
    resp = api.get(f"hostname={HOST}&myip=preserve&myipv6=preserve")
    assert _text(resp) == "nochg 203.0.114.25,2001:db9::25\n"
    assert api.alive_ms() > 290_000


@pytest.mark.parametrize(
    "query",
    [
        "myip=300.1.1.1",
        "myip=not-an-ip",
        "myip=203.0.114.1,203.0.114.2",
        "myip=203.0.114.1,2001:db9::1,203.0.114.3",
        "myip=0.0.0.0",
        "myip=::",
        "myip=224.0.0.1",
        "myip=169.254.1.1",
        "myip=fe80::1",
        "myipv6=2001:db9::1%25eth0",
        "myipv6=203.0.114.1",
        "myipv4=2001:db9::1",
        "myip=203.0.114.1%0d%0aX:y",
        "myip=" + "1" * 5000,
    ],
)
def test_bad_addresses_are_refused_and_change_nothing(api: Api, query: str) -> None:
    resp = api.get(f"hostname={HOST}&{query}")
    assert (resp.status_code, _text(resp)) == (400, "badip\n")
    assert api.alive_ms() < 0 and not api.state().get("ipv4")


def test_without_myip_the_source_address_is_used(api: Api) -> None:
    assert _text(api.get(f"hostname={HOST}", source="198.51.101.30")) == "good 198.51.101.30\n"
    assert _text(api.get(f"hostname={HOST}&myip=", source="2001:db9:1::30")) == "good 2001:db9:1::30\n"
    st = api.state()
    assert (st["ipv4"], st["ipv6"]) == ("198.51.101.30", "2001:db9:1::30")


def _as_query(addr: str, how: str) -> tuple[str, str]:
    """(query, source) sending ``addr`` as myip, as its family's own parameter, or as the source."""
    v6 = ":" in addr and validate.ip_any(addr.split("%")[0])[0] == 6
    enc = addr.replace("%", "%25")
    if how == "myip":
        return f"hostname={HOST}&myip={enc}", CLIENT
    if how == "family":
        return f"hostname={HOST}&{'myipv6' if v6 else 'myipv4'}={enc}", CLIENT
    return f"hostname={HOST}", addr  # no address named: the connection's is used


@pytest.mark.parametrize("how", ["myip", "family", "source"])
@pytest.mark.parametrize(("addr", "cls"), NON_PUBLIC)
def test_non_public_addresses_are_badip_and_write_nothing(api: Api, addr: str, cls: str, how: str) -> None:
    query, source = _as_query(addr, how)
    api.get(f"hostname={HOST}&myip=203.0.114.1")  # an account that is live, with rate-limit state
    before = redis_snapshot(api.r)
    resp = api.get(query, source=source)
    assert (resp.status_code, _text(resp)) == (400, "badip\n")
    assert redis_snapshot(api.r) == before  # not even a rate-limit counter
    assert api.purger.purged == [HOST, ALIAS]  # from the first update only


@pytest.mark.parametrize(("addr", "cls"), NON_PUBLIC)
def test_a_zone_that_allows_private_addresses_takes_them(api: Api, addr: str, cls: str) -> None:
    api.allow_private()
    query, source = _as_query(addr, "myip")
    resp = api.get(query, source=source)
    if cls in NEVER_PUBLISHED:  # nothing answers there, lab or not
        assert (resp.status_code, _text(resp)) == (400, "badip\n")
        assert not api.state().get("ipv4") and not api.state().get("ipv6")
        return
    family, shown = validate.ip_any(addr)
    assert (resp.status_code, _text(resp)) == (200, f"good {shown}\n")
    assert api.state()["ipv4" if family == 4 else "ipv6"] == shown


def test_a_private_source_is_used_only_where_the_zone_allows_it(api: Api) -> None:
    assert _text(api.get(f"hostname={HOST}", source="127.0.0.1")) == "badip\n"  # untrusted local proxy
    assert _text(api.get(f"hostname={HOST}", source="::ffff:10.0.0.5")) == "badip\n"  # mapped: its IPv4
    api.allow_private()
    assert _text(api.get(f"hostname={HOST}", source="::ffff:10.0.0.5")) == "good 10.0.0.5\n"
    assert _text(api.get(f"hostname={HOST}", source="fd00::5")) == "good fd00::5\n"
    assert _text(api.get(f"hostname={HOST}", source="169.254.0.5")) == "badip\n"  # never, even here
    api.allow_private(False)
    assert _text(api.get(f"hostname={HOST}&myip=10.0.0.6")) == "badip\n"
    assert api.state()["ipv4"] == "10.0.0.5"


def test_the_zone_is_read_only_for_non_public_addresses(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    reads: list[str] = []
    real = Store.get_zone

    def counting(self: Store, apex: str) -> Zone | None:
        reads.append(apex)
        return real(self, apex)

    monkeypatch.setattr(Store, "get_zone", counting)
    assert _text(api.get(f"hostname={HOST}&myip=203.0.114.2")) == "good 203.0.114.2\n"
    assert reads == []
    assert _text(api.get(f"hostname={HOST}&myip=10.0.0.2")) == "badip\n"
    assert reads == [ZONE]


def test_proxy_headers_only_from_trusted_proxies(make_api: Callable[..., Api]) -> None:
    api = make_api(update_trusted_proxies="127.0.0.0/8, 10.0.0.0/8")
    xff = {"X-Forwarded-For": "198.51.101.99, 198.51.101.40, 10.1.1.1"}
    # from a trusted proxy: the right-most untrusted hop (the left part is client-controlled)
    assert _text(api.get(f"hostname={HOST}", source="127.0.0.1", headers=xff)) == "good 198.51.101.40\n"
    resp = api.get(f"hostname={HOST}", source="127.0.0.1", headers={"X-Real-IP": "2001:db9::41"})
    assert _text(resp) == "good 2001:db9::41\n"
    # from anyone else the headers are ignored
    assert _text(api.get(f"hostname={HOST}", source="198.51.101.42", headers=xff)) == "good 198.51.101.42\n"
    # a garbled chain is not believed: the proxy's own (loopback) address is refused
    resp = api.get(f"hostname={HOST}", source="127.0.0.1", headers={"X-Forwarded-For": "evil, 198.51.101.43"})
    assert _text(resp) == "badip\n"
    page = api.get(path="/nic/checkip", source="127.0.0.1", headers=xff, auth=None)
    assert "Current IP Address: 198.51.101.40" in page.get_data(as_text=True)


def test_parse_addresses_unit() -> None:
    assert parse_addresses({"myip": " 2001:db9::1 , 192.0.2.5 "}, None).shown() == "192.0.2.5,2001:db9::1"
    assert parse_addresses({}, "192.0.2.6").shown() == "192.0.2.6"
    assert parse_addresses({"myip": "preserve"}, "192.0.2.6").shown() == ""


# --- offline ------------------------------------------------------------------------------------------


def test_offline_yes_neutralizes_now(api: Api) -> None:
    api.get(f"hostname={HOST}&myip=203.0.114.50")
    api.purger.purged.clear()
    resp = api.get(f"hostname={HOST}&myip=203.0.114.51&offline=YES")
    assert (resp.status_code, _text(resp)) == (200, "good 203.0.114.50\n")
    st = api.state()
    assert st["state"] == "neutral" and st["ipv4"] == "203.0.114.50"  # offline ignores myip
    assert api.alive_ms() < 0
    assert api.events("neutralized")[-1]["reason"] == "offline"
    assert set(api.purger.purged) == {HOST, ALIAS}
    assert _text(api.get(f"hostname={HOST}&offline=yes")) == "nochg 203.0.114.50\n"
    # the next normal update brings it back
    assert _text(api.get(f"hostname={HOST}&myip=203.0.114.50&offline=NO")) == "good 203.0.114.50\n"
    assert api.state()["state"] == "live"


# --- limits -------------------------------------------------------------------------------------------


LIMITS = {
    "update_authfail_burst": "3",
    "update_authfail_rate": "0.01",
    "update_authfail_source_burst": "8",
    "update_authfail_source_rate": "0.01",
    "update_authfail_account_burst": "6",
    "update_authfail_account_rate": "0.01",
}


def test_a_wrong_password_limits_that_account_from_that_source_only(make_api: Callable[..., Api]) -> None:
    api = make_api(**LIMITS)
    shared = "198.51.101.60"  # a CGNAT/DS-Lite address shared by both customers
    for _ in range(3):
        assert api.get(f"hostname={HOST}", auth=(HOST, "guess"), source=shared).status_code == 401
    resp = api.get(f"hostname={HOST}&myip=203.0.114.60", source=shared)  # even the right password
    assert (resp.status_code, _text(resp)) == (429, "abuse\n")
    assert int(resp.headers["Retry-After"]) > 0
    assert not api.state().get("ipv4")
    # the neighbour behind the same address, and the same account elsewhere, are not locked out
    for i in range(5):
        resp = api.get(f"hostname={OTHER}&myip=203.0.114.{70 + i % 2}", auth=(OTHER, OTHER_PW), source=shared)
        assert _text(resp) == f"good 203.0.114.{70 + i % 2}\n"
        assert api.get(f"hostname={HOST}", auth=(HOST, "guess"), source=shared).status_code == 429
    assert _text(api.get(f"hostname={HOST}&myip=203.0.114.61", source="198.51.101.61")) == "good 203.0.114.61\n"
    # IPv6 sources count per /64
    for i in range(3):
        api.get(f"hostname={OTHER}", auth=(OTHER, "guess"), source=f"2001:db9:6:6::{i + 1}")
    resp = api.get(f"hostname={OTHER}&myip=203.0.114.62", auth=(OTHER, OTHER_PW), source="2001:db9:6:6::99")
    assert _text(resp) == "abuse\n"
    resp = api.get(f"hostname={OTHER}&myip=203.0.114.62", auth=(OTHER, OTHER_PW), source="2001:db9:6:7::1")
    assert _text(resp) == "good 203.0.114.62\n"


def test_password_spraying_from_one_source_hits_the_source_ceiling(make_api: Callable[..., Api]) -> None:
    api = make_api(**LIMITS)
    sprayer = "198.51.101.80"
    assert _text(api.get(f"hostname={OTHER}&myip=203.0.114.80", auth=(OTHER, OTHER_PW), source=sprayer)).startswith(
        "good"
    )  # OTHER's router updated from this address before: a known source for OTHER
    names = [HOST, ALIAS, "1", *(f"n{i}.{ZONE}" for i in range(5))]  # many accounts, 1 guess each
    codes = [api.get(f"hostname={HOST}", auth=(n, "guess"), source=sprayer).status_code for n in names]
    assert codes == [401] * 3 + [401] * 5  # 8 = the source's ceiling (HOST's pair had 3)
    assert api.get(f"hostname={HOST}", auth=(f"n9.{ZONE}", "guess"), source=sprayer).status_code == 429
    # a correct login of an account never updated from here waits too; the known one does not
    assert _text(api.get(f"hostname={HOST}&myip=203.0.114.81", source=sprayer)) == "abuse\n"
    resp = api.get(f"hostname={OTHER}&myip=203.0.114.82", auth=(OTHER, OTHER_PW), source=sprayer)
    assert _text(resp) == "good 203.0.114.82\n"
    assert _text(api.get(f"hostname={HOST}&myip=203.0.114.81", source="198.51.101.81")) == "good 203.0.114.81\n"


def test_brute_force_on_one_account_from_many_sources_hits_the_account_ceiling(
    make_api: Callable[..., Api],
) -> None:
    api = make_api(**LIMITS)
    home = "198.51.101.90"
    assert _text(api.get(f"hostname={HOST}&myip=203.0.114.90", source=home)) == "good 203.0.114.90\n"
    codes = [api.get(f"hostname={HOST}", auth=(HOST, "guess"), source=f"198.51.102.{i}").status_code for i in range(8)]
    assert codes == [401] * 6 + [429] * 2  # 6 = the account's ceiling, whatever the source
    # a new source is refused even with the password; the account's own router is not locked out
    assert _text(api.get(f"hostname={HOST}&myip=203.0.114.91", source="198.51.102.99")) == "abuse\n"
    assert _text(api.get(f"hostname={HOST}&myip=203.0.114.91", source=home)) == "good 203.0.114.91\n"
    # names of one account share its buckets; other accounts are untouched
    assert api.get(f"hostname={HOST}", auth=(ALIAS, "guess"), source="198.51.102.50").status_code == 429
    resp = api.get(f"hostname={OTHER}&myip=203.0.114.92", auth=(OTHER, OTHER_PW), source="198.51.102.99")
    assert _text(resp) == "good 203.0.114.92\n"


def test_a_limited_caller_never_reaches_the_password_hash(
    make_api: Callable[..., Api], monkeypatch: pytest.MonkeyPatch
) -> None:
    api = make_api(**LIMITS)
    calls: list[str] = []
    real = service_module.verify_password

    def counting(password: str, stored: str | None) -> bool:
        calls.append(password)
        return real(password, stored)

    monkeypatch.setattr(service_module, "verify_password", counting)
    for _ in range(3):
        api.get(f"hostname={HOST}", auth=(HOST, "guess"), source="198.51.101.95")
    assert len(calls) == 3
    for auth in ((HOST, "guess"), (HOST, PW)):
        assert api.get(f"hostname={HOST}", auth=auth, source="198.51.101.95").status_code == 429
    assert len(calls) == 3  # refused on Redis state alone


def test_refused_updates_write_nothing_not_even_limits(api: Api) -> None:
    api.get(f"hostname={HOST}&myip=203.0.114.96")
    before = redis_snapshot(api.r)
    for query in ("hostname=nohost.dyn.example.net", "hostname=bad_name", "hostname=" + ",".join([HOST] * 21)):
        assert api.get(query + "&myip=203.0.114.97").status_code in (400, 404)
    assert api.get(f"hostname={HOST}&myip=300.1.1.1").status_code == 400
    assert redis_snapshot(api.r) == before


def test_known_sources_are_capped_per_account(api: Api) -> None:
    for i in range(12):
        assert api.get(f"hostname={HOST}&myip=preserve", source=f"198.51.101.{100 + i}").status_code == 200
    known = api.r.zrange(keys.ratelimit("known", str(api.account.id)), 0, -1)
    assert known == [f"198.51.101.{100 + i}" for i in range(4, 12)]  # the 8 newest
    assert 0 < api.r.ttl(keys.ratelimit("known", str(api.account.id))) <= 30 * 86400


def test_bursts_pass_sustained_misuse_gets_abuse(make_api: Callable[..., Api]) -> None:
    api = make_api(update_account_burst="4", update_account_rate="0.01")
    # a burst: separate IPv4 and IPv6 clients, and two hosts of the account, all at once
    assert _text(api.get(f"hostname={HOST}&myip=203.0.114.70")) == "good 203.0.114.70\n"
    assert _text(api.get(f"hostname={HOST}&myipv6=2001:db9::70", source="2001:db9::1")) == "good 2001:db9::70\n"
    assert _text(api.get(f"hostname={ALIAS}&myip=203.0.114.70")).startswith("nochg")
    assert _text(api.get(f"hostname={HOST}&myip=203.0.114.70")).startswith("nochg")
    before = redis_snapshot(api.r)
    resp = api.get(f"hostname={HOST}&myip=203.0.114.71", source="198.51.101.71")  # a new source, too
    assert (resp.status_code, _text(resp)) == (429, "abuse\n")
    assert int(resp.headers["Retry-After"]) >= 1
    assert redis_snapshot(api.r) == before  # not remembered as a known source either
    assert api.state()["ipv4"] == "203.0.114.70"
    # the limit is per account
    assert _text(api.get(f"hostname={OTHER}&myip=203.0.114.72", auth=(OTHER, OTHER_PW))) == "good 203.0.114.72\n"


def test_limits_are_shared_by_processes_through_redis(make_api: Callable[..., Api]) -> None:
    a = make_api(update_account_burst="2", update_account_rate="0.01")
    b = make_api(update_account_burst="2", update_account_rate="0.01")  # a second app, same Redis
    assert _text(a.get(f"hostname={HOST}&myip=203.0.114.73")).startswith("good")
    assert _text(b.get(f"hostname={HOST}&myip=203.0.114.73")).startswith("nochg")
    assert _text(a.get(f"hostname={HOST}&myip=203.0.114.73")) == "abuse\n"


def test_oversized_requests_are_refused_and_change_nothing(api: Api) -> None:
    resp = api.get(f"hostname={HOST}&myip=203.0.114.80&pad=" + "x" * 9000)
    assert resp.status_code == 414 and "too large" in _text(resp)
    resp = api.get(method="POST", data={"hostname": HOST, "myip": "203.0.114.80", "pad": "x" * 9000})
    assert resp.status_code == 413 and "too large" in _text(resp)
    assert api.alive_ms() < 0 and not api.state().get("ipv4")


# --- agents, errors -----------------------------------------------------------------------------------


def test_no_user_agent_is_fine_blocked_agents_get_badagent(make_api: Callable[..., Api]) -> None:
    api = make_api(update_blocked_agents="BrokenClient/0.1, evil")
    resp = api.client.get(
        f"/nic/update?hostname={HOST}&myip=203.0.114.90",
        headers=_basic(HOST, PW),
        environ_base={"REMOTE_ADDR": CLIENT, "HTTP_USER_AGENT": ""},
    )
    assert _text(resp) == "good 203.0.114.90\n"
    resp = api.get(f"hostname={HOST}&myip=203.0.114.91", headers={"User-Agent": "brokenclient/0.1 (linux)"})
    assert (resp.status_code, _text(resp)) == (400, "badagent\n")
    assert api.state()["ipv4"] == "203.0.114.90"


@pytest.mark.parametrize("method", ["PUT", "DELETE", "HEAD"])
def test_other_methods_are_badagent_and_change_nothing(api: Api, method: str) -> None:
    resp = api.get(f"hostname={HOST}&myip=203.0.114.92", method=method)
    assert resp.status_code == 405 and resp.headers["Allow"] == "GET, POST"
    if method != "HEAD":
        assert _text(resp) == "badagent\n"
    assert api.alive_ms() < 0


def test_redis_down_is_dnserr(settings: config.Settings) -> None:
    dead = connect(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=0.5)
    client = create_app(UpdateService(settings, dead, Purger([], ""))).test_client()
    resp = client.get(f"/nic/update?hostname={HOST}&myip=203.0.114.93", headers=_basic(HOST, PW))
    assert (resp.status_code, _text(resp)) == (503, "dnserr\n")
    assert resp.headers["Retry-After"]


def test_unknown_plan_is_911(fake_redis: redis.Redis) -> None:
    custom = config.load({"HBDNS_PLANS": '{"gone": {"kind": "expiry", "interval": 60, "misses": 1, "ttl": 60}}'})
    store = Store(fake_redis, custom)
    store.add_zone(Zone(apex=ZONE, ns=("ns1.example.net",), hostmaster="hm.example.net", neutral_ipv4="192.0.2.1"))
    store.add_account(store.new_account(HOST, "gone", password=PW))
    service = UpdateService(config.load({}), fake_redis, Purger([], ""))  # the plan was removed from the config
    client = create_app(service).test_client()
    resp = client.get(f"/nic/update?hostname={HOST}&myip=203.0.114.94", headers=_basic(HOST, PW))
    assert (resp.status_code, _text(resp)) == (500, "911\n")


def test_unknown_path_is_plain_404(api: Api) -> None:
    resp = api.get(path="/admin")
    assert resp.status_code == 404 and resp.mimetype == "text/plain"


def test_checkip_classic_format(api: Api) -> None:
    resp = api.get(path="/nic/checkip", auth=None, source="198.51.101.77")
    assert resp.status_code == 200 and resp.mimetype == "text/html"
    assert resp.get_data(as_text=True) == (
        "<html><head><title>Current IP Check</title></head><body>Current IP Address: 198.51.101.77</body></html>"
    )
    resp = api.get(path="/checkip", auth=None, source="::ffff:198.51.101.78")
    assert "Current IP Address: 198.51.101.78<" in resp.get_data(as_text=True)


@pytest.mark.parametrize("source", ["127.0.0.1", "::1", "10.0.0.1", "100.64.0.1", "fd00::1", "::ffff:127.0.0.1"])
def test_checkip_never_reports_a_non_public_source(api: Api, source: str, caplog: pytest.LogCaptureFixture) -> None:
    api.allow_private()  # zones do not matter here: checkip has no account
    resp = api.get(path="/nic/checkip", auth=None, source=source)
    text = resp.get_data(as_text=True)
    assert resp.status_code == 503 and "Current IP Address: unknown" in text
    # ddclient 3.10 takes the first address anywhere in the reply, headers included
    reply = text + "".join(f"{k}: {v}\n" for k, v in resp.headers.items())
    assert not re.search(r"\d+\.\d+\.\d+\.\d+|[0-9a-f]*::[0-9a-f]*", reply, re.I), reply
    assert any("not a public address" in r.getMessage() for r in caplog.records)  # the operator learns


def test_secrets_are_never_logged(api: Api, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    api.get(f"hostname={HOST}&myip=203.0.114.95")
    api.get(f"hostname={HOST}&myip=203.0.114.96", auth=(HOST, "wrong-Geheimnis"))
    api.get(f"hostname={HOST}&username={HOST}&password=query-Geheimnis", auth=None)
    api.get(f"hostname=bad_name&myip=1.2.3.4,5.6.7.8&username={HOST}&password=query-Geheimnis", auth=None)
    assert caplog.records, "updates should be logged"
    for rec in caplog.records:
        text = " ".join([rec.getMessage(), *(str(v) for v in rec.__dict__.values())])
        for secret in (PW, "wrong-Geheimnis", "query-Geheimnis", base64.b64encode(f"{HOST}:{PW}".encode()).decode()):
            assert secret not in text
