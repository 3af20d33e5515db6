"""The remote backend's HTTP app (Flask test client) on fakeredis: what pdns gets for each call."""

from __future__ import annotations

import logging
from typing import Any

import fakeredis
import pytest
import redis
from flask.testing import FlaskClient

from hbdns import config, keys
from hbdns.liveness import BeatRequest
from hbdns.model import DEFAULT_NEGATIVE_TTL, Account, Zone
from hbdns.store import Store
from pdns_backend.answers import zone_id
from pdns_backend.app import create_app
from tests.support.zones import APEX


@pytest.fixture
def store(store: Store) -> Store:
    """The shared example.com zone, and other.org with only an IPv4 neutral address."""
    store.add_zone(Zone(apex="other.org", ns=("ns1.other.org",), hostmaster="h.other.org", neutral_ipv4="192.0.2.99"))
    return store


@pytest.fixture
def client(store: Store, r: redis.Redis, settings: config.Settings) -> FlaskClient:
    # zone config is cached up to 1 s in production; 0 here so each test sees its writes at once
    app = create_app({"TESTING": True, "HBDNS_SETTINGS": settings, "HBDNS_ZONE_MAX_AGE": 0}, redis=r)
    return app.test_client()


def add(store: Store, fqdn: str, plan: str = "heartbeat-c", **kw: Any) -> Account:
    return store.add_account(store.new_account(fqdn, plan, **kw))


def beat(store: Store, acct: Account, ipv4: str = "", ipv6: str = "", ttl_ms: int = 60_000) -> None:
    res = store.liveness.beat(BeatRequest(acct.id, acct.zone, ttl_ms, ipv4=ipv4, ipv6=ipv6))
    assert res.accepted


def lookup(client: FlaskClient, qname: str, qtype: str = "ANY") -> Any:
    rv = client.get(f"/dnsapi/lookup/{qname}/{qtype}")
    assert rv.status_code == 200
    assert rv.mimetype == "application/json"
    return rv.get_json()["result"]


def rrs(result: Any) -> set[tuple[str, str, str, int]]:
    assert result is not False, "expected records"
    return {(x["qname"], x["qtype"], x["content"], x["ttl"]) for x in result}


# --- accounts -------------------------------------------------------------------------------------


def test_neutral_account_answers_zone_neutral_addresses(client: FlaskClient, store: Store) -> None:
    add(store, "host.example.com")
    assert rrs(lookup(client, "host.example.com.")) == {
        ("host.example.com.", "A", "192.0.2.1", 3),
        ("host.example.com.", "AAAA", "2001:db8::1", 3),
    }


def test_account_neutral_ip_overrides_zone_default(client: FlaskClient, store: Store) -> None:
    add(store, "own.example.com", neutral_ipv4="203.0.113.200", neutral_ipv6="2001:db8::200")
    assert rrs(lookup(client, "own.example.com.")) == {
        ("own.example.com.", "A", "203.0.113.200", 3),
        ("own.example.com.", "AAAA", "2001:db8::200", 3),
    }


def test_live_account_answers_reported_addresses(client: FlaskClient, store: Store) -> None:
    acct = add(store, "host.example.com")
    beat(store, acct, ipv4="203.0.113.5")
    # live and no IPv6 known: no AAAA (the neutral one would send traffic elsewhere)
    assert rrs(lookup(client, "host.example.com.")) == {("host.example.com.", "A", "203.0.113.5", 3)}
    beat(store, acct, ipv6="2001:db8:5::5")
    assert rrs(lookup(client, "host.example.com.")) == {
        ("host.example.com.", "A", "203.0.113.5", 3),
        ("host.example.com.", "AAAA", "2001:db8:5::5", 3),
    }


def test_expired_alive_key_answers_neutral_at_once(client: FlaskClient, store: Store, r: redis.Redis) -> None:
    acct = add(store, "host.example.com", mx=True)
    beat(store, acct, ipv4="203.0.113.5")
    assert ("host.example.com.", "A", "203.0.113.5", 3) in rrs(lookup(client, "host.example.com"))
    r.delete(keys.alive(acct.id, 4))  # what expiry does; no sweeper has run, state still says live
    assert r.hget(keys.account(acct.id), "state") == "live"
    assert rrs(lookup(client, "host.example.com")) == {
        ("host.example.com.", "A", "192.0.2.1", 3),
        ("host.example.com.", "AAAA", "2001:db8::1", 3),
        ("host.example.com.", "MX", "10 host.example.com", 3),  # the MX set stays as when live
        ("host.example.com.", "MX", "50 mx.backup.example.com", 3),
    }


def test_each_family_is_live_on_its_own(client: FlaskClient, store: Store, r: redis.Redis) -> None:
    acct = add(store, "dual.example.com", mx=True)
    beat(store, acct, ipv4="203.0.113.5", ipv6="2001:db8:5::5")
    r.delete(keys.alive(acct.id, 4))  # the IPv4 path died, IPv6 beats go on
    assert rrs(lookup(client, "dual.example.com")) == {
        ("dual.example.com.", "A", "192.0.2.1", 3),  # neutral, never withdrawn
        ("dual.example.com.", "AAAA", "2001:db8:5::5", 3),
        ("dual.example.com.", "MX", "10 dual.example.com", 3),
        ("dual.example.com.", "MX", "50 mx.backup.example.com", 3),
    }
    beat(store, acct, ipv4="203.0.113.5")
    r.delete(keys.alive(acct.id, 6))
    assert {x["content"] for x in lookup(client, "dual.example.com", "AAAA")} == {"2001:db8::1"}
    assert {x["content"] for x in lookup(client, "dual.example.com", "A")} == {"203.0.113.5"}


def test_a_legacy_alive_key_keeps_both_families_live(client: FlaskClient, store: Store, r: redis.Redis) -> None:
    """What a writer of the version before per-family liveness leaves (one key for the account)."""
    acct = add(store, "old.example.com")
    beat(store, acct, ipv4="203.0.113.5", ipv6="2001:db8:5::5")
    r.delete(keys.alive(acct.id, 4), keys.alive(acct.id, 6))
    r.set(keys.alive_legacy(acct.id), "1", px=60_000)
    assert {x["content"] for x in lookup(client, "old.example.com", "ANY")} == {"203.0.113.5", "2001:db8:5::5"}


def test_mx_live_points_at_account_plus_backup(client: FlaskClient, store: Store) -> None:
    acct = add(store, "mail.example.com", mx=True)
    beat(store, acct, ipv4="203.0.113.9")
    assert {x["content"] for x in lookup(client, "mail.example.com.", "MX")} == {
        "10 mail.example.com",
        "50 mx.backup.example.com",
    }


def test_mx_set_is_kept_while_neutral(client: FlaskClient, store: Store) -> None:
    """A neutral MX set of only the backup makes a stock backup MX bounce ("loops back to myself")."""
    add(store, "mail.example.com", mx=True)
    assert {x["content"] for x in lookup(client, "mail.example.com.", "MX")} == {
        "10 mail.example.com",
        "50 mx.backup.example.com",
    }


def test_mx_disabled_gives_no_mx(client: FlaskClient, store: Store) -> None:
    acct = add(store, "host.example.com")
    beat(store, acct, ipv4="203.0.113.5")
    assert lookup(client, "host.example.com.", "MX") is False


def test_neutral_mx_without_backup_host_keeps_its_own(client: FlaskClient, store: Store) -> None:
    """No backup MX in the zone: senders find the neutral address, defer and keep the mail."""
    add(store, "host.other.org", mx=True)
    assert {x["content"] for x in lookup(client, "host.other.org.", "MX")} == {"10 host.other.org"}
    assert rrs(lookup(client, "host.other.org.", "A")) == {("host.other.org.", "A", "192.0.2.99", 3)}


def test_alias_answers_like_primary(client: FlaskClient, store: Store) -> None:
    acct = add(store, "host.example.com", aliases=["www.example.com", "shop.example.com"], mx=True)
    beat(store, acct, ipv4="203.0.113.5")
    assert rrs(lookup(client, "WWW.example.com.")) == {
        ("www.example.com.", "A", "203.0.113.5", 3),
        ("www.example.com.", "MX", "10 host.example.com", 3),
        ("www.example.com.", "MX", "50 mx.backup.example.com", 3),
    }


def test_ttl_follows_plan(client: FlaskClient, store: Store) -> None:
    add(store, "a.example.com", plan="heartbeat-a")
    add(store, "s.example.com", plan="slow")  # from HBDNS_PLANS
    assert {x["ttl"] for x in lookup(client, "a.example.com.")} == {45}
    assert {x["ttl"] for x in lookup(client, "s.example.com.")} == {300}


def test_unknown_plan_falls_back_to_default_ttl(client: FlaskClient, store: Store, r: redis.Redis) -> None:
    acct = add(store, "host.example.com")
    r.hset(keys.account(acct.id), "plan", "retired-plan")
    assert {x["ttl"] for x in lookup(client, "host.example.com.")} == {60}


@pytest.mark.parametrize("qname", ["host.example.com", "host.example.com.", "HOST.Example.COM.", "hOsT.eXaMpLe.CoM"])
def test_names_match_case_insensitively_with_or_without_dot(client: FlaskClient, store: Store, qname: str) -> None:
    add(store, "host.example.com")
    result = lookup(client, qname, "A")
    assert [(x["qname"], x["content"]) for x in result] == [("host.example.com.", "192.0.2.1")]


def test_qtype_filters_and_any_returns_everything(client: FlaskClient, store: Store) -> None:
    add(store, "host.example.com", mx=True)
    assert {x["qtype"] for x in lookup(client, "host.example.com.", "ANY")} == {"A", "AAAA", "MX"}
    assert {x["qtype"] for x in lookup(client, "host.example.com.", "AAAA")} == {"AAAA"}
    assert lookup(client, "host.example.com.", "TXT") is False


def test_removed_account_gives_no_records(client: FlaskClient, store: Store, r: redis.Redis) -> None:
    acct = add(store, "host.example.com")
    store.remove_account(acct.id)
    assert lookup(client, "host.example.com.") is False
    acct = add(store, "half.example.com")
    r.delete(keys.account(acct.id))  # index still points at a gone hash (mid-removal)
    assert lookup(client, "half.example.com.") is False


# --- zone -----------------------------------------------------------------------------------------


def test_apex_soa_ns_and_static_records(client: FlaskClient, store: Store) -> None:
    serial = store.zone_serial(APEX)
    result = lookup(client, "example.com.")
    assert rrs(result) == {
        (
            "example.com.",
            "SOA",
            f"ns1.example.net hostmaster.example.net {serial} 3600 600 1209600 {DEFAULT_NEGATIVE_TTL}",
            60,
        ),
        ("example.com.", "NS", "ns1.example.net", 3600),
        ("example.com.", "NS", "ns2.example.net", 3600),
        ("example.com.", "TXT", '"v=spf1 -all"', 300),
        ("example.com.", "MX", "20 mail.example.net", 300),
    }
    assert result[0]["qtype"] == "SOA"
    assert {x["domain_id"] for x in result} == {zone_id(APEX)}


def test_static_record_in_zone(client: FlaskClient, store: Store) -> None:
    assert rrs(lookup(client, "mx.backup.example.com.", "A")) == {("mx.backup.example.com.", "A", "198.51.100.7", 600)}


def test_soa_serial_follows_changes(client: FlaskClient, store: Store) -> None:
    def serial() -> int:
        return int(lookup(client, "example.com.", "SOA")[0]["content"].split()[2])

    before = serial()
    acct = add(store, "host.example.com")
    after_add = serial()
    assert after_add > before
    beat(store, acct, ipv4="203.0.113.5")
    assert serial() > after_add


def test_account_at_apex_adds_to_apex_records(client: FlaskClient, store: Store) -> None:
    acct = add(store, "other.org")
    beat(store, acct, ipv4="203.0.113.77")
    types = {x["qtype"] for x in lookup(client, "other.org.")}
    assert types == {"SOA", "NS", "A"}


@pytest.mark.parametrize(
    "qname",
    [
        "nothere.example.com.",
        "*.example.com.",
        "*.host.example.com.",
        "x.host.example.com.",
        "example.net.",
        "com.",
        ".",
    ],
)
def test_unknown_names_and_wildcard_probes_have_no_records(client: FlaskClient, store: Store, qname: str) -> None:
    add(store, "host.example.com")
    assert lookup(client, qname) is False


def test_get_all_domains_lists_zones_with_serials(client: FlaskClient, store: Store) -> None:
    rv = client.get("/dnsapi/getAllDomains?includeDisabled=true")
    assert rv.status_code == 200
    zones = {d["zone"]: d for d in rv.get_json()["result"]}
    assert set(zones) == {"example.com.", "other.org."}
    assert zones["example.com."]["serial"] == store.zone_serial(APEX)
    assert zones["example.com."]["id"] == zone_id(APEX)
    assert zones["example.com."]["kind"] == "native"


def test_get_domain_info_apex_only(client: FlaskClient, store: Store) -> None:
    rv = client.get("/dnsapi/getDomainInfo/Example.COM.")
    info = rv.get_json()["result"]
    assert info["zone"] == "example.com." and info["id"] == zone_id(APEX) and info["serial"] == store.zone_serial(APEX)
    add(store, "host.example.com")
    for name in ("host.example.com.", "example.net.", "com."):
        assert client.get(f"/dnsapi/getDomainInfo/{name}").get_json() == {"result": False}


def test_metadata_is_empty(client: FlaskClient, store: Store) -> None:
    assert client.get("/dnsapi/getAllDomainMetadata/example.com.").get_json() == {"result": {}}
    assert client.get("/dnsapi/getDomainMetadata/example.com./PRESIGNED").get_json() == {"result": []}


def test_list_gives_every_record_of_the_zone(client: FlaskClient, store: Store) -> None:
    acct = add(store, "host.example.com", aliases=["www.example.com"], mx=True)
    beat(store, acct, ipv4="203.0.113.5")
    add(store, "idle.example.com")
    add(store, "elsewhere.other.org")
    rv = client.get(f"/dnsapi/list/{zone_id(APEX)}/example.com.")
    got = rrs(rv.get_json()["result"])
    assert ("host.example.com.", "A", "203.0.113.5", 3) in got
    assert ("www.example.com.", "A", "203.0.113.5", 3) in got
    assert ("www.example.com.", "MX", "10 host.example.com", 3) in got
    assert ("idle.example.com.", "A", "192.0.2.1", 3) in got
    assert ("mx.backup.example.com.", "A", "198.51.100.7", 600) in got
    assert {x[1] for x in got if x[0] == "example.com."} == {"SOA", "NS", "TXT", "MX"}
    assert not any(x[0].endswith("other.org.") for x in got)
    assert client.get("/dnsapi/list/1/nozone.example.").get_json() == {"result": False}


@pytest.mark.parametrize(
    ("verb", "path"),
    [
        ("GET", "/dnsapi/getUpdatedMasters"),
        ("GET", "/dnsapi/getUnfreshSlaveInfos"),
        ("PATCH", "/dnsapi/setNotified/5"),
        ("GET", "/dnsapi/searchRecords"),
        ("POST", "/dnsapi/startTransaction/1/example.com./1"),
        ("GET", "/dnsapi/getDomainKeys/example.com."),
        ("POST", "/dnsapi/lookup/host.example.com./A"),
        ("GET", "/dnsapi/lookup/too/many/parts/here"),
        ("GET", "/"),
        ("DELETE", "/whatever"),
    ],
)
def test_unimplemented_methods_answer_json_false(client: FlaskClient, verb: str, path: str) -> None:
    rv = client.open(path, method=verb)
    assert rv.status_code == 200
    assert rv.mimetype == "application/json"
    assert rv.get_json() == {"result": False}


def test_ping(client: FlaskClient) -> None:
    rv = client.get("/ping")
    assert rv.status_code == 200 and rv.get_json() == {"result": True}


# --- failures -------------------------------------------------------------------------------------


def test_redis_down_gives_500_and_one_log_line_per_incident(
    client: FlaskClient, store: Store, server: fakeredis.FakeServer, caplog: pytest.LogCaptureFixture
) -> None:
    add(store, "host.example.com")
    caplog.set_level(logging.INFO, logger="pdns_backend")
    server.connected = False
    for path in [
        "/dnsapi/lookup/host.example.com./ANY",
        "/dnsapi/lookup/example.com./SOA",
        "/dnsapi/getAllDomains",
        "/dnsapi/getDomainInfo/example.com.",
        "/dnsapi/list/1/example.com.",
    ] * 3:
        rv = client.get(path)
        assert rv.status_code == 500, path
        assert "result" not in rv.get_json()  # never a cacheable "no records"
    assert client.get("/ping").status_code == 500
    # calls that need no Redis (metadata; initialize on the unix socket) do not end the incident
    assert client.get("/dnsapi/getAllDomainMetadata/example.com.").status_code == 200
    assert client.get("/dnsapi/lookup/example.com./SOA").status_code == 500
    errors = [rec for rec in caplog.records if rec.levelno >= logging.ERROR]
    assert len(errors) == 1 and "redis unavailable" in errors[0].getMessage()

    server.connected = True
    assert lookup(client, "host.example.com.", "A")[0]["content"] == "192.0.2.1"
    assert lookup(client, "host.example.com.", "A")[0]["content"] == "192.0.2.1"
    recovered = [rec for rec in caplog.records if "reachable again" in rec.getMessage()]
    assert len(recovered) == 1 and recovered[0].failed_requests == 17  # type: ignore[attr-defined]

    server.connected = False  # a second outage is a second incident
    assert client.get("/dnsapi/lookup/host.example.com./A").status_code == 500
    assert len([rec for rec in caplog.records if rec.levelno >= logging.ERROR]) == 2


def test_unreachable_redis_server_gives_500(settings: config.Settings) -> None:
    from pdns_backend.app import backend_redis
    from tests.support.servers import free_port

    app = create_app({"HBDNS_SETTINGS": settings}, redis=backend_redis(f"redis://127.0.0.1:{free_port()}/0"))
    rv = app.test_client().get("/dnsapi/lookup/host.example.com./ANY")
    assert rv.status_code == 500


def test_corrupt_zone_gives_500_for_its_names_only(client: FlaskClient, store: Store, r: redis.Redis) -> None:
    add(store, "host.example.com")
    add(store, "host.other.org")
    r.hset(keys.zone(APEX), "records", "{not json")
    assert client.get("/dnsapi/lookup/example.com./ANY").status_code == 500
    assert client.get("/dnsapi/lookup/host.example.com./ANY").status_code == 500
    assert lookup(client, "host.other.org.", "A")[0]["content"] == "192.0.2.99"
