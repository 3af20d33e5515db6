"""The core pieces of issue 18 on their own: ACME values and credentials, the non-terminal helpers,
interface ids, and the zone's negative TTL and account options as the shared provisioning layer
checks them (fakeredis)."""

from __future__ import annotations

import pytest
import redis

from hbdns import acme, acme_credentials, config, ents, keys, provision, validate
from hbdns.ipv6_prefix import combine, interface_id
from hbdns.model import DEFAULT_NEGATIVE_TTL, Zone
from hbdns.provision_zones import ZoneChanges, build_zone, change_zone, create_zone
from hbdns.store import Store

APEX = "dyn.example.net"


@pytest.fixture
def store(fake_redis: redis.Redis) -> Store:
    s = Store(fake_redis, config.load({}))
    s.add_zone(Zone(APEX, ("ns1.example.net",), "hm.example.net", "192.0.2.1"))
    return s


@pytest.mark.parametrize("value", ["A" * 43, "_-09azAZ" + "x" * 35])
def test_dns01_values_are_43_base64url_characters(value: str) -> None:
    assert acme.check_value(value) == value


@pytest.mark.parametrize("value", ["A" * 42, "A" * 44, "A" * 42 + "=", "A" * 42 + "/", "A" * 42 + " ", None, 43, ""])
def test_other_values_are_refused(value: object) -> None:
    with pytest.raises(acme.Refused):
        acme.check_value(value)


def test_challenge_names() -> None:
    assert acme.name_of("_ACME-Challenge.Home.Dyn.Example.Net.") == "home.dyn.example.net"
    assert acme.name_of("home.dyn.example.net") is None
    assert acme.name_of("_acme-challenge.") is None
    assert acme.name_of("_acme-challenge.bad_name.net") is None


def test_credentials_check_and_replace(store: Store) -> None:
    account = provision.create_account(store, f"home.{APEX}", "setip-a").account
    cred, key = acme_credentials.make(store.r, account.id, account.fqdn)
    assert key not in str(store.r.hgetall(keys.acme_credential(cred.id)))  # only its digest is stored
    assert acme_credentials.check(store.r, cred.id, key) == cred
    assert acme_credentials.check(store.r, cred.id.upper(), key) == cred  # ids are case-free (UUIDs)

    def flip(text: str) -> str:  # always differs in its last character
        return text[:-1] + ("1" if text[-1] == "0" else "0")

    for user, secret in ((cred.id, flip(key)), ("not-a-uuid", key), (flip(cred.id), key), (cred.id, "")):
        assert acme_credentials.check(store.r, user, secret) is None
    new, new_key = acme_credentials.make(store.r, account.id, account.fqdn)
    assert acme_credentials.check(store.r, cred.id, key) is None  # replaced
    assert [c.id for c in acme_credentials.listing(store.r, account.id)] == [new.id]
    assert acme_credentials.revoke(store.r, account.id, account.fqdn)
    assert acme_credentials.check(store.r, new.id, new_key) is None
    assert not acme_credentials.revoke(store.r, account.id, account.fqdn)


def test_credentials_only_for_the_accounts_own_names(store: Store) -> None:
    from hbdns import provision_acme

    account = provision.create_account(store, f"home.{APEX}", "setip-a", aliases=[f"www.{APEX}"]).account
    assert provision_acme.issue(store, account, f"WWW.{APEX}").credential.name == f"www.{APEX}"
    with pytest.raises(validate.Invalid, match="is not a name of account"):
        provision_acme.issue(store, account, f"other.{APEX}")
    issued = provision_acme.issue(store, account).as_dict()
    assert issued["acme_dns"][account.fqdn]["fulldomain"] == f"_acme-challenge.{account.fqdn}"
    assert issued["acme_dns"][account.fqdn]["server_url"] == "http://127.0.0.1:8080/acme-dns"
    assert issued["httpreq"]["endpoint"] == "http://127.0.0.1:8080/httpreq"


def test_names_between_a_name_and_its_apex() -> None:
    assert ents.between(f"a.b.c.{APEX}", APEX) == [f"b.c.{APEX}", f"c.{APEX}"]
    assert ents.between(f"a.{APEX}", APEX) == [] == ents.between(APEX, APEX) == ents.between("a.other.net", APEX)
    assert ents.with_enclosers([f"a.b.{APEX}", f"c.b.{APEX}"], APEX) == [f"a.b.{APEX}", f"b.{APEX}", f"c.b.{APEX}"]


def test_the_store_keeps_the_index(store: Store) -> None:
    r = store.r
    provision.create_account(store, f"a.x.{APEX}", "setip-a", aliases=[f"b.x.{APEX}", f"c.y.x.{APEX}"])
    assert ents.parse(r.hgetall(keys.zone_ents(APEX))) == {f"x.{APEX}", f"y.x.{APEX}"}
    assert r.hget(keys.zone_ents(APEX), f"x.{APEX}") == "3"
    provision.remove_account(store, store.resolve(f"a.x.{APEX}"))
    assert ents.parse(r.hgetall(keys.zone_ents(APEX))) == frozenset()
    assert int(r.hget(keys.zone_ents(APEX), ents.REV_FIELD)) == 2


@pytest.mark.parametrize("iid", ["::1a2b:3c4d:5e6f:7081", "::10", "::FFFF:FFFF:FFFF:FFFF"])
def test_interface_ids(iid: str) -> None:
    assert interface_id(iid) == iid.lower()


@pytest.mark.parametrize(
    "iid, why",
    [("::", "all zero"), ("2001:db8::1", "upper 64"), ("1a2b:3c4d:5e6f:7081", "IPv6 notation"), ("x", "notation")],
)
def test_bad_interface_ids(iid: str, why: str) -> None:
    with pytest.raises(validate.ValidationError, match=why):
        interface_id(iid)


def test_prefix_plus_id() -> None:
    assert combine("2001:db9:1:2::/64", "::10") == "2001:db9:1:2::10"
    with pytest.raises(ValueError, match="longer than /64"):
        combine("2001:db9:1:2::/96", "::10")


def test_account_options_are_checked_and_stored(store: Store) -> None:
    with pytest.raises(validate.Invalid) as exc:
        provision.create_account(store, f"home.{APEX}", "setip-a", ipv6_interface_id="::")
    assert [e.field for e in exc.value.errors] == ["ipv6_interface_id"]
    assert not store.r.exists(keys.names())  # refused: nothing written
    account = provision.create_account(store, f"home.{APEX}", "setip-a", wildcard=True, ipv6_interface_id="::A").account
    assert (account.wildcard, account.ipv6_interface_id) == (True, "::a")
    assert store.r.hget(keys.names(), f"*.home.{APEX}") == str(account.id)
    changed = provision.change_account(store, account, provision.AccountChanges(wildcard=False, ipv6_interface_id=""))
    assert (changed.wildcard, changed.ipv6_interface_id) == (False, "")
    assert not store.r.hexists(keys.names(), f"*.home.{APEX}")
    assert store.account_id_for(f"*.home.{APEX}") is None  # the wildcard is no account reference


def test_negative_ttl_default_range_and_soa_ttl(store: Store) -> None:
    zone = build_zone(store.settings, "new.example.net", ZoneChanges())
    assert (zone.minimum, zone.soa_ttl) == (DEFAULT_NEGATIVE_TTL, 60)
    zone = create_zone(store, "z.example.net", ZoneChanges(negative_ttl=5))
    assert (zone.minimum, zone.soa_ttl) == (5, 60)
    zone = change_zone(store, zone, ZoneChanges(negative_ttl=300))
    assert (zone.minimum, zone.soa_ttl) == (300, 300)  # resolvers use min(SOA TTL, minimum)
    for bad in (0, -1, 86401, True):
        with pytest.raises(validate.Invalid, match="negative TTL"):
            change_zone(store, zone, ZoneChanges(negative_ttl=bad))
    assert config.load({"HBDNS_DEFAULT_NEGATIVE_TTL": "30"}).default_negative_ttl == 30
    with pytest.raises(config.ConfigError):
        config.load({"HBDNS_DEFAULT_NEGATIVE_TTL": "90000"})
