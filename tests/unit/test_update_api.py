"""The dyndns2 update API through Flask's test client on fakeredis (whose Lua runs the beat script)."""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable, Iterable
from typing import Any

import pytest
import redis
from flask.testing import FlaskClient

from hbdns import config, keys
from hbdns.connection import connect
from hbdns.model import Account, Zone
from hbdns.purge import Purger
from hbdns.store import Store
from tests.support.servers import free_port
from update_api.app import create_app
from update_api.parsing import parse_addresses
from update_api.service import UpdateService

ZONE = "dyn.example.net"
HOST = f"home.{ZONE}"
ALIAS = f"www.{ZONE}"
OTHER = f"other.{ZONE}"
PW = "s3cret-Pässword"
OTHER_PW = "other-password"
CLIENT = "198.51.100.9"


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
        return [f for _, f in self.r.xrange(keys.events()) if kind is None or f["type"] == kind]


def _store_with_accounts(r: redis.Redis, settings: config.Settings) -> tuple[Account, Account]:
    store = Store(r, settings)
    store.add_zone(Zone(apex=ZONE, ns=("ns1.example.net",), hostmaster="hm.example.net", neutral_ipv4="192.0.2.1"))
    a = store.add_account(store.new_account(HOST, "setip-c", aliases=[ALIAS], password=PW))
    b = store.add_account(store.new_account(OTHER, "business-c", password=OTHER_PW))
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
    resp = api.get(f"hostname={HOST}&myip=203.0.113.7")
    assert (resp.status_code, _text(resp)) == (200, "good 203.0.113.7\n")
    st = api.state()
    assert st["ipv4"] == "203.0.113.7" and st["state"] == "live"
    assert 290_000 < api.alive_ms() <= 300_000  # setip-c: 5 minutes
    assert api.store.zone_serial(ZONE) > serial
    assert [e["type"] for e in api.events()][-2:] == ["recovered", "ip_changed"]
    assert api.events("ip_changed")[-1]["source"] == "update"
    assert set(api.purger.purged) == {HOST, ALIAS}

    api.r.pexpire(keys.alive(api.account.id), 1000)  # almost expired
    api.purger.purged.clear()
    n_events, serial = len(api.events()), api.store.zone_serial(ZONE)
    resp = api.get(f"hostname={HOST}&myip=203.0.113.7")
    assert (resp.status_code, _text(resp)) == (200, "nochg 203.0.113.7\n")
    assert api.alive_ms() > 290_000  # nochg refreshed the expiry plan's liveness
    assert len(api.events()) == n_events and api.store.zone_serial(ZONE) == serial
    assert api.purger.purged == []
    assert resp.headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize("path", ["/nic/update", "/update", "/v3/update"])
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_every_update_path_and_method(api: Api, path: str, method: str) -> None:
    resp = api.get(f"hostname={HOST}&myip=203.0.113.8", path=path, method=method)
    assert (resp.status_code, _text(resp)) == (200, "good 203.0.113.8\n")


def test_post_form_body_is_read_too(api: Api) -> None:
    resp = api.get(method="POST", data={"hostname": HOST, "myip": "203.0.113.9"})
    assert _text(resp) == "good 203.0.113.9\n"


@pytest.mark.parametrize("user", [HOST, HOST.upper() + ".", "1", ALIAS])
def test_username_is_the_fqdn_or_the_id(api: Api, user: str) -> None:
    resp = api.get(f"hostname={HOST}&myip=203.0.113.10", auth=(user, PW))
    assert _text(resp) == "good 203.0.113.10\n"


def test_query_string_credentials_for_routers_without_basic_auth(api: Api) -> None:
    resp = api.get(f"hostname={HOST}&myip=203.0.113.11&username={HOST}&password=s3cret-P%C3%A4ssword", auth=None)
    assert (resp.status_code, _text(resp)) == (200, "good 203.0.113.11\n")


@pytest.mark.parametrize(
    "auth",
    [None, (HOST, "wrong"), ("nobody.dyn.example.net", PW), ("999", PW), (OTHER, PW), ("", ""), ("x" * 300, PW)],
)
def test_badauth_is_401_with_a_challenge_and_changes_nothing(api: Api, auth: tuple[str, str] | None) -> None:
    resp = api.get(f"hostname={HOST}&myip=203.0.113.12", auth=auth)
    assert (resp.status_code, _text(resp)) == (401, "badauth\n")
    assert resp.headers["WWW-Authenticate"].startswith("Basic")
    assert not api.state().get("ipv4") and api.alive_ms() < 0


def test_malformed_authorization_header_is_badauth(api: Api) -> None:
    resp = api.get(f"hostname={HOST}", auth=None, headers={"Authorization": "Basic !!notbase64"})
    assert (resp.status_code, _text(resp)) == (401, "badauth\n")


def test_hostname_list_answers_one_line_per_name_in_order(api: Api) -> None:
    resp = api.get(f"hostname={HOST},{ALIAS},nohost.{ZONE},{OTHER},nodot&myip=203.0.113.13")
    assert resp.status_code == 200  # some lines succeeded: the body is parsed line by line
    assert _text(resp).splitlines() == [
        "good 203.0.113.13",
        "good 203.0.113.13",
        "nohost",
        "nohost",  # another account's name: no "!yours" oracle
        "notfqdn",
    ]
    assert api.state(api.other).get("ipv4") in (None, "")


@pytest.mark.parametrize("query", ["", "hostname=", "hostname=YES"])
def test_missing_hostname_means_the_accounts_own_name(api: Api, query: str) -> None:
    resp = api.get(f"{query}&myip=203.0.113.14")
    assert _text(resp) == "good 203.0.113.14\n"


def test_unknown_hostname_alone_is_404_nohost(api: Api) -> None:
    resp = api.get(f"hostname=nohost.{ZONE}&myip=203.0.113.15")
    assert (resp.status_code, _text(resp)) == (404, "nohost\n")
    assert api.alive_ms() < 0


def test_twenty_hostnames_pass_twenty_one_are_numhost(api: Api) -> None:
    resp = api.get("hostname=" + ",".join([HOST] * 20) + "&myip=203.0.113.16")
    assert _text(resp).splitlines() == ["good 203.0.113.16"] + ["good 203.0.113.16"] * 19
    resp = api.get("hostname=" + ",".join([HOST] * 21) + "&myip=203.0.113.17")
    assert (resp.status_code, _text(resp)) == (400, "numhost\n")
    assert api.state()["ipv4"] == "203.0.113.16"


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
    resp = api.get(f"hostname={hostname}&myip=203.0.113.18")
    assert (resp.status_code, _text(resp)) == (400, "notfqdn\n")
    assert "X-Injected" not in resp.headers
    assert api.alive_ms() < 0 and not api.state().get("ipv4")


# --- addresses ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("myip", "v4", "v6"),
    [
        ("203.0.113.20,2001:db8::20", "203.0.113.20", "2001:db8::20"),
        ("2001:db8::20,203.0.113.20", "203.0.113.20", "2001:db8::20"),  # v6,v4 order
        ("2001:db8::20%2C%20203.0.113.20", "203.0.113.20", "2001:db8::20"),  # encoded comma, space
        ("2001:DB8:0:0::20", "", "2001:db8::20"),  # normalised
        ("::ffff:203.0.113.20", "203.0.113.20", ""),  # v4-mapped is v4
        ("203.0.113.20,", "203.0.113.20", ""),  # FRITZ!Box without IPv6: <ip6addr> stays empty
        (",2001:db8::20", "", "2001:db8::20"),  # ... and without IPv4
    ],
)
def test_myip_forms(api: Api, myip: str, v4: str, v6: str) -> None:
    resp = api.get(f"hostname={HOST}&myip={myip}")
    assert _text(resp) == "good " + ",".join(a for a in (v4, v6) if a) + "\n"
    st = api.state()
    assert st.get("ipv4", "") == v4 and st.get("ipv6", "") == v6


def test_one_family_leaves_the_other_alone(api: Api) -> None:
    api.get(f"hostname={HOST}&myip=203.0.113.21,2001:db8::21")
    assert _text(api.get(f"hostname={HOST}&myipv6=2001:db8::22")) == "good 2001:db8::22\n"
    assert (api.state()["ipv4"], api.state()["ipv6"]) == ("203.0.113.21", "2001:db8::22")
    assert _text(api.get(f"hostname={HOST}&myip=203.0.113.23")) == "good 203.0.113.23\n"
    assert (api.state()["ipv4"], api.state()["ipv6"]) == ("203.0.113.23", "2001:db8::22")
    # deSEC's preserve: v6 named but kept, v4 set; the connection's address is not used
    assert _text(api.get(f"hostname={HOST}&myip=203.0.113.24&myipv6=preserve")) == "good 203.0.113.24\n"
    assert api.state()["ipv6"] == "2001:db8::22"


def test_preserve_both_is_a_pure_keepalive(api: Api) -> None:
    api.get(f"hostname={HOST}&myip=203.0.113.25,2001:db8::25")
    api.r.pexpire(keys.alive(api.account.id), 1000)
    resp = api.get(f"hostname={HOST}&myip=preserve&myipv6=preserve")
    assert _text(resp) == "nochg 203.0.113.25,2001:db8::25\n"
    assert api.alive_ms() > 290_000


@pytest.mark.parametrize(
    "query",
    [
        "myip=300.1.1.1",
        "myip=not-an-ip",
        "myip=203.0.113.1,203.0.113.2",
        "myip=203.0.113.1,2001:db8::1,203.0.113.3",
        "myip=0.0.0.0",
        "myip=::",
        "myip=224.0.0.1",
        "myip=169.254.1.1",
        "myip=fe80::1",
        "myipv6=2001:db8::1%25eth0",
        "myipv6=203.0.113.1",
        "myipv4=2001:db8::1",
        "myip=203.0.113.1%0d%0aX:y",
        "myip=" + "1" * 5000,
    ],
)
def test_bad_addresses_are_refused_and_change_nothing(api: Api, query: str) -> None:
    resp = api.get(f"hostname={HOST}&{query}")
    assert (resp.status_code, _text(resp)) == (400, "badip\n")
    assert api.alive_ms() < 0 and not api.state().get("ipv4")


def test_without_myip_the_source_address_is_used(api: Api) -> None:
    assert _text(api.get(f"hostname={HOST}", source="198.51.100.30")) == "good 198.51.100.30\n"
    assert _text(api.get(f"hostname={HOST}&myip=", source="2001:db8:1::30")) == "good 2001:db8:1::30\n"
    st = api.state()
    assert (st["ipv4"], st["ipv6"]) == ("198.51.100.30", "2001:db8:1::30")


def test_loopback_source_is_not_published(api: Api) -> None:
    resp = api.get(f"hostname={HOST}", source="127.0.0.1")
    assert (resp.status_code, _text(resp)) == (400, "badip\n")


def test_proxy_headers_only_from_trusted_proxies(make_api: Callable[..., Api]) -> None:
    api = make_api(update_trusted_proxies="127.0.0.0/8, 10.0.0.0/8")
    xff = {"X-Forwarded-For": "198.51.100.99, 198.51.100.40, 10.1.1.1"}
    # from a trusted proxy: the right-most untrusted hop (the left part is client-controlled)
    assert _text(api.get(f"hostname={HOST}", source="127.0.0.1", headers=xff)) == "good 198.51.100.40\n"
    resp = api.get(f"hostname={HOST}", source="127.0.0.1", headers={"X-Real-IP": "2001:db8::41"})
    assert _text(resp) == "good 2001:db8::41\n"
    # from anyone else the headers are ignored
    assert _text(api.get(f"hostname={HOST}", source="198.51.100.42", headers=xff)) == "good 198.51.100.42\n"
    # a garbled chain is not believed: the proxy's own (loopback) address is refused
    resp = api.get(f"hostname={HOST}", source="127.0.0.1", headers={"X-Forwarded-For": "evil, 198.51.100.43"})
    assert _text(resp) == "badip\n"
    page = api.get(path="/nic/checkip", source="127.0.0.1", headers=xff, auth=None)
    assert "Current IP Address: 198.51.100.40" in page.get_data(as_text=True)


def test_parse_addresses_unit() -> None:
    assert parse_addresses({"myip": " 2001:db8::1 , 192.0.2.5 "}, None).shown() == "192.0.2.5,2001:db8::1"
    assert parse_addresses({}, "192.0.2.6").shown() == "192.0.2.6"
    assert parse_addresses({"myip": "preserve"}, "192.0.2.6").shown() == ""


# --- offline ------------------------------------------------------------------------------------------


def test_offline_yes_neutralizes_now(api: Api) -> None:
    api.get(f"hostname={HOST}&myip=203.0.113.50")
    api.purger.purged.clear()
    resp = api.get(f"hostname={HOST}&myip=203.0.113.51&offline=YES")
    assert (resp.status_code, _text(resp)) == (200, "good 203.0.113.50\n")
    st = api.state()
    assert st["state"] == "neutral" and st["ipv4"] == "203.0.113.50"  # offline ignores myip
    assert api.alive_ms() < 0
    assert api.events("neutralized")[-1]["reason"] == "offline"
    assert set(api.purger.purged) == {HOST, ALIAS}
    assert _text(api.get(f"hostname={HOST}&offline=yes")) == "nochg 203.0.113.50\n"
    # the next normal update brings it back
    assert _text(api.get(f"hostname={HOST}&myip=203.0.113.50&offline=NO")) == "good 203.0.113.50\n"
    assert api.state()["state"] == "live"


# --- limits -------------------------------------------------------------------------------------------


def test_failed_logins_per_source_are_limited(make_api: Callable[..., Api]) -> None:
    api = make_api(update_authfail_burst="3", update_authfail_rate="0.01")
    for _ in range(3):
        assert api.get(f"hostname={HOST}", auth=(HOST, "guess"), source="198.51.100.60").status_code == 401
    resp = api.get(f"hostname={HOST}&myip=203.0.113.60", source="198.51.100.60")  # even the right password
    assert (resp.status_code, _text(resp)) == (429, "abuse\n")
    assert int(resp.headers["Retry-After"]) > 0
    assert not api.state().get("ipv4")
    assert _text(api.get(f"hostname={HOST}&myip=203.0.113.61", source="198.51.100.61")) == "good 203.0.113.61\n"
    # IPv6 sources count per /64
    for i in range(3):
        api.get(f"hostname={HOST}", auth=(HOST, "guess"), source=f"2001:db8:6:6::{i + 1}")
    assert _text(api.get(f"hostname={HOST}&myip=203.0.113.62", source="2001:db8:6:6::99")) == "abuse\n"
    assert _text(api.get(f"hostname={HOST}&myip=203.0.113.62", source="2001:db8:6:7::1")) == "good 203.0.113.62\n"


def test_bursts_pass_sustained_misuse_gets_abuse(make_api: Callable[..., Api]) -> None:
    api = make_api(update_account_burst="4", update_account_rate="0.01")
    # a burst: separate IPv4 and IPv6 clients, and two hosts of the account, all at once
    assert _text(api.get(f"hostname={HOST}&myip=203.0.113.70")) == "good 203.0.113.70\n"
    assert _text(api.get(f"hostname={HOST}&myipv6=2001:db8::70", source="2001:db8::1")) == "good 2001:db8::70\n"
    assert _text(api.get(f"hostname={ALIAS}&myip=203.0.113.70")).startswith("nochg")
    assert _text(api.get(f"hostname={HOST}&myip=203.0.113.70")).startswith("nochg")
    resp = api.get(f"hostname={HOST}&myip=203.0.113.71")
    assert (resp.status_code, _text(resp)) == (429, "abuse\n")
    assert int(resp.headers["Retry-After"]) >= 1
    assert api.state()["ipv4"] == "203.0.113.70"
    # the limit is per account
    assert _text(api.get(f"hostname={OTHER}&myip=203.0.113.72", auth=(OTHER, OTHER_PW))) == "good 203.0.113.72\n"


def test_limits_are_shared_by_processes_through_redis(make_api: Callable[..., Api]) -> None:
    a = make_api(update_account_burst="2", update_account_rate="0.01")
    b = make_api(update_account_burst="2", update_account_rate="0.01")  # a second app, same Redis
    assert _text(a.get(f"hostname={HOST}&myip=203.0.113.73")).startswith("good")
    assert _text(b.get(f"hostname={HOST}&myip=203.0.113.73")).startswith("nochg")
    assert _text(a.get(f"hostname={HOST}&myip=203.0.113.73")) == "abuse\n"


def test_oversized_requests_are_refused_and_change_nothing(api: Api) -> None:
    resp = api.get(f"hostname={HOST}&myip=203.0.113.80&pad=" + "x" * 9000)
    assert resp.status_code == 414 and "too large" in _text(resp)
    resp = api.get(method="POST", data={"hostname": HOST, "myip": "203.0.113.80", "pad": "x" * 9000})
    assert resp.status_code == 413 and "too large" in _text(resp)
    assert api.alive_ms() < 0 and not api.state().get("ipv4")


# --- agents, errors -----------------------------------------------------------------------------------


def test_no_user_agent_is_fine_blocked_agents_get_badagent(make_api: Callable[..., Api]) -> None:
    api = make_api(update_blocked_agents="BrokenClient/0.1, evil")
    resp = api.client.get(
        f"/nic/update?hostname={HOST}&myip=203.0.113.90",
        headers=_basic(HOST, PW),
        environ_base={"REMOTE_ADDR": CLIENT, "HTTP_USER_AGENT": ""},
    )
    assert _text(resp) == "good 203.0.113.90\n"
    resp = api.get(f"hostname={HOST}&myip=203.0.113.91", headers={"User-Agent": "brokenclient/0.1 (linux)"})
    assert (resp.status_code, _text(resp)) == (400, "badagent\n")
    assert api.state()["ipv4"] == "203.0.113.90"


@pytest.mark.parametrize("method", ["PUT", "DELETE", "HEAD"])
def test_other_methods_are_badagent_and_change_nothing(api: Api, method: str) -> None:
    resp = api.get(f"hostname={HOST}&myip=203.0.113.92", method=method)
    assert resp.status_code == 405 and resp.headers["Allow"] == "GET, POST"
    if method != "HEAD":
        assert _text(resp) == "badagent\n"
    assert api.alive_ms() < 0


def test_redis_down_is_dnserr(settings: config.Settings) -> None:
    dead = connect(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=0.5)
    client = create_app(UpdateService(settings, dead, Purger([], ""))).test_client()
    resp = client.get(f"/nic/update?hostname={HOST}&myip=203.0.113.93", headers=_basic(HOST, PW))
    assert (resp.status_code, _text(resp)) == (503, "dnserr\n")
    assert resp.headers["Retry-After"]


def test_unknown_plan_is_911(fake_redis: redis.Redis) -> None:
    custom = config.load({"HBDNS_PLANS": '{"gone": {"kind": "expiry", "interval": 60, "misses": 1, "ttl": 60}}'})
    store = Store(fake_redis, custom)
    store.add_zone(Zone(apex=ZONE, ns=("ns1.example.net",), hostmaster="hm.example.net", neutral_ipv4="192.0.2.1"))
    store.add_account(store.new_account(HOST, "gone", password=PW))
    service = UpdateService(config.load({}), fake_redis, Purger([], ""))  # the plan was removed from the config
    client = create_app(service).test_client()
    resp = client.get(f"/nic/update?hostname={HOST}&myip=203.0.113.94", headers=_basic(HOST, PW))
    assert (resp.status_code, _text(resp)) == (500, "911\n")


def test_unknown_path_is_plain_404(api: Api) -> None:
    resp = api.get(path="/admin")
    assert resp.status_code == 404 and resp.mimetype == "text/plain"


def test_checkip_classic_format(api: Api) -> None:
    resp = api.get(path="/nic/checkip", auth=None, source="198.51.100.77")
    assert resp.status_code == 200 and resp.mimetype == "text/html"
    assert resp.get_data(as_text=True) == (
        "<html><head><title>Current IP Check</title></head><body>Current IP Address: 198.51.100.77</body></html>"
    )


def test_secrets_are_never_logged(api: Api, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    api.get(f"hostname={HOST}&myip=203.0.113.95")
    api.get(f"hostname={HOST}&myip=203.0.113.96", auth=(HOST, "wrong-Geheimnis"))
    api.get(f"hostname={HOST}&username={HOST}&password=query-Geheimnis", auth=None)
    api.get(f"hostname=bad_name&myip=1.2.3.4,5.6.7.8&username={HOST}&password=query-Geheimnis", auth=None)
    assert caplog.records, "updates should be logged"
    for rec in caplog.records:
        text = " ".join([rec.getMessage(), *(str(v) for v in rec.__dict__.values())])
        for secret in (PW, "wrong-Geheimnis", "query-Geheimnis", base64.b64encode(f"{HOST}:{PW}".encode()).decode()):
            assert secret not in text
