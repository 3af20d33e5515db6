"""Admin API tokens, scopes and limits through the real Flask app on a real Redis: 401 before
anything is read, revoked/expired/orphaned tokens, digest-only storage, per-token and per-source
limits, what each scope may do (403) and what it cannot see (404, as for a missing account)."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
import redis

from hbdns import config, keys
from hbdns.model import Zone
from hbdns.store import Store
from hbdns.tokens import Scope
from tests.support.admin_api import OTHER, ZONE, ApiClient, is_problem, snapshot

# --- authentication and rate limits ------------------------------------------------------------------


def test_without_or_with_a_bad_token_401_with_a_challenge(api: ApiClient, world: dict[str, Any]) -> None:
    admin = world["admin"]
    flipped = admin[:-1] + ("A" if admin[-1] != "A" else "B")
    for token in (None, "hbdns_0123456789abcdef_" + "x" * 43, "garbage", flipped):
        status, body, headers = api.call("GET", "/api/v1/zones", token)
        assert is_problem(status, body, headers, 401), token
        assert headers["WWW-Authenticate"] == 'Bearer realm="hbdns"'
    # a 401 comes before the body is even read: no 422 for an anonymous bad body
    status, body, headers = api.call("POST", "/api/v1/accounts", None, {"nonsense": 1})
    assert is_problem(status, body, headers, 401)


def test_revoked_expired_and_orphaned_tokens_stop_working(api: ApiClient, world: dict[str, Any], store: Store) -> None:
    token = world["zone"]
    assert api.call("GET", "/api/v1/zones", token)[0] == 200
    api.tokens.revoke(token.split("_")[1])
    assert api.call("GET", "/api/v1/zones", token)[0] == 401
    expiring = api.token(Scope("admin"), ttl=3600)
    assert api.call("GET", "/api/v1/zones", expiring)[0] == 200
    api.r.hset(keys.api_token(expiring.split("_")[1]), "expires", repr(time.time() - 1))  # its hour is over
    assert api.call("GET", "/api/v1/zones", expiring)[0] == 401
    # an account token dies with its account, and does not pass to a new account of the same name
    home = world["home"]
    store.remove_account(home.id)
    store.add_account(store.new_account(home.fqdn, "heartbeat-c"))
    assert api.call("GET", "/api/v1/token", world["account"])[0] == 401


def test_only_the_digest_of_a_token_is_stored(api: ApiClient, real_redis: redis.Redis) -> None:
    token = api.token(Scope("admin"), label="billing")
    secret = token.split("_", 2)[2]
    dump = json.dumps(snapshot(real_redis))
    assert secret not in dump and "billing" in dump
    status, body, _ = api.call("GET", "/api/v1/token", token)
    assert status == 200 and body["scope"] == "admin" and body["label"] == "billing" and secret not in json.dumps(body)


def test_rate_limit_per_token(real_redis: redis.Redis, world: dict[str, Any], store: Store) -> None:
    settings = config.load({"HBDNS_ADMIN_API_RATE": "1", "HBDNS_ADMIN_API_BURST": "3"})
    api = ApiClient(real_redis, settings)
    statuses = [api.call("GET", "/api/v1/token", world["zone"])[0] for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    status, body, headers = api.call("GET", "/api/v1/token", world["zone"])
    assert is_problem(status, body, headers, 429) and int(headers["Retry-After"]) >= 1
    assert api.call("GET", "/api/v1/token", world["admin"])[0] == 200  # another token has its own bucket


def test_wrong_tokens_are_limited_per_source(real_redis: redis.Redis, world: dict[str, Any]) -> None:
    settings = config.load({"HBDNS_ADMIN_API_AUTHFAIL_RATE": "1", "HBDNS_ADMIN_API_AUTHFAIL_BURST": "2"})
    api = ApiClient(real_redis, settings)
    bad = "hbdns_0123456789abcdef_" + "y" * 43
    assert [api.call("GET", "/api/v1/zones", bad)[0] for _ in range(3)] == [401, 401, 429]
    # the source is held: even a good token waits (a guesser cannot interleave real requests)
    status, body, headers = api.call("GET", "/api/v1/zones", world["admin"])
    assert is_problem(status, body, headers, 429) and "Retry-After" in headers


# --- scopes --------------------------------------------------------------------------------------------


def test_account_token_reads_its_account_changes_prefs_rotates_its_key(api: ApiClient, world: dict[str, Any]) -> None:
    token, home = world["account"], world["home"]
    for path in (
        f"/api/v1/accounts/{home.id}",
        f"/api/v1/accounts/{home.fqdn}/state",
        f"/api/v1/accounts/{home.id}/events",
    ):
        assert api.call("GET", path, token)[0] == 200, path
    status, body, _ = api.call("GET", "/api/v1/accounts", token)
    assert status == 200 and [a["fqdn"] for a in body["items"]] == [home.fqdn]
    status, body, _ = api.call("PATCH", f"/api/v1/accounts/{home.id}", token, {"prefs": {"quiet_hours": "22:00-07:00"}})
    assert status == 200 and body["prefs"]["quiet_hours"] == "22:00-07:00"
    status, body, _ = api.call("POST", f"/api/v1/accounts/{home.id}/rotate-key", token)
    assert status == 200 and len(bytes.fromhex(body["heartbeat_key"])) == 32
    assert f"key = {body['heartbeat_key']}" in body["client_config"]


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/api/v1/zones", None),
        ("POST", "/api/v1/zones", {"apex": "x.example.net"}),
        ("GET", f"/api/v1/zones/{ZONE}", None),
        ("DELETE", f"/api/v1/zones/{ZONE}", None),
        ("POST", "/api/v1/accounts", {"fqdn": f"x.{ZONE}", "plan": "heartbeat-c"}),
        ("DELETE", "/api/v1/accounts/{home}", None),
        ("PUT", "/api/v1/accounts/{home}/password", {}),
        ("PATCH", "/api/v1/accounts/{home}", {"mx": True}),
        ("PATCH", "/api/v1/accounts/{home}", {"plan": "setip-a", "prefs": {"sms": "none"}}),
        ("GET", "/api/v1/dead-letters", None),
        ("POST", "/api/v1/dead-letters/retry", {"ids": ["x"]}),
    ],
)
def test_account_token_is_refused_what_its_scope_does_not_allow(
    api: ApiClient, world: dict[str, Any], real_redis: redis.Redis, method: str, path: str, body: Any
) -> None:
    before = snapshot(real_redis)
    status, problem, headers = api.call(method, path.replace("{home}", str(world["home"].id)), world["account"], body)
    assert is_problem(status, problem, headers, 403), problem
    assert "account:home.dyn.example.net" in problem["detail"]
    assert snapshot(real_redis) == before


@pytest.mark.parametrize("kind", ["account", "zone"])
def test_another_account_is_absent_not_forbidden(api: ApiClient, world: dict[str, Any], kind: str) -> None:
    """For a token outside its scope another zone's account answers exactly like no account at all."""
    token, away = world[kind], world["away"]
    for ref in (str(away.id), away.fqdn):
        for method, suffix, body in (
            ("GET", "", None),
            ("GET", "/state", None),
            ("GET", "/events", None),
            ("PATCH", "", {"prefs": {"sms": "none"}}),
            ("POST", "/rotate-key", None),
        ):
            status, problem, headers = api.call(method, f"/api/v1/accounts/{ref}{suffix}", token, body)
            missing = api.call(method, f"/api/v1/accounts/nobody.{ZONE}{suffix}", token, body)
            assert is_problem(status, problem, headers, 404), (ref, suffix)
            assert problem == {**missing[1], "detail": problem["detail"]} and problem["detail"] == f"no account {ref!r}"


def test_zone_token_manages_only_its_zone(api: ApiClient, world: dict[str, Any], store: Store) -> None:
    token = world["zone"]
    status, body, _ = api.call("GET", "/api/v1/zones", token)
    assert [z["apex"] for z in body["items"]] == [ZONE]
    assert api.call("GET", f"/api/v1/zones/{ZONE}", token)[0] == 200
    status, problem, _ = api.call("GET", f"/api/v1/zones/{OTHER}", token)
    assert status == 404 and problem["detail"] == f"no zone {OTHER}"
    assert api.call("PATCH", f"/api/v1/zones/{ZONE}", token, {"backup_mx": ""})[0] == 403  # zones are the admin's
    # accounts: its zone's, never another's
    status, body, _ = api.call("GET", "/api/v1/accounts", token)
    assert [a["fqdn"] for a in body["items"]] == [f"home.{ZONE}"]
    assert api.call("GET", f"/api/v1/accounts?zone={OTHER}", token)[0] == 404
    status, body, _ = api.call("POST", "/api/v1/accounts", token, {"fqdn": f"new.{ZONE}", "plan": "heartbeat-c"})
    assert status == 201 and body["zone"] == ZONE
    status, problem, _ = api.call("POST", "/api/v1/accounts", token, {"fqdn": f"new.{OTHER}", "plan": "heartbeat-c"})
    assert status == 403 and store.account_id_for(f"new.{OTHER}") is None
    # a name in no zone at all gets the same 403: a zone token learns nothing about other zones
    assert api.call("POST", "/api/v1/accounts", token, {"fqdn": "x.nowhere.example", "plan": "heartbeat-c"})[0] == 403
    assert api.call("DELETE", f"/api/v1/accounts/new.{ZONE}", token)[0] == 204
    assert api.call("DELETE", f"/api/v1/accounts/{world['away'].id}", token)[0] == 404
    assert store.get_account(world["away"].id) is not None


def test_a_sub_zone_is_not_the_parent_zone_tokens(api: ApiClient, world: dict[str, Any], store: Store) -> None:
    store.add_zone(Zone(f"sub.{ZONE}", ("ns1.example.net",), "hostmaster.example.net", "192.0.2.1"))
    status, _, _ = api.call("POST", "/api/v1/accounts", world["zone"], {"fqdn": f"h.sub.{ZONE}", "plan": "heartbeat-c"})
    assert status == 403
