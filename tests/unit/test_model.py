from __future__ import annotations

import pytest

from hbdns import passwords, validate
from hbdns.model import Account, AccountState, NotifyPrefs, StaticRecord, Zone, config_fingerprint


def test_zone_round_trip() -> None:
    z = Zone(
        apex="dyn.example.net",
        ns=("ns1.example.net", "ns2.example.net"),
        hostmaster="hm.example.net",
        neutral_ipv4="192.0.2.1",
        neutral_ipv6="2001:db8::1",
        backup_mx="mx.example.net",
        records=(StaticRecord("mx.dyn.example.net", "A", "192.0.2.25", 600),),
        created=1.5,
    )
    assert Zone.from_hash(z.to_hash()) == z


def test_account_round_trip_and_public_view_hides_secrets() -> None:
    a = Account(
        id=3,
        fqdn="h.dyn.example.net",
        zone="dyn.example.net",
        plan="heartbeat-c",
        hb_key=bytes(range(32)),
        pw_hash="scrypt$1$1$1$x$y",
        aliases=("m.dyn.example.net",),
        mx=True,
        emails=("a@b.de",),
        phones=("+4915112345678",),
        prefs=NotifyPrefs(sms="all", quiet_hours="22:00-07:00", tz="Europe/Berlin"),
    )
    assert Account.from_hash(a.to_hash()) == a
    public = a.public_dict()
    assert "hb_key" not in public and "pw_hash" not in public and public["has_password"] is True
    assert bytes(range(32)).hex() not in repr(a)


@pytest.mark.parametrize(
    "name", ["", "a..b", "-a.b", "a-.b", "a_b.c", "x" * 64 + ".net", ("a." * 127) + "net", "ä.net", "a b.net"]
)
def test_bad_hostnames(name: str) -> None:
    with pytest.raises(validate.ValidationError):
        validate.hostname(name)


def test_hostname_normalises() -> None:
    assert validate.hostname("Home.Example.NET.") == "home.example.net"


def test_addresses_emails_phones() -> None:
    assert validate.ip_any("::ffff:192.0.2.1") == (4, "192.0.2.1")
    assert validate.ip_any("2001:DB8::1") == (6, "2001:db8::1")
    for bad in ("1.2.3", "256.1.1.1", "x", "1.2.3.4/24"):
        with pytest.raises(validate.ValidationError):
            validate.ip_any(bad)
    assert validate.email("A.b@Example.org") == "A.b@example.org"
    for bad in ("a", "a@b", "@b.de", "a@@b.de", "a b@c.de"):
        with pytest.raises(validate.ValidationError):
            validate.email(bad)
    assert validate.phone("+49 151 1234567") == "+491511234567"
    for bad in ("0151123456", "+0151234567", "+49-151", "+1234567890123456"):
        with pytest.raises(validate.ValidationError):
            validate.phone(bad)


def test_prefs_validation() -> None:
    NotifyPrefs(quiet_hours="22:00-07:00", tz="Europe/Berlin").validate()
    for bad in (NotifyPrefs(email="loud"), NotifyPrefs(quiet_hours="22-7"), NotifyPrefs(tz="Mars/Base")):
        with pytest.raises(validate.ValidationError):
            bad.validate()


def test_password_hash_is_salted_and_verified() -> None:
    h1 = passwords.hash_password("correct horse", n=2**10)
    h2 = passwords.hash_password("correct horse", n=2**10)
    assert h1 != h2 and "correct horse" not in h1
    assert passwords.verify_password("correct horse", h1)
    assert not passwords.verify_password("wrong horse", h1)
    assert not passwords.verify_password("correct horse", None)
    assert not passwords.verify_password("x", "garbage")


def test_new_account_hash_puts_the_hot_fields_first() -> None:
    """Small hashes are listpacks scanned in insertion order: the fields every beat (and every DNS
    lookup) reads lead, and the state fields start as 'no beat yet'."""
    a = Account(id=3, fqdn="h.dyn.test", zone="dyn.test", plan="heartbeat-c", hb_key=bytes(32))
    h = a.new_hash(1234)
    assert list(h)[:7] == ["fqdn", "state", "counter", "ipv4", "ipv6", "fp", "last_beat"]
    assert (h["state"], h["counter"], h["ipv4"], h["last_beat"], h["since"]) == ("neutral", "0", "", "0", "1234")
    assert h["fp"] == config_fingerprint(bytes(32), "heartbeat-c", "dyn.test")
    assert Account.from_hash(h) == a and AccountState.from_hash(h) == AccountState(since_ms=1234)
