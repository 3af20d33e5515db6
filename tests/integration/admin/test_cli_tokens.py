"""``hbdns token``: made once, listed without secrets, revoked; bad scopes refused and nothing written."""

from __future__ import annotations

import json

import pytest
import redis

from hbdns import keys
from hbdns.tokens import Tokens
from tests.integration.test_cli import run
from tests.support.admin_api import snapshot

ZONE = "dyn.example.net"


@pytest.fixture
def zone(real_redis: redis.Redis, capsys: pytest.CaptureFixture[str]) -> str:
    assert run(real_redis, capsys, "zone", "add", ZONE)[0] == 0
    assert run(real_redis, capsys, "account", "add", f"home.{ZONE}", "--plan", "heartbeat-c")[0] == 0
    return ZONE


def test_add_shows_the_token_once_list_and_revoke(real_redis, capsys, zone) -> None:
    code, out, _ = run(real_redis, capsys, "--json", "token", "add", "--scope", f"zone:{ZONE}", "--label", "reseller")
    assert code == 0
    made = json.loads(out)
    text = made["token"]
    assert text.startswith(f"hbdns_{made['id']}_") and made["scope"] == f"zone:{ZONE}"
    assert Tokens(real_redis).check(text) is not None
    secret = text.split("_", 2)[2]
    assert secret not in json.dumps(snapshot(real_redis))  # only its digest is stored
    code, out, _ = run(real_redis, capsys, "token", "list")
    assert code == 0 and made["id"] in out and f"zone:{ZONE}" in out and "reseller" in out and secret not in out
    code, out, _ = run(real_redis, capsys, "token", "revoke", made["id"])
    assert code == 0 and Tokens(real_redis).check(text) is None
    assert real_redis.exists(keys.api_token(made["id"])) == 0


def test_account_token_prints_the_status_page_link(real_redis, capsys, zone, monkeypatch) -> None:
    monkeypatch.setenv("HBDNS_STATUS_PUBLIC_URL", "https://status.example.net/")
    code, out, _ = run(real_redis, capsys, "token", "add", "--scope", f"account:home.{ZONE}", "--ttl", "86400")
    assert code == 0
    token = next(line for line in out.splitlines() if line.startswith("hbdns_"))
    assert f"https://status.example.net/login#token={token}" in out
    found = Tokens(real_redis).check(token)
    assert found is not None and found.scope.fqdn == f"home.{ZONE}" and found.expires > 0


@pytest.mark.parametrize(
    ("argv", "reason"),
    [
        (["token", "add", "--scope", "root"], "must be admin, zone:<apex> or account:<fqdn>"),
        (["token", "add", "--scope", "zone:"], "must be admin"),
        (["token", "add", "--scope", "zone:nowhere.example"], "no zone nowhere.example"),
        (["token", "add", "--scope", "zone:bad..name"], "LDH"),
        (["token", "add", "--scope", "account:nobody.example"], "no account 'nobody.example'"),
        (["token", "add", "--scope", "admin", "--ttl", "-5"], "lifetime"),
        (["token", "revoke", "0123456789abcdef"], "no token"),
    ],
)
def test_refusals_exit_2_and_write_nothing(real_redis, capsys, zone, argv, reason) -> None:
    before = snapshot(real_redis)
    code, _, err = run(real_redis, capsys, *argv)
    assert code == 2 and reason in err and err.startswith("hbdns: ") and err.count("\n") == 1
    assert snapshot(real_redis) == before
