"""The CLI and the admin API share one validation and one store layer: the same bad input gets the
same refusal, word for word, from both, and neither writes anything when it refuses. One row per
bad-input class of the CLI (``test_cli.py``), plus the account and zone fields only the shared
layer checks."""

from __future__ import annotations

from typing import Any

import pytest
import redis

from admin.cli.main import main as cli
from hbdns.tokens import Scope
from tests.support.admin_api import ApiClient, snapshot

ZONE = "dyn.example.net"
LONG = ("a" * 60 + ".") * 4 + ZONE

# (CLI arguments, API method, path, body, HTTP status)
CASES: list[tuple[list[str], str, str, Any, int]] = [
    (["account", "add", f"bad_host.{ZONE}", "--plan", "heartbeat-c"], "POST", "/api/v1/accounts",
     {"fqdn": f"bad_host.{ZONE}", "plan": "heartbeat-c"}, 422),
    (["account", "add", LONG, "--plan", "heartbeat-c"], "POST", "/api/v1/accounts",
     {"fqdn": LONG, "plan": "heartbeat-c"}, 422),
    (["account", "add", "x.elsewhere.org", "--plan", "heartbeat-c"], "POST", "/api/v1/accounts",
     {"fqdn": "x.elsewhere.org", "plan": "heartbeat-c"}, 422),
    (["account", "add", f"y.{ZONE}", "--plan", "heartbeat-z"], "POST", "/api/v1/accounts",
     {"fqdn": f"y.{ZONE}", "plan": "heartbeat-z"}, 422),
    (["account", "add", f"y.{ZONE}", "--plan", "heartbeat-c", "--neutral-ipv4", "10.1"], "POST", "/api/v1/accounts",
     {"fqdn": f"y.{ZONE}", "plan": "heartbeat-c", "neutral_ipv4": "10.1"}, 422),
    (["account", "add", f"y.{ZONE}", "--plan", "heartbeat-c", "--neutral-ipv6", "2001:db8::g"], "POST",
     "/api/v1/accounts", {"fqdn": f"y.{ZONE}", "plan": "heartbeat-c", "neutral_ipv6": "2001:db8::g"}, 422),
    (["account", "add", f"y.{ZONE}", "--plan", "heartbeat-c", "--email", "ops@"], "POST", "/api/v1/accounts",
     {"fqdn": f"y.{ZONE}", "plan": "heartbeat-c", "emails": ["ops@"]}, 422),
    (["account", "add", f"y.{ZONE}", "--plan", "heartbeat-c", "--phone", "0151 1234567"], "POST", "/api/v1/accounts",
     {"fqdn": f"y.{ZONE}", "plan": "heartbeat-c", "phones": ["0151 1234567"]}, 422),
    (["account", "add", f"y.{ZONE}", "--plan", "heartbeat-c", "--webhook", "ftp://x"], "POST", "/api/v1/accounts",
     {"fqdn": f"y.{ZONE}", "plan": "heartbeat-c", "webhook": "ftp://x"}, 422),
    (["account", "add", f"y.{ZONE}", "--plan", "heartbeat-c", "--password", "short"], "POST", "/api/v1/accounts",
     {"fqdn": f"y.{ZONE}", "plan": "heartbeat-c", "password": "short"}, 422),
    (["account", "add", f"home.{ZONE}", "--plan", "heartbeat-c"], "POST", "/api/v1/accounts",
     {"fqdn": f"home.{ZONE}", "plan": "heartbeat-c"}, 409),
    (["account", "add", f"y.{ZONE}", "--plan", "heartbeat-c", "--alias", f"home.{ZONE}"], "POST", "/api/v1/accounts",
     {"fqdn": f"y.{ZONE}", "plan": "heartbeat-c", "aliases": [f"home.{ZONE}"]}, 409),
    (["account", "add", f"y.{ZONE}", "--plan", "heartbeat-c", "--alias", "y.elsewhere.org"], "POST", "/api/v1/accounts",
     {"fqdn": f"y.{ZONE}", "plan": "heartbeat-c", "aliases": ["y.elsewhere.org"]}, 422),
    (["account", "add", f"y.{ZONE}", "--plan", "heartbeat-c", "--quiet-hours", "late"], "POST", "/api/v1/accounts",
     {"fqdn": f"y.{ZONE}", "plan": "heartbeat-c", "prefs": {"quiet_hours": "late"}}, 422),
    (["account", "add", f"y.{ZONE}", "--plan", "heartbeat-c", "--tz", "Mars/Base"], "POST", "/api/v1/accounts",
     {"fqdn": f"y.{ZONE}", "plan": "heartbeat-c", "prefs": {"tz": "Mars/Base"}}, 422),
    (["account", "add", f"y.{ZONE}", "--plan", "heartbeat-c", "--sms-min-outage", "-5"], "POST", "/api/v1/accounts",
     {"fqdn": f"y.{ZONE}", "plan": "heartbeat-c", "prefs": {"sms_min_outage": -5}}, 422),
    (["account", "add", f"y.{ZONE}", "--plan", "heartbeat-c", "--lang", "fr"], "POST", "/api/v1/accounts",
     {"fqdn": f"y.{ZONE}", "plan": "heartbeat-c", "prefs": {"lang": "fr"}}, 422),
    (["account", "set", f"home.{ZONE}", "--lang", "DE"], "PATCH", f"/api/v1/accounts/home.{ZONE}",
     {"prefs": {"lang": "DE"}}, 422),
    (["zone", "add", "z.example.net", "--lang", "english"], "POST", "/api/v1/zones",
     {"apex": "z.example.net", "lang": "english"}, 422),
    (["zone", "set", ZONE, "--lang", "fr"], "PATCH", f"/api/v1/zones/{ZONE}", {"lang": "fr"}, 422),
    (["account", "set", f"home.{ZONE}", "--plan", "heartbeat-z"], "PATCH", f"/api/v1/accounts/home.{ZONE}",
     {"plan": "heartbeat-z"}, 422),
    (["account", "set", f"home.{ZONE}", "--alias", f"home.{ZONE}"], "PATCH", f"/api/v1/accounts/home.{ZONE}",
     {"aliases": [f"home.{ZONE}"]}, 422),
    (["account", "set", f"home.{ZONE}", "--email", "a@b"], "PATCH", f"/api/v1/accounts/home.{ZONE}",
     {"emails": ["a@b"]}, 422),
    (["account", "set", "nobody", "--mx"], "PATCH", "/api/v1/accounts/nobody", {"mx": True}, 404),
    (["account", "remove", "nobody"], "DELETE", "/api/v1/accounts/nobody", None, 404),
    (["account", "set-password", f"home.{ZONE}", "--password", "short"], "PUT",
     f"/api/v1/accounts/home.{ZONE}/password", {"password": "short"}, 422),
    (["zone", "add", ZONE], "POST", "/api/v1/zones", {"apex": ZONE}, 409),
    (["zone", "add", "bad..zone"], "POST", "/api/v1/zones", {"apex": "bad..zone"}, 422),
    (["zone", "add", "z.example.net", "--neutral-ipv4", "300.1.1.1"], "POST", "/api/v1/zones",
     {"apex": "z.example.net", "neutral_ipv4": "300.1.1.1"}, 422),
    (["zone", "add", "z.example.net", "--record", "mx A 300.1.1.1"], "POST", "/api/v1/zones",
     {"apex": "z.example.net", "records": [{"name": "mx", "type": "A", "content": "300.1.1.1"}]}, 422),
    (["zone", "add", "z.example.net", "--record", "mx.other.org. A 192.0.2.1"], "POST", "/api/v1/zones",
     {"apex": "z.example.net", "records": [{"name": "mx.other.org.", "type": "A", "content": "192.0.2.1"}]}, 422),
    (["zone", "add", "z.example.net", "--record", "x PTR y"], "POST", "/api/v1/zones",
     {"apex": "z.example.net", "records": [{"name": "x", "type": "PTR", "content": "y"}]}, 422),
    (["zone", "set", ZONE, "--backup-mx", "bad_mx"], "PATCH", f"/api/v1/zones/{ZONE}", {"backup_mx": "bad_mx"}, 422),
    (["zone", "set", "nozone.example.net", "--allow-private-addresses"], "PATCH", "/api/v1/zones/nozone.example.net",
     {"allow_private": True}, 404),
    (["zone", "remove", ZONE], "DELETE", f"/api/v1/zones/{ZONE}", None, 409),
]  # fmt: skip


@pytest.mark.parametrize(("argv", "method", "path", "body", "status"), CASES, ids=[" ".join(c[0][:3]) for c in CASES])
def test_same_refusal_from_cli_and_api_and_nothing_written(
    real_redis: redis.Redis, capsys: pytest.CaptureFixture[str], api: ApiClient, argv: list[str], method: str,
    path: str, body: Any, status: int,
) -> None:  # fmt: skip
    assert cli(["zone", "add", ZONE], redis_client=real_redis) == 0
    assert cli(["account", "add", f"home.{ZONE}", "--plan", "heartbeat-c"], redis_client=real_redis) == 0
    token = api.token(Scope("admin"))
    capsys.readouterr()
    before = snapshot(real_redis)

    assert cli(argv, redis_client=real_redis) == 2
    err = capsys.readouterr().err
    assert err.startswith("hbdns: ") and err.count("\n") == 1
    assert snapshot(real_redis) == before

    got, problem, _ = api.call(method, path, token, body)
    assert got == status, problem
    assert snapshot(real_redis) == before
    reasons = [problem["detail"], *(e["detail"] for e in problem.get("errors", []))]
    assert err == f"hbdns: {problem['detail']}\n", reasons
