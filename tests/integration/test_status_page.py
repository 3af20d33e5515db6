"""The customer status page through its real Flask app on a real Redis: logins (password, token
link), sessions and their cookies, CSRF, the shared failed-login limits, the page's content in
English and German, the state poll, preferences, a new key, the badge, and what never shows."""

from __future__ import annotations

import base64
import html
import json
import logging
import re
from typing import Any

import pytest
import redis
from flask.testing import FlaskClient

from hbdns import config, keys
from hbdns.liveness import BeatRequest
from hbdns.model import Account, Zone
from hbdns.store import Store
from hbdns.tokens import Scope, Tokens
from tests.support.admin_api import snapshot
from update_api.parsing import UpdateRequest
from update_api.status.app import create_app
from update_api.status.service import StatusService

ZONE = "dyn.example.net"
BASE = "https://status.example.net"
PASSWORD = "home-password-1"


class Page:
    """A browser of one: cookies kept, every request over https (the cookies are Secure)."""

    def __init__(self, client: FlaskClient, lang: str = "en") -> None:
        self.client = client
        self.lang = lang

    def get(self, path: str) -> Any:
        return self.client.get(path, base_url=BASE, headers={"Accept-Language": self.lang})

    def post(self, path: str, data: dict[str, str]) -> Any:
        return self.client.post(path, data=data, base_url=BASE, headers={"Accept-Language": self.lang})

    def csrf(self, path: str = "/account") -> str:
        m = re.search(r'name="csrf" value="([^"]*)"', self.get(path).get_data(as_text=True))
        assert m, path
        return m.group(1)

    def login(self, name: str, password: str) -> Any:
        return self.post("/login", {"csrf": self.csrf("/login"), "name": name, "password": password})


@pytest.fixture
def make_page(real_redis: redis.Redis) -> Any:
    def make(env: dict[str, str] | None = None, lang: str = "en") -> Page:
        app = create_app(StatusService(config.load(env or {}), real_redis))
        return Page(app.test_client(), lang)

    return make


@pytest.fixture
def home(store: Store) -> Account:
    store.add_zone(Zone(ZONE, ("ns1.example.net",), "hostmaster.example.net", "192.0.2.1"))
    return store.add_account(
        store.new_account(
            f"home.{ZONE}",
            "heartbeat-c",
            password=PASSWORD,
            emails=["me@example.org"],
            webhook="https://h.example/s3cr3t",
        )
    )


def text_of(resp: Any) -> str:
    return html.unescape(re.sub(r"<[^>]+>", " ", resp.get_data(as_text=True)))


def beat(store: Store, account: Account, ip: str) -> None:
    store.liveness.beat(BeatRequest(account.id, account.zone, 15_000, ipv4=ip))


# --- logins and sessions -----------------------------------------------------------------------------


def test_login_sets_secure_httponly_samesite_cookies_and_stores_only_a_digest(make_page, home, real_redis) -> None:
    page = make_page()
    login_page = page.get("/login")
    assert login_page.status_code == 200
    assert "__Host-hbdns-login=" in login_page.headers["Set-Cookie"]
    resp = page.login(home.fqdn, PASSWORD)
    assert resp.status_code == 303 and resp.headers["Location"] == "/account"
    cookie = resp.headers["Set-Cookie"]
    for flag in ("__Host-hbdns-session=", "Secure", "HttpOnly", "SameSite=Lax", "Path=/"):
        assert flag in cookie, flag
    value = cookie.split(";")[0].split("=", 1)[1]
    dump = json.dumps(snapshot(real_redis))
    assert value not in dump and real_redis.keys("hbdns:session:*")
    assert page.get("/account").status_code == 200


def test_wrong_password_is_refused_without_a_session(make_page, home, real_redis) -> None:
    page = make_page()
    resp = page.login(home.fqdn, "not-the-password")
    assert resp.status_code == 401 and "Wrong account name or password." in text_of(resp)
    assert "hbdns-session" not in resp.headers.get("Set-Cookie", "")
    assert page.get("/account").status_code == 302  # back to the login page
    assert page.login("nobody.example.net", PASSWORD).status_code == 401  # same answer for no account
    assert real_redis.keys("hbdns:session:*") == []


def test_a_login_without_its_csrf_token_is_refused_before_any_check(make_page, home, real_redis) -> None:
    page = make_page()
    page.get("/login")
    before = snapshot(real_redis)
    resp = page.post("/login", {"csrf": "forged", "name": home.fqdn, "password": PASSWORD})
    assert resp.status_code == 400 and snapshot(real_redis) == before
    other = make_page()  # a cross-site form: no login cookie at all
    assert other.post("/login", {"csrf": "", "name": home.fqdn, "password": PASSWORD}).status_code == 400


def test_failed_logins_share_the_update_apis_limits(make_page, home, real_redis) -> None:
    env = {"HBDNS_UPDATE_AUTHFAIL_BURST": "2", "HBDNS_UPDATE_AUTHFAIL_RATE": "1"}
    page = make_page(env)
    assert [page.login(home.fqdn, "wrong-password").status_code for _ in range(3)] == [401, 401, 429]
    resp = page.login(home.fqdn, PASSWORD)  # even the right password waits now
    assert resp.status_code == 429 and int(resp.headers["Retry-After"]) >= 1
    assert "Too many failed logins" in text_of(resp)
    # the update API (same source, same account) is held by the same bucket
    updates = StatusService(config.load(env), real_redis).updates
    reply = updates.authenticate(UpdateRequest(params={}, username=home.fqdn, password=PASSWORD, source="127.0.0.1"))
    assert not isinstance(reply, tuple) and reply.lines == ("abuse",)


def test_a_new_password_ends_password_sessions_and_logout_ends_one(make_page, home, store, real_redis) -> None:
    page = make_page()
    assert page.login(home.fqdn, PASSWORD).status_code == 303
    assert page.get("/account").status_code == 200
    store.set_password(home, "another-password")
    assert page.get("/account").status_code == 302 and real_redis.keys("hbdns:session:*") == []
    assert page.login(home.fqdn, "another-password").status_code == 303
    resp = page.post("/logout", {"csrf": page.csrf()})
    assert resp.status_code == 303 and real_redis.keys("hbdns:session:*") == []
    assert page.get("/account").status_code == 302


def test_token_link_login_and_revocation(make_page, home, store, real_redis) -> None:
    tokens = Tokens(real_redis)
    token, text = tokens.add(Scope("account", zone=ZONE, fqdn=home.fqdn, account_id=home.id))
    page = make_page()
    login = page.get("/login")
    assert "login.js" in login.get_data(as_text=True)
    csrf = page.csrf("/login")
    assert page.post("/login/token", {"csrf": csrf, "token": text + "x"}).status_code == 401
    resp = page.post("/login/token", {"csrf": csrf, "token": text})
    assert resp.status_code == 303 and page.get("/account").status_code == 200
    tokens.revoke(token.id)
    assert page.get("/account").status_code == 302
    # a zone or admin token is no login: the page shows one account
    _, zone_text = tokens.add(Scope("zone", zone=ZONE))
    assert page.post("/login/token", {"csrf": page.csrf("/login"), "token": zone_text}).status_code == 401


# --- the page ------------------------------------------------------------------------------------------


def test_page_shows_state_history_and_availability(make_page, home, store) -> None:
    beat(store, home, "203.0.113.10")
    store.liveness.beat(BeatRequest(home.id, ZONE, 15_000, offline=True))
    beat(store, home, "203.0.113.11")
    page = make_page()
    page.login(home.fqdn, PASSWORD)
    resp = page.get("/account")
    body, text = resp.get_data(as_text=True), text_of(resp)
    assert re.search(r'id="state">LIVE<', body) and "203.0.113.11" in text and "heartbeat-c, every 5 s" in text
    assert "client went offline" in text  # the outage, with its cause
    assert "203.0.113.10" in text and "(current)" in text  # the address change and how long it is held
    assert body.count('<svg class="strip"') == 2 and body.count("<rect") == 168 + 120
    assert "Last 7 days" in text and "Last 30 days" in text and "% live" in text
    assert "me@example.org" in text and "webhook h.example" in text and "s3cr3t" not in body
    assert home.hb_key.hex() not in body and PASSWORD not in body


def test_page_in_german(make_page, home, store) -> None:
    beat(store, home, "203.0.113.10")
    page = make_page(lang="de-DE,de;q=0.9,en;q=0.5")
    page.login(home.fqdn, PASSWORD)
    resp = page.get("/account")
    text = text_of(resp)
    assert resp.headers["Vary"].startswith("Accept-Language")
    for word in ("Verfügbarkeit", "Letzte 7 Tage", "Ausfälle", "Benachrichtigungen", "Ruhezeit (keine SMS)", "seit"):
        assert word in text, word
    assert '<html lang="de">' in resp.get_data(as_text=True)


def test_state_poll_follows_the_account(make_page, home, store, real_redis) -> None:
    page = make_page()
    page.login(home.fqdn, PASSWORD)
    state = page.get("/account/state.json").get_json()
    assert state["live"] is False and state["label"] == "NEUTRAL" and state["ipv4"] == "\u2013"
    beat(store, home, "203.0.113.12")
    state = page.get("/account/state.json").get_json()
    assert state["live"] is True and state["ipv4"] == "203.0.113.12" and state["css"] == "live"
    real_redis.delete(keys.alive(home.id))  # the beats stopped: DNS answers neutral at once
    assert page.get("/account/state.json").get_json()["live"] is False
    assert make_page().get("/account/state.json").status_code == 401


def test_change_preferences(make_page, home, store, real_redis) -> None:
    page = make_page()
    page.login(home.fqdn, PASSWORD)
    form = {
        "csrf": page.csrf(),
        "email": "all",
        "sms": "outages",
        "webhook": "none",
        "sms_min_outage": "300",
        "quiet_from": "22:30",
        "quiet_to": "06:45",
        "tz": "Europe/Berlin",
    }
    resp = page.post("/account/prefs", form)
    assert resp.status_code == 303 and "done=prefs" in resp.headers["Location"]
    prefs = store.resolve(home.fqdn).prefs
    assert (prefs.email, prefs.webhook, prefs.sms_min_outage) == ("all", "none", 300)
    assert (prefs.quiet_hours, prefs.tz) == ("22:30-06:45", "Europe/Berlin")
    text = text_of(page.get("/account?done=prefs"))
    assert "Saved." in text and "Quiet hours: 22:30-06:45 (Europe/Berlin)." in text
    before = snapshot(real_redis)
    for bad in ({"tz": "Mars/Base"}, {"quiet_to": ""}, {"sms_min_outage": "-1"}, {"email": "loud"}):
        resp = page.post("/account/prefs", {**form, "csrf": page.csrf(), **bad})
        assert resp.status_code == 422 and "Not saved" in text_of(resp), bad
    assert page.post("/account/prefs", {**form, "csrf": "forged", "tz": "UTC"}).status_code == 400
    assert snapshot(real_redis) == before


def test_new_key_is_shown_once_with_a_client_config(make_page, home, store) -> None:
    page = make_page()
    page.login(home.fqdn, PASSWORD)
    resp = page.post("/account/rotate-key", {"csrf": page.csrf()})
    assert resp.status_code == 200 and resp.headers["Cache-Control"] == "no-store"
    new = store.resolve(home.fqdn)
    body = resp.get_data(as_text=True)
    assert new.hb_key != home.hb_key and new.hb_key.hex() in body
    encoded = re.search(r'href="data:text/plain;charset=utf-8;base64,([^"]+)"', body).group(1)  # type: ignore[union-attr]
    config_text = base64.b64decode(encoded).decode()
    assert f"key = {new.hb_key.hex()}" in config_text and f"account_id = {new.id}" in config_text
    assert new.hb_key.hex() not in page.get("/account").get_data(as_text=True)
    assert page.post("/account/rotate-key", {"csrf": "forged"}).status_code == 400
    assert store.resolve(home.fqdn).hb_key == new.hb_key


def test_badge_is_off_until_turned_on_and_a_new_url_each_time(make_page, home, store, real_redis) -> None:
    page = make_page()
    page.login(home.fqdn, PASSWORD)
    assert "Turn the badge on" in text_of(page.get("/account"))  # accounts without the field: off
    page.post("/account/badge", {"csrf": page.csrf(), "on": "1"})
    url = re.search(r'id="badge-url">([^<]+)<', page.get("/account").get_data(as_text=True)).group(1)  # type: ignore[union-attr]
    path = url.removeprefix("http://status.example.net").removeprefix(BASE)
    assert re.fullmatch(r"/badge/[A-Za-z0-9_-]{24}\.svg", path)
    anonymous = make_page()
    resp = anonymous.get(path)
    assert resp.status_code == 200 and resp.mimetype == "image/svg+xml" and ">neutral<" in resp.get_data(as_text=True)
    beat(store, home, "203.0.113.13")
    assert ">live<" in anonymous.get(path).get_data(as_text=True)
    page.post("/account/badge", {"csrf": page.csrf(), "on": "0"})
    assert anonymous.get(path).status_code == 404
    page.post("/account/badge", {"csrf": page.csrf(), "on": "1"})
    second = re.search(r'id="badge-url">([^<]+)<', page.get("/account").get_data(as_text=True)).group(1)  # type: ignore[union-attr]
    assert second != url
    store.remove_account(home.id)  # removing the account drops its badge
    assert real_redis.hlen(keys.badges()) == 0
    assert anonymous.get("/badge/" + "x" * 24 + ".svg").status_code == 404


def test_headers_static_files_and_errors(make_page, home) -> None:
    page = make_page()
    resp = page.get("/login")
    assert "default-src 'none'" in resp.headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in resp.headers["Content-Security-Policy"]
    assert resp.headers["X-Frame-Options"] == "DENY" and resp.headers["Cache-Control"] == "no-store"
    assert page.get("/static/live.js").status_code == 200 and page.get("/static/style.css").status_code == 200
    assert page.get("/nothing").status_code == 404
    assert page.get("/").headers["Location"] == "/login"


def test_redis_down_is_a_503_page() -> None:
    from hbdns.connection import connect

    app = create_app(StatusService(config.load({}), connect("redis://127.0.0.1:1/0")))
    client = app.test_client()
    client.set_cookie("__Host-hbdns-session", "abc", domain="status.example.net")
    resp = client.get("/account", base_url=BASE)
    assert resp.status_code == 503 and resp.headers["Retry-After"] == "30"


def test_no_password_or_key_in_the_logs(make_page, home, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    page = make_page()
    page.login(home.fqdn, "wrong-password-xyz")
    page.login(home.fqdn, PASSWORD)
    page.post("/account/rotate-key", {"csrf": page.csrf()})
    logged = "\n".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
    assert "status page login" in logged and "heartbeat key rotated" in logged
    assert PASSWORD not in logged and "wrong-password-xyz" not in logged and home.hb_key.hex() not in logged
