"""The admin API through its real Flask app on a real Redis: every documented route, the OpenAPI
document, accounts, zones, pagination, dead letters, problem+json errors and refused requests that
write nothing. Tokens, scopes and limits: test_api_scopes.py."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
import redis
from openapi_spec_validator import validate as validate_spec

from hbdns import config, keys
from hbdns.liveness import BeatRequest
from hbdns.store import Store
from tests.support.admin_api import OTHER, ZONE, ApiClient, is_problem, snapshot

# --- the document and every route in it -----------------------------------------------------------


def operations(doc: dict[str, Any]) -> set[tuple[str, str]]:
    return {(method.upper(), path) for path, item in doc["paths"].items() for method in item}


def test_openapi_document_is_valid_3_1_and_public(api: ApiClient) -> None:
    status, doc, headers = api.call("GET", "/api/v1/openapi.json", None)
    assert status == 200 and headers["Content-Type"] == "application/json"
    assert doc["openapi"].startswith("3.1")
    validate_spec(doc)  # raises on any violation of the OpenAPI 3.1 schema
    assert doc["components"]["securitySchemes"]["token"] == {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "hbdns_<id>_<secret>",
    }
    create = doc["paths"]["/api/v1/accounts"]["post"]
    body_schema = doc["components"]["schemas"][
        create["requestBody"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
    ]
    assert body_schema["additionalProperties"] is False and set(body_schema["required"]) == {"fqdn", "plan"}
    problem = create["responses"]["422"]["content"]["application/problem+json"]["schema"]
    assert problem == {"$ref": "#/components/schemas/Problem"}


def test_every_documented_route_answers(api: ApiClient, world: dict[str, Any], store: Store) -> None:
    """One successful request per operation of the document; the table must name them all, and the
    app checks each answer against its documented model (validate_responses)."""
    admin = world["admin"]
    home = world["home"]
    calls: dict[tuple[str, str], Callable[[], tuple[int, Any, dict[str, str]]]] = {
        ("GET", "/api/v1/zones"): lambda: api.call("GET", "/api/v1/zones", admin),
        ("POST", "/api/v1/zones"): lambda: api.call("POST", "/api/v1/zones", admin, {"apex": "new.example.net"}),
        ("GET", "/api/v1/zones/{apex}"): lambda: api.call("GET", f"/api/v1/zones/{ZONE}", admin),
        ("PATCH", "/api/v1/zones/{apex}"): lambda: api.call(
            "PATCH", "/api/v1/zones/new.example.net", admin, {"backup_mx": "mx.example.net"}
        ),
        ("DELETE", "/api/v1/zones/{apex}"): lambda: api.call("DELETE", "/api/v1/zones/new.example.net", admin),
        ("GET", "/api/v1/accounts"): lambda: api.call("GET", "/api/v1/accounts", admin),
        ("POST", "/api/v1/accounts"): lambda: api.call(
            "POST", "/api/v1/accounts", admin, {"fqdn": f"new.{ZONE}", "plan": "setip-a"}
        ),
        ("GET", "/api/v1/accounts/{account}"): lambda: api.call("GET", f"/api/v1/accounts/{home.id}", admin),
        ("PATCH", "/api/v1/accounts/{account}"): lambda: api.call(
            "PATCH", f"/api/v1/accounts/{home.fqdn}", admin, {"mx": True}
        ),
        ("DELETE", "/api/v1/accounts/{account}"): lambda: api.call("DELETE", f"/api/v1/accounts/new.{ZONE}", admin),
        ("POST", "/api/v1/accounts/{account}/rotate-key"): lambda: api.call(
            "POST", f"/api/v1/accounts/{home.id}/rotate-key", admin
        ),
        ("PUT", "/api/v1/accounts/{account}/password"): lambda: api.call(
            "PUT", f"/api/v1/accounts/{home.id}/password", admin, {}
        ),
        ("GET", "/api/v1/accounts/{account}/events"): lambda: api.call(
            "GET", f"/api/v1/accounts/{home.id}/events", admin
        ),
        ("GET", "/api/v1/accounts/{account}/state"): lambda: api.call(
            "GET", f"/api/v1/accounts/{home.id}/state", admin
        ),
        ("GET", "/api/v1/dead-letters"): lambda: api.call("GET", "/api/v1/dead-letters", admin),
        ("POST", "/api/v1/dead-letters/retry"): lambda: api.call(
            "POST", "/api/v1/dead-letters/retry", admin, {"ids": ["no-such-letter"]}
        ),
        ("GET", "/api/v1/token"): lambda: api.call("GET", "/api/v1/token", admin),
        ("POST", "/api/v1/accounts/{account}/acme-credentials"): lambda: api.call(
            "POST", f"/api/v1/accounts/{home.id}/acme-credentials", admin, {}
        ),
        ("GET", "/api/v1/accounts/{account}/acme-credentials"): lambda: api.call(
            "GET", f"/api/v1/accounts/{home.id}/acme-credentials", admin
        ),
        ("DELETE", "/api/v1/accounts/{account}/acme-credentials/{name}"): lambda: api.call(
            "DELETE", f"/api/v1/accounts/{home.id}/acme-credentials/{home.fqdn}", admin
        ),
    }
    _, doc, _ = api.call("GET", "/api/v1/openapi.json", None)
    assert set(calls) == operations(doc)
    creates = [("POST", "/api/v1/zones"), ("POST", "/api/v1/accounts")]
    order = creates + sorted(set(calls) - set(creates), key=lambda op: (op[0] == "DELETE", op))  # removals last
    for op in order:
        status, body, headers = calls[op]()
        documented = {int(s) for s in doc["paths"][op[1]][op[0].lower()]["responses"]}
        assert status in documented, (op, status, body)
        if op == ("POST", "/api/v1/dead-letters/retry"):
            assert is_problem(status, body, headers, 404)  # documented; retry itself: test_dead_letters
        else:
            assert 200 <= status < 300, (op, status, body)


# --- accounts ------------------------------------------------------------------------------------------


def test_create_returns_key_and_password_once(api: ApiClient, world: dict[str, Any], store: Store) -> None:
    status, body, headers = api.call(
        "POST",
        "/api/v1/accounts",
        world["admin"],
        {
            "fqdn": f"Shop.{ZONE}.",
            "plan": "heartbeat-b",
            "aliases": [f"mail.{ZONE}"],
            "mx": True,
            "mx_recipients": ["Alice", f"bob@mail.{ZONE}"],
            "emails": ["ops@example.org"],
            "phones": ["+4915112345678"],
            "prefs": {"sms_min_outage": 300, "quiet_hours": "22:00-07:00", "tz": "Europe/Berlin"},
        },
    )
    assert status == 201, body
    account = store.resolve(f"shop.{ZONE}")
    assert headers["Location"].endswith(f"/api/v1/accounts/{account.id}")
    assert body["fqdn"] == f"shop.{ZONE}" and body["aliases"] == [f"mail.{ZONE}"] and body["state"] == "neutral"
    assert body["heartbeat_key"] == account.hb_key.hex()
    assert body["mx_recipients"] == list(account.mx_recipients) == ["alice", f"bob@mail.{ZONE}"]
    assert f"account_id = {account.id}" in body["client_config"] and "interval = 15" in body["client_config"]
    from hbdns.passwords import verify_password

    assert verify_password(body["update_password"], account.pw_hash)
    assert account.prefs.tz == "Europe/Berlin" and account.prefs.sms_min_outage == 300
    status, shown, _ = api.call("GET", f"/api/v1/accounts/{account.id}", world["admin"])
    assert account.hb_key.hex() not in json.dumps(shown) and body["update_password"] not in json.dumps(shown)
    assert shown["has_password"] is True
    # a chosen password is never echoed
    status, body, _ = api.call(
        "POST", "/api/v1/accounts", world["admin"], {"fqdn": f"b.{ZONE}", "plan": "setip-a", "password": "chosen-one"}
    )
    assert status == 201 and body["update_password"] is None


def test_change_set_password_events_state(api: ApiClient, world: dict[str, Any], store: Store) -> None:
    admin, home = world["admin"], world["home"]
    status, body, _ = api.call(
        "PATCH",
        f"/api/v1/accounts/{home.id}",
        admin,
        {
            "plan": "setip-a",
            "aliases": [f"www.{ZONE}"],
            "neutral_ipv4": "192.0.2.9",
            "webhook": "https://hook.example/x",
        },
    )
    assert status == 200 and body["plan"] == "setip-a" and body["aliases"] == [f"www.{ZONE}"]
    assert store.account_id_for(f"www.{ZONE}") == home.id
    status, body, _ = api.call("PATCH", f"/api/v1/accounts/{home.id}", admin, {"aliases": [], "webhook": ""})
    assert body["aliases"] == [] and body["webhook"] == "" and store.account_id_for(f"www.{ZONE}") is None
    status, body, _ = api.call("PUT", f"/api/v1/accounts/{home.id}/password", admin, {"password": "a-new-password"})
    assert status == 200 and body["update_password"] is None
    from hbdns.passwords import verify_password

    assert verify_password("a-new-password", store.resolve(home.fqdn).pw_hash)
    status, body, _ = api.call("PUT", f"/api/v1/accounts/{home.id}/password", admin, {})
    assert verify_password(body["update_password"], store.resolve(home.fqdn).pw_hash)
    # state and events follow a beat
    store.liveness.beat(BeatRequest(home.id, ZONE, 60_000, ipv4="203.0.114.5"))
    status, state, _ = api.call("GET", f"/api/v1/accounts/{home.fqdn}/state", admin)
    assert state["live"] is True and state["ipv4"] == "203.0.114.5" and state["expires_in_ms"] > 0
    status, events, _ = api.call("GET", f"/api/v1/accounts/{home.id}/events?limit=2", admin)
    assert [e["type"] for e in events["items"]] == ["ip_changed", "recovered"]
    assert events["items"][0]["new"] == "203.0.114.5"


def test_list_is_filtered_by_zone_and_state_and_paginated(api: ApiClient, world: dict[str, Any], store: Store) -> None:
    admin = world["admin"]
    made = [store.add_account(store.new_account(f"h{i}.{ZONE}", "heartbeat-c")) for i in range(5)]
    for a in made[::2]:
        store.liveness.beat(BeatRequest(a.id, ZONE, 60_000, ipv4="203.0.114.7"))
    seen, url = [], f"/api/v1/accounts?zone={ZONE}&limit=2"
    while url:
        status, body, headers = api.call("GET", url, admin)
        assert status == 200 and len(body["items"]) <= 2
        seen += [a["fqdn"] for a in body["items"]]
        url = body["next"]
        assert (headers.get("Link") is not None) == (url is not None)
    assert seen == [f"home.{ZONE}"] + [a.fqdn for a in made]
    status, body, _ = api.call("GET", "/api/v1/accounts?state=live", admin)
    assert [a["fqdn"] for a in body["items"]] == [a.fqdn for a in made[::2]]
    status, body, _ = api.call("GET", f"/api/v1/accounts?state=neutral&zone={OTHER}", admin)
    assert [a["fqdn"] for a in body["items"]] == [f"away.{OTHER}"]
    status, problem, headers = api.call("GET", "/api/v1/accounts?state=dead&limit=0", admin)
    assert is_problem(status, problem, headers, 422)
    assert {e["field"] for e in problem["errors"]} == {"state", "limit"}


def test_zones_create_change_remove(api: ApiClient, world: dict[str, Any], store: Store) -> None:
    admin = world["admin"]
    status, body, _ = api.call(
        "POST",
        "/api/v1/zones",
        admin,
        {
            "apex": "lab.example.net",
            "ns": ["ns1.example.net", "ns2.example.net"],
            "records": [{"name": "mx", "type": "A", "content": "192.0.2.25"}],
        },
    )
    assert status == 201 and body["records"] == [
        {"name": "mx.lab.example.net", "type": "A", "content": "192.0.2.25", "ttl": 3600}
    ]
    assert body["neutral_ipv4"] == "192.0.2.1" and body["accounts"] == 0  # defaults from HBDNS_DEFAULT_*
    status, body, _ = api.call(
        "PATCH", "/api/v1/zones/lab.example.net", admin, {"allow_private": True, "neutral_ipv6": ""}
    )
    assert (
        body["allow_private"] is True
        and body["neutral_ipv6"] == ""
        and body["ns"] == ["ns1.example.net", "ns2.example.net"]
    )
    status, problem, _ = api.call("PATCH", "/api/v1/zones/lab.example.net", admin, {})
    assert status == 422 and problem["detail"] == "nothing to change"
    store.add_account(store.new_account("h.lab.example.net", "heartbeat-c"))
    status, problem, _ = api.call("DELETE", "/api/v1/zones/lab.example.net", admin)
    assert status == 409 and "1 account" in problem["detail"]
    assert api.call("DELETE", "/api/v1/zones/lab.example.net?force=true", admin)[0] == 204
    assert store.get_zone("lab.example.net") is None and store.account_id_for("h.lab.example.net") is None
    assert api.call("GET", "/api/v1/zones/lab.example.net", admin)[0] == 404
    assert api.call("GET", "/api/v1/zones/not_a..name", admin)[0] == 404


# --- errors: shape, statuses, nothing written ------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "fields"),
    [
        ("POST", "/api/v1/accounts", {"fqdn": f"x.{ZONE}"}, 422, {"plan"}),
        ("POST", "/api/v1/accounts", {"fqdn": f"x.{ZONE}", "plan": "heartbeat-c", "colour": "red"}, 422, {"colour"}),
        ("POST", "/api/v1/accounts", {"fqdn": f"x.{ZONE}", "plan": "heartbeat-c", "mx": "yes"}, 422, {"mx"}),
        ("POST", "/api/v1/accounts", {"fqdn": 5, "plan": "heartbeat-c"}, 422, {"fqdn"}),
        ("POST", "/api/v1/accounts", [1, 2], 422, {""}),
        (
            "POST",
            "/api/v1/accounts",
            {"fqdn": "bad_x." + ZONE, "plan": "nope", "emails": ["a@b.de", "ops@"], "prefs": {"tz": "Mars/Base"}},
            422,
            {"fqdn", "plan", "emails.1", "prefs.tz"},
        ),
        ("POST", "/api/v1/accounts", {"fqdn": f"home.{ZONE}", "plan": "heartbeat-c"}, 409, {"fqdn"}),
        (
            "POST",
            "/api/v1/accounts",
            {"fqdn": f"x.{ZONE}", "plan": "heartbeat-c", "aliases": [f"home.{ZONE}"]},
            409,
            {"aliases.0"},
        ),
        ("PATCH", "/api/v1/accounts/{home}", {"aliases": [f"away.{OTHER}"]}, 422, {"aliases.0"}),
        ("PATCH", "/api/v1/accounts/{home}", {"prefs": {"sms_min_outage": -1, "email": "loud"}}, 422, {"prefs.email"}),
        ("PATCH", "/api/v1/accounts/{home}", {"prefs": {"sms_min_outage": -1}}, 422, {"prefs.sms_min_outage"}),
        ("PUT", "/api/v1/accounts/{home}/password", {"password": "short"}, 422, {"password"}),
        ("POST", "/api/v1/zones", {"apex": ZONE}, 409, {"apex"}),
        (
            "POST",
            "/api/v1/zones",
            {"apex": "z.example.net", "records": [{"name": "x", "type": "A", "content": "300.1.1.1"}]},
            422,
            {"records.0.content"},
        ),
        (
            "POST",
            "/api/v1/zones",
            {"apex": "z.example.net", "records": [{"name": "x", "type": "PTR", "content": "a"}]},
            422,
            {"records.0.type"},
        ),
        ("DELETE", f"/api/v1/zones/{ZONE}", None, 409, set()),
        ("PATCH", "/api/v1/accounts/nobody", {"mx": True}, 404, set()),
        (
            "PATCH",
            "/api/v1/accounts/{home}",
            {"mx_recipients": ["alice", "x@elsewhere.test"]},
            422,
            {"mx_recipients.1"},
        ),
        ("POST", "/api/v1/dead-letters/retry", {"ids": []}, 422, {"ids"}),
    ],
)
def test_refused_requests_are_problems_and_write_nothing(
    api: ApiClient,
    world: dict[str, Any],
    real_redis: redis.Redis,
    method: str,
    path: str,
    body: Any,
    status: int,
    fields: set[str],
) -> None:
    before = snapshot(real_redis)
    got, problem, headers = api.call(method, path.replace("{home}", str(world["home"].id)), world["admin"], body)
    assert is_problem(got, problem, headers, status), problem
    assert {e["field"] for e in problem.get("errors", [])} == fields
    for e in problem.get("errors", []):
        assert e["detail"] and e["pointer"] == ("#/" + e["field"].replace(".", "/") if e["field"] else "#")
    assert snapshot(real_redis) == before


def test_not_json_too_large_unknown_route_wrong_method(api: ApiClient, world: dict[str, Any]) -> None:
    admin = world["admin"]
    resp = api.client.post(
        "/api/v1/accounts", data="fqdn=x", headers={"Authorization": f"Bearer {admin}", "Content-Type": "text/plain"}
    )
    assert resp.status_code == 422 and resp.get_json()["detail"] == "the request body must be a JSON object"
    resp = api.client.post(
        "/api/v1/zones",
        data=b"{" + b" " * 300_000 + b"}",
        headers={"Authorization": f"Bearer {admin}", "Content-Type": "application/json"},
    )
    assert resp.status_code == 413 and resp.content_type == "application/problem+json"
    status, body, headers = api.call("GET", "/api/v1/nothing", admin)
    assert is_problem(status, body, headers, 404)
    status, body, headers = api.call("PUT", "/api/v1/zones", admin)
    assert is_problem(status, body, headers, 405) and "POST" in headers["Allow"]


def test_redis_down_is_a_503_problem(settings: config.Settings) -> None:
    from hbdns.connection import connect

    api = ApiClient(connect("redis://127.0.0.1:1/0"), settings)
    resp = api.client.get("/api/v1/zones", headers={"Authorization": "Bearer x"})
    assert resp.status_code == 503 and resp.content_type == "application/problem+json" and resp.headers["Retry-After"]


# --- dead letters -------------------------------------------------------------------------------------


def _dead_letter(real_redis: redis.Redis, settings: config.Settings, account: Any, recipient: str) -> None:
    """A real dead letter: the notifier's dispatcher with a transport that fails for good."""
    from notifier.channel import Transport, TransportError
    from notifier.dispatch import Dispatcher
    from notifier.messages import Message
    from notifier.presence import Presence

    class Refusing(Transport):
        channel = "email"

        def notify(self, message: Message) -> None:
            raise TransportError("550 mailbox unavailable", permanent=True)

    presence = Presence(real_redis, "api-test", ttl=5)
    presence.join()
    dispatcher = Dispatcher(real_redis, {"email": Refusing()}, settings, presence=presence)
    try:
        message = Message("email", recipient, "s", "t", account.id, account.fqdn, "neutralized", f"1-{account.id}")
        assert dispatcher.send(message).status == "dead"
    finally:
        dispatcher.close()


def test_dead_letters_listed_in_scope_and_retry_all_or_nothing(
    api: ApiClient, world: dict[str, Any], real_redis: redis.Redis, settings: config.Settings
) -> None:
    _dead_letter(real_redis, settings, world["home"], "ops@example.org")
    _dead_letter(real_redis, settings, world["away"], "ops@other.org")
    status, body, _ = api.call("GET", "/api/v1/dead-letters", world["admin"])
    assert status == 200 and [d["fqdn"] for d in body["items"]] == [world["away"].fqdn, world["home"].fqdn]
    assert body["items"][0]["reason"] == "550 mailbox unavailable"
    home_letter, away_letter = body["items"][1]["id"], body["items"][0]["id"]
    status, body, _ = api.call("GET", "/api/v1/dead-letters", world["zone"])
    assert [d["id"] for d in body["items"]] == [home_letter]
    before = snapshot(real_redis)
    # another zone's letter is absent for a zone token; an unknown id refuses the whole request
    assert api.call("POST", "/api/v1/dead-letters/retry", world["zone"], {"ids": [home_letter, away_letter]})[0] == 404
    status, problem, _ = api.call("POST", "/api/v1/dead-letters/retry", world["admin"], {"ids": [home_letter, "nope"]})
    assert status == 404 and problem["detail"] == "no dead letter 'nope'"
    assert snapshot(real_redis) == before
    # the zone's own letter goes back into the notifier's queue, due at once; it is dead no more
    status, body, _ = api.call("POST", "/api/v1/dead-letters/retry", world["zone"], {"ids": [home_letter]})
    assert status == 200 and body["requeued"] == [home_letter]
    assert real_redis.zscore(keys.notify_queue(), home_letter) is not None
    status, body, _ = api.call("GET", "/api/v1/dead-letters", world["admin"])
    assert [d["id"] for d in body["items"]] == [away_letter]
