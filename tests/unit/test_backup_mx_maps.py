"""The backup MX's socketmap tables (backup_mx): netstring framing and the answers from account
data (fakeredis through hbdns.store, as the admin CLI writes it)."""

from __future__ import annotations

import json
from dataclasses import replace

import fakeredis
import pytest
import redis

from backup_mx import socketmap
from backup_mx.maps import RECIPIENTS_FIELD, MxMaps, recipient_action
from hbdns import config, keys
from hbdns.model import Zone
from hbdns.store import Store

ZONE = "dyn.example.test"
HOME = f"home.{ZONE}"


@pytest.fixture
def store() -> Store:
    s = Store(fakeredis.FakeRedis(decode_responses=True), config.load({}))
    s.add_zone(Zone(apex=ZONE, ns=("ns1.example.test",), hostmaster="h.example.test", neutral_ipv4="192.0.2.1"))
    return s


def _ask(maps: MxMaps, name: str, key: str) -> bytes:
    return maps.answer(socketmap.Request(name, key))


def test_netstrings_are_framed_and_split_across_reads() -> None:
    reader = socketmap.NetstringReader()
    assert reader.feed(b"14:domains a.test,18:transport x@b") == [socketmap.Request("domains", "a.test")]
    assert reader.feed(b".test,") == [socketmap.Request("transport", "x@b.test")]
    assert reader.pending == 0
    assert socketmap.ok("relay:[a.test]") == b"17:OK relay:[a.test],"
    assert socketmap.notfound() == b"9:NOTFOUND ,"
    assert socketmap.temp("redis\r\ndown") == b"15:TEMP redis down,"


@pytest.mark.parametrize("data", [b"x:", b"12345678901:", b"01:a,", b"5:a b cX", b"3:abc,", b"99999:"])
def test_bad_netstrings_are_protocol_errors(data: bytes) -> None:
    with pytest.raises(socketmap.ProtocolError):
        socketmap.NetstringReader().feed(data)


def test_names_of_mx_accounts_are_relay_domains(store: Store) -> None:
    store.add_account(store.new_account(HOME, "heartbeat-c", mx=True, aliases=[f"alias.{ZONE}"]))
    store.add_account(store.new_account(f"web.{ZONE}", "heartbeat-c", mx=False))
    maps = MxMaps(store.r)
    assert _ask(maps, "domains", HOME) == socketmap.ok(HOME)
    assert _ask(maps, "domains", f"ALIAS.{ZONE}") == socketmap.ok(f"alias.{ZONE}")
    for key in (f"web.{ZONE}", ZONE, f"x.{HOME}", "example.org", f"user@{HOME}", "bad name", ""):
        assert _ask(maps, "domains", key) == socketmap.notfound(), key


def test_transport_goes_to_the_primary_name_and_skips_the_mx_lookup(store: Store) -> None:
    store.add_account(store.new_account(HOME, "heartbeat-c", mx=True, aliases=[f"alias.{ZONE}"]))
    maps = MxMaps(store.r)
    assert _ask(maps, "transport", f"user@alias.{ZONE}") == socketmap.ok(f"relay:[{HOME}]")
    assert _ask(maps, "transport", HOME) == socketmap.ok(f"relay:[{HOME}]")
    assert _ask(maps, "transport", "user@example.org") == socketmap.notfound()


def test_recipients_without_a_list_are_verified(store: Store) -> None:
    store.add_account(store.new_account(HOME, "heartbeat-c", mx=True))
    maps = MxMaps(store.r)
    assert _ask(maps, "recipient", f"anyone@{HOME}") == socketmap.ok("reject_unverified_recipient")
    assert _ask(maps, "recipient", HOME) == socketmap.notfound()
    assert _ask(maps, "recipient", "anyone@example.org") == socketmap.notfound()


def test_recipient_list_accepts_listed_and_refuses_the_rest(store: Store) -> None:
    acct = store.add_account(store.new_account(HOME, "heartbeat-c", mx=True, aliases=[f"alias.{ZONE}"]))
    store.r.hset(keys.account(acct.id), RECIPIENTS_FIELD, json.dumps(["Alice", f"bob@alias.{ZONE}"]))
    maps = MxMaps(store.r)
    assert _ask(maps, "recipient", f"alice@{HOME}") == socketmap.ok("DUNNO")
    assert _ask(maps, "recipient", f"ALICE@alias.{ZONE}") == socketmap.ok("DUNNO")
    assert _ask(maps, "recipient", f"bob@alias.{ZONE}") == socketmap.ok("DUNNO")
    assert _ask(maps, "recipient", f"bob@{HOME}") == socketmap.ok("550 5.1.1 User unknown")
    assert _ask(maps, "recipient", f"nosuchuser@{HOME}") == socketmap.ok("550 5.1.1 User unknown")


def test_an_unreadable_list_falls_back_to_verification() -> None:
    assert recipient_action("a", HOME, None) == "reject_unverified_recipient"
    from backup_mx.maps import parse_recipients

    assert parse_recipients("{not json") is None and parse_recipients('{"a": 1}') is None
    assert parse_recipients('["A ", ""]') == ("a",)


def test_changes_are_visible_at_the_next_lookup(store: Store) -> None:
    acct = store.add_account(store.new_account(HOME, "heartbeat-c", mx=True))
    maps = MxMaps(store.r)
    assert _ask(maps, "domains", HOME) == socketmap.ok(HOME)
    store.save_account(acct, replace(acct, mx=False))
    assert _ask(maps, "domains", HOME) == socketmap.notfound()
    store.remove_account(acct.id)
    assert _ask(maps, "transport", f"a@{HOME}") == socketmap.notfound()


def test_unknown_table_is_perm_and_redis_errors_are_temp() -> None:
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    maps = MxMaps(redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.5, retry=Retry(NoBackoff(), 0)))
    assert _ask(maps, "aliases", "x") == socketmap.perm("unknown table 'aliases'")
    assert _ask(maps, "domains", HOME) == socketmap.temp("hbdns account lookup failed: ConnectionError")
