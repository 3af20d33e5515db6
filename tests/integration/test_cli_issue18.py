"""Issue 18 on a real Redis: the CLI's new options and commands, and ACME values that expire by
themselves (Redis' own clock and key expiry)."""

from __future__ import annotations

import json

import pytest
import redis

from admin.cli.main import main
from hbdns import acme, acme_credentials, keys
from hbdns.store import Store
from tests.support.servers import wait_for
from tests.support.update_api import redis_snapshot

ZONE = "dyn.example.net"


def run(r: redis.Redis, capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv), redis_client=r)
    out, err = capsys.readouterr()
    return code, out, err


def test_zone_negative_ttl_and_account_options(real_redis: redis.Redis, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(real_redis, capsys, "--json", "zone", "add", ZONE, "--negative-ttl", "10")
    assert code == 0, err
    assert (json.loads(out)["minimum"], json.loads(out)["negative_ttl"]) == (10, 10)
    code, out, _ = run(real_redis, capsys, "--json", "zone", "set", ZONE, "--negative-ttl", "120")
    assert (json.loads(out)["negative_ttl"], json.loads(out)["soa_ttl"]) == (120, 120)
    before = redis_snapshot(real_redis)
    code, _, err = run(real_redis, capsys, "zone", "set", ZONE, "--negative-ttl", "0")
    assert (code, err.strip()) == (2, "hbdns: negative TTL must be a whole number of seconds, 1 to 86400")
    argv = ("account", "add", f"home.{ZONE}", "--plan", "setip-a", "--ipv6-interface-id", "2001:db8::1")
    code, _, err = run(real_redis, capsys, *argv)
    assert code == 2 and "upper 64" in err
    assert redis_snapshot(real_redis) == before
    code, out, err = run(
        real_redis, capsys, "--json", "account", "add", f"home.{ZONE}", "--plan", "setip-a", "--wildcard",
        "--ipv6-interface-id", "::1a2b:3c4d:5e6f:7081",
    )  # fmt: skip
    assert code == 0, err
    assert (json.loads(out)["wildcard"], json.loads(out)["ipv6_interface_id"]) == (True, "::1a2b:3c4d:5e6f:7081")
    code, out, _ = run(real_redis, capsys, "--json", "account", "set", f"home.{ZONE}", "--no-wildcard")
    assert json.loads(out)["wildcard"] is False


def test_acme_credentials_are_shown_once_listed_and_revoked(
    real_redis: redis.Redis, capsys: pytest.CaptureFixture[str], store: Store
) -> None:
    assert run(real_redis, capsys, "zone", "add", ZONE)[0] == 0
    argv = ("account", "add", f"home.{ZONE}", "--plan", "setip-a", "--alias", f"www.{ZONE}")
    assert run(real_redis, capsys, *argv)[0] == 0
    code, out, _ = run(real_redis, capsys, "account", "acme-credentials", f"www.{ZONE}")
    assert code == 0 and f"_acme-challenge.www.{ZONE}" in out and "ACMEDNS_PASSWORD=" in out
    code, out, _ = run(real_redis, capsys, "--json", "account", "acme-credentials", f"home.{ZONE}")
    issued = json.loads(out)
    account = issued["acme_dns"][f"home.{ZONE}"]
    assert acme_credentials.check(real_redis, account["username"], account["password"]) is not None
    code, out, _ = run(real_redis, capsys, "--json", "account", "acme-credentials", f"home.{ZONE}", "--list")
    listed = json.loads(out)
    assert sorted(c["name"] for c in listed) == [f"home.{ZONE}", f"www.{ZONE}"]
    assert account["password"] not in out
    assert run(real_redis, capsys, "account", "acme-credentials", f"home.{ZONE}", "--revoke")[0] == 0
    assert acme_credentials.check(real_redis, account["username"], account["password"]) is None
    code, _, err = run(real_redis, capsys, "account", "acme-credentials", f"home.{ZONE}", "--revoke")
    assert (code, err.strip()) == (2, f"hbdns: home.{ZONE} has no ACME credentials")


def test_values_expire_by_themselves(real_redis: redis.Redis, store: Store) -> None:
    from hbdns.model import Zone

    store.add_zone(Zone(ZONE, ("ns1.example.net",), "hm.example.net", "192.0.2.1"))
    account = store.add_account(store.new_account(f"home.{ZONE}", "setip-a"))
    cred, _ = acme_credentials.make(real_redis, account.id, account.fqdn)
    args = {"cred_key": keys.acme_credential(cred.id), "name": account.fqdn, "account_id": account.id}
    acme.set_value(real_redis, digest=cred.digest, value="a" * 43, ttl_ms=300, **args)
    acme.set_value(real_redis, digest=cred.digest, value="b" * 43, ttl_ms=1500, **args)
    assert acme.values(real_redis, [account.fqdn]) == [["a" * 43, "b" * 43]]
    wait_for(lambda: acme.values(real_redis, [account.fqdn]) == [["b" * 43]], 5, what="the first value expired")
    wait_for(lambda: not real_redis.exists(keys.acme_txt(account.fqdn)), 5, what="the key expired with the last")
