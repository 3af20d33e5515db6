"""API tokens (hbdns/tokens.py): format, digest-only storage, constant-time check, expiry, scopes."""

from __future__ import annotations

import hmac

import pytest

from hbdns import keys, tokens
from hbdns.model import Account
from hbdns.tokens import Scope, Tokens


def test_a_token_checks_and_a_changed_or_foreign_one_does_not(fake_redis) -> None:
    store = Tokens(fake_redis)
    token, text = store.add(Scope("admin"), label="ops")
    assert store.check(text) == token and store.check(" " + text + "\n") == token
    prefix, token_id, secret = text.split("_", 2)
    assert prefix == "hbdns" and token_id == token.id and len(secret) == 43
    flipped = text[:-1] + ("A" if text[-1] != "A" else "B")
    _, other_text = store.add(Scope("admin"))
    for bad in (flipped, f"hbdns_{token.id}_{other_text.split('_', 2)[2]}", "", "hbdns_", "x" * 80, text + "x"):
        assert store.check(bad) is None, bad


def test_only_the_secrets_digest_is_stored(fake_redis) -> None:
    _, text = Tokens(fake_redis).add(Scope("zone", zone="dyn.example.net"))
    token_id, secret = text.split("_", 2)[1:]
    stored = fake_redis.hgetall(keys.api_token(token_id))
    assert secret not in str(stored) and text not in str(stored)
    assert stored["sha256"] == tokens._digest(secret)
    assert fake_redis.smembers(keys.api_tokens()) == {token_id}


def test_every_check_compares_a_digest_in_constant_time(fake_redis, monkeypatch) -> None:
    """Known id or not, well-formed or not: one compare_digest of two SHA-256 digests."""
    calls: list[tuple[int, int]] = []
    real = hmac.compare_digest

    def spy(a: str, b: str) -> bool:
        calls.append((len(a), len(b)))
        return real(a, b)

    monkeypatch.setattr(tokens.hmac, "compare_digest", spy)
    store = Tokens(fake_redis)
    _, text = store.add(Scope("admin"))
    for presented in (text, "hbdns_0123456789abcdef_" + "a" * 43, "nonsense"):
        store.check(presented)
    assert calls == [(64, 64)] * 3


def test_expiry_and_revocation(fake_redis) -> None:
    store = Tokens(fake_redis)
    token, text = store.add(Scope("admin"), ttl=60)
    assert store.check(text, now=token.created + 59) is not None
    assert store.check(text, now=token.created + 60) is None
    assert [t.id for t in store.list()] == [token.id]
    store.revoke(token.id)
    assert store.check(text, now=token.created) is None and store.list() == []
    with pytest.raises(tokens.TokenError):
        store.revoke(token.id)
    with pytest.raises(tokens.TokenError):
        store.add(Scope("admin"), ttl=-1)


def _account(account_id: int, fqdn: str, zone: str) -> Account:
    return Account(id=account_id, fqdn=fqdn, zone=zone, plan="heartbeat-c", hb_key=b"k" * 32)


def test_scopes_cover_what_they_name() -> None:
    home = _account(1, "home.dyn.example.net", "dyn.example.net")
    away = _account(2, "away.dyn.other.org", "dyn.other.org")
    renamed = _account(1, "other.dyn.example.net", "dyn.example.net")
    admin, zone = Scope("admin"), Scope("zone", zone="dyn.example.net")
    account = Scope("account", zone="dyn.example.net", fqdn=home.fqdn, account_id=1)
    assert admin.covers_account(away) and admin.covers_zone("dyn.other.org")
    assert zone.covers_account(home) and not zone.covers_account(away)
    assert zone.covers_zone("dyn.example.net") and not zone.covers_zone("dyn.other.org")
    assert account.covers_account(home) and not account.covers_account(away) and not account.covers_account(renamed)
    assert not account.covers_zone("dyn.example.net")
    assert [str(s) for s in (admin, zone, account)] == ["admin", "zone:dyn.example.net", "account:home.dyn.example.net"]
    assert Scope.from_hash(account.to_hash()) == account
