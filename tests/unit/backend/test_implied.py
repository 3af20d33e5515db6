"""What names answer beyond their account and static records: empty non-terminals (ENT rows),
wildcards, ACME challenge values; in lookups and listings (the HTTP app on fakeredis)."""

from __future__ import annotations

from typing import Any

import pytest
import redis
from flask.testing import FlaskClient

from hbdns import acme, config, keys, provision, provision_acme
from hbdns.liveness import BeatRequest
from hbdns.migrations import zone_ents
from hbdns.model import Zone
from hbdns.store import Store
from pdns_backend.app import create_app
from tests.support.zones import APEX


@pytest.fixture
def client(store: Store, r: redis.Redis, settings: config.Settings) -> FlaskClient:
    app = create_app({"TESTING": True, "HBDNS_SETTINGS": settings, "HBDNS_ZONE_MAX_AGE": 0}, redis=r)
    return app.test_client()


def lookup(client: FlaskClient, qname: str, qtype: str = "ANY") -> Any:
    rv = client.get(f"/dnsapi/lookup/{qname}/{qtype}")
    assert rv.status_code == 200
    return rv.get_json()["result"]


def listing(client: FlaskClient) -> set[tuple[str, str, str]]:
    rv = client.get(f"/dnsapi/list/{APEX}.")
    return {(x["qname"], x["qtype"], x["content"]) for x in rv.get_json()["result"]}


ENT = "ENT"


def test_names_between_an_account_and_the_apex_answer_an_ent_row(client: FlaskClient, store: Store) -> None:
    provision.create_account(store, f"mail.b.a.{APEX}", "heartbeat-c")
    for name in (f"b.a.{APEX}", f"a.{APEX}", f"B.A.{APEX}."):
        for qtype in ("ANY", "A", "TXT"):
            rows = lookup(client, name, qtype)
            assert [(r["qname"], r["qtype"], r["content"]) for r in rows] == [(name.lower().rstrip(".") + ".", ENT, "")]
    assert lookup(client, f"x.b.a.{APEX}") is False  # nothing below it: NXDOMAIN
    assert lookup(client, f"backup.{APEX}")[0]["qtype"] == ENT  # above the static mx.backup record
    assert {(f"b.a.{APEX}.", ENT, ""), (f"a.{APEX}.", ENT, ""), (f"backup.{APEX}.", ENT, "")} <= listing(client)


def test_a_non_terminal_goes_with_the_last_name_below_it(client: FlaskClient, store: Store) -> None:
    one = provision.create_account(store, f"one.ent.{APEX}", "heartbeat-c").account
    two = provision.create_account(store, f"x.{APEX}", "heartbeat-c", aliases=[f"two.ent.{APEX}"]).account
    provision.remove_account(store, one)
    assert lookup(client, f"ent.{APEX}")[0]["qtype"] == ENT  # still the alias below it
    provision.change_account(store, two, provision.AccountChanges(aliases=[]))
    assert lookup(client, f"ent.{APEX}") is False
    assert (f"ent.{APEX}.", ENT, "") not in listing(client)


def test_a_non_terminal_whose_last_name_went_is_gone_before_the_zone_cache_ages(
    store: Store, r: redis.Redis, settings: config.Settings
) -> None:
    """The writer purges pdns right after the change; a zone cache still holding the old index
    must not answer NODATA then (pdns would cache it for the negative TTL instead of NXDOMAIN)."""
    app = create_app({"TESTING": True, "HBDNS_SETTINGS": settings, "HBDNS_ZONE_MAX_AGE": 3600}, redis=r)
    cached = app.test_client()
    one = provision.create_account(store, f"one.gone.{APEX}", "heartbeat-c").account
    assert lookup(cached, f"gone.{APEX}")[0]["qtype"] == ENT  # the zone cache now holds the index
    provision.remove_account(store, one)
    assert lookup(cached, f"gone.{APEX}") is False


def test_a_name_with_records_is_no_ent(client: FlaskClient, store: Store) -> None:
    provision.create_account(store, f"deep.home.{APEX}", "heartbeat-c")
    provision.create_account(store, f"home.{APEX}", "heartbeat-c")
    assert {r["qtype"] for r in lookup(client, f"home.{APEX}")} == {"A", "AAAA"}


def test_the_wildcard_follows_the_account_and_its_switch(client: FlaskClient, store: Store) -> None:
    home = provision.create_account(store, f"home.{APEX}", "heartbeat-c", mx=True, wildcard=True).account
    store.liveness.beat(BeatRequest(home.id, APEX, 60_000, ipv4="203.0.114.7"))
    rows = lookup(client, f"*.home.{APEX}")
    assert {(r["qname"], r["qtype"], r["content"]) for r in rows} == {
        (f"*.home.{APEX}.", "A", "203.0.114.7"),
        (f"*.home.{APEX}.", "MX", f"10 home.{APEX}"),
        (f"*.home.{APEX}.", "MX", "50 mx.backup.example.com"),
    }
    assert (f"*.home.{APEX}.", "A", "203.0.114.7") in listing(client)
    provision.change_account(store, store.resolve(home.fqdn), provision.AccountChanges(wildcard=False))
    assert lookup(client, f"*.home.{APEX}") is False
    assert not [n for n in listing(client) if n[0].startswith("*.")]


def test_challenge_values_answer_txt_and_expire(client: FlaskClient, store: Store, r: redis.Redis) -> None:
    home = provision.create_account(store, f"home.{APEX}", "heartbeat-c").account
    cred = provision_acme.issue(store, home).credential
    for value in ("a" * 43, "b" * 43):
        acme.set_value(
            r,
            cred_key=keys.acme_credential(cred.id),
            name=home.fqdn,
            account_id=home.id,
            digest=cred.digest,
            value=value,
            ttl_ms=60_000,
        )
    rows = lookup(client, f"_ACME-challenge.home.{APEX}.", "TXT")
    assert {(x["qname"], x["content"], x["ttl"]) for x in rows} == {
        (f"_acme-challenge.home.{APEX}.", f'"{v}"', acme.TXT_TTL) for v in ("a" * 43, "b" * 43)
    }
    assert not [x for x in listing(client) if x[1] == "TXT" and "_acme" in x[0]]  # never transferred
    r.zadd(keys.acme_txt(home.fqdn), {"a" * 43: 1, "b" * 43: 1})  # both past their expiry
    assert lookup(client, f"_acme-challenge.home.{APEX}.") is False


def test_a_zone_written_before_the_index_is_fixed_by_the_migration(
    client: FlaskClient, store: Store, r: redis.Redis
) -> None:
    """Data as the code before issue 18 wrote it: accounts, no non-terminal index."""
    store.add_zone(Zone(apex="old.test", ns=("ns1.old.test",), hostmaster="h.old.test", neutral_ipv4="192.0.2.9"))
    provision.create_account(store, "mail.office.old.test", "heartbeat-c")
    provision.create_account(store, "www.office.old.test", "heartbeat-c")
    r.delete(keys.zone_ents("old.test"), keys.zone_ents(APEX))
    assert lookup(client, "office.old.test.") is False  # NXDOMAIN, as before
    assert zone_ents.apply(r, dry_run=True) == 1
    assert lookup(client, "office.old.test.") is False  # dry run: nothing written
    assert zone_ents.apply(r) == 1
    assert lookup(client, "office.old.test.")[0]["qtype"] == ENT
    assert r.hget(keys.zone_ents("old.test"), "office.old.test") == "2"
    assert zone_ents.apply(r) == 0  # idempotent


def test_rows_use_the_canonical_lowercase_names_whatever_the_query_case(client: FlaskClient, store: Store) -> None:
    """The backend's part of canonical answers (pdns' name compression may still copy the question's
    case into a suffix on the wire: README, Names and negative answers)."""
    home = provision.create_account(store, f"home.{APEX}", "heartbeat-c", mx=True, wildcard=True).account
    store.liveness.beat(BeatRequest(home.id, APEX, 60_000, ipv4="203.0.114.7"))
    for qname in ("HoMe.ExAmPlE.CoM.", "*.HOME.example.COM."):
        rows = lookup(client, qname, "MX")
        assert {r["qname"] for r in rows} == {qname.lower()}
        assert {r["content"] for r in rows} == {f"10 home.{APEX}", "50 mx.backup.example.com"}
