"""Pins every Redis key string: a change here is a data migration, not a refactor."""

from __future__ import annotations

import pytest

from hbdns import keys


def test_deadline_members_per_family() -> None:
    assert [keys.deadline_member(42, f) for f in (4, 6, 0)] == ["42:4", "42:6", "42"]
    assert [keys.parse_deadline_member(m) for m in ("42:4", b"42:6", "42")] == [(42, 4), (42, 6), (42, 0)]
    for bad in ("42:5", "x:4", "", "42:"):
        with pytest.raises(ValueError):
            keys.parse_deadline_member(bad)


def test_global_keys() -> None:
    assert keys.zones() == "hbdns:zones"
    assert keys.names() == "hbdns:names"
    assert keys.accounts() == "hbdns:accounts"
    assert keys.account_seq() == "hbdns:seq:account"
    assert keys.dead_letters() == "hbdns:deadletter"
    assert keys.sent("1-0:email:a@b.de") == "hbdns:sent:1-0:email:a@b.de"
    assert keys.pending_sms() == "hbdns:sms:deferred"
    assert keys.notify_retry() == "hbdns:notify:retry"
    assert keys.ratelimit("auth", "192.0.2.7") == "hbdns:rl:auth:192.0.2.7"
    assert keys.flush_due() == "hbdns:flush:due"
    assert keys.flush_counts() == "hbdns:flush:counts"
    assert keys.migrations() == "hbdns:migrations"


def test_notification_queue_keys_share_a_hash_tag() -> None:
    queue = {
        keys.notify_queue(): "hbdns:{notify}:queue",
        keys.notify_jobs(): "hbdns:{notify}:jobs",
        keys.notify_queued_since(): "hbdns:{notify}:since",
        keys.notify_inflight(): "hbdns:{notify}:inflight",
        keys.notify_holds(): "hbdns:{notify}:holds",
        keys.notify_dead(): "hbdns:{notify}:dead",
        keys.notify_dead_index(): "hbdns:{notify}:dead:index",
        keys.notify_dead_dropped(): "hbdns:{notify}:dead:dropped",
        keys.notify_owners(): "hbdns:{notify}:owners",
    }
    assert list(queue) == list(queue.values())


def test_zone_keys_share_a_hash_tag() -> None:
    assert keys.zone("dyn.example.net") == "hbdns:zone:{z:dyn.example.net}"
    assert keys.zone_accounts("dyn.example.net") == "hbdns:zone:{z:dyn.example.net}:accounts"


def test_shard_keys_share_the_shard_tag() -> None:
    assert [keys.shard_of(i) for i in (0, 15, 16, 42)] == [0, 15, 0, 10]
    assert list(keys.all_shards()) == list(range(16))
    assert keys.deadlines(3) == "hbdns:deadlines:{s:3}"
    assert keys.events(3) == "hbdns:events:{s:3}"
    assert keys.events_trim(3) == "hbdns:events:trim:{s:3}"
    assert keys.stats(3) == "hbdns:stats:{s:3}"
    assert keys.ingest(3) == "hbdns:ingest:{s:3}"
    assert keys.serials(3) == "hbdns:serials:{s:3}"
    assert keys.shard_names(3) == "hbdns:names:{s:3}"
    assert keys.mass_events() == "hbdns:mass:events:{s:0}"
    for bad in (-1, 16):
        with pytest.raises(ValueError):
            keys.shard_tag(bad)


def test_account_keys_share_a_hash_tag() -> None:
    assert keys.account(42) == "hbdns:acct:{s:10}:42"
    assert keys.alive(42) == keys.alive(42, 4) == "hbdns:alive4:{s:10}:42"
    assert keys.alive(42, 6) == "hbdns:alive6:{s:10}:42"
    assert keys.alive_legacy(42) == "hbdns:alive:{s:10}:42"
    assert keys.account_log(42) == "hbdns:log:{s:10}:42"
    assert keys.sms_outage(42) == "hbdns:sms:outage:{s:10}:42"
    assert keys.notify_outage(42) == "hbdns:notify:outage:{s:10}:42"
    assert keys.acme_credentials(42) == "hbdns:acme:creds:{s:10}:42"
    per_account = (
        keys.account(42),
        keys.alive(42, 4),
        keys.alive(42, 6),
        keys.alive_legacy(42),
        keys.account_log(42),
        keys.sms_outage(42),
        keys.notify_outage(42),
        keys.acme_credentials(42),
        keys.deadlines(10),
        keys.events(10),
        keys.stats(10),
        keys.ingest(10),
        keys.serials(10),
        keys.shard_names(10),
    )
    tags = {k[k.index("{") : k.index("}") + 1] for k in per_account}
    assert tags == {"{s:10}"}
    assert {keys.parse_account_key(k) for k in per_account[:8]} == {42}
    assert keys.parse_account_key(keys.deadlines(10)) is None
    assert keys.parse_account_key("hbdns:acct:{s:3}:42") is None  # 42 is not in shard 3


def test_parse_alive_round_trip_and_rejects_others() -> None:
    assert keys.parse_alive(keys.alive(7)) == (7, 4)
    assert keys.parse_alive(keys.alive(7, 6).encode()) == (7, 6)
    assert keys.parse_alive(keys.alive_legacy(7)) == (7, 0)
    assert keys.parse_alive("hbdns:alive5:{s:7}:7") is None
    assert keys.parse_alive("hbdns:alive4:{s:6}:7") is None
    with pytest.raises(ValueError):
        keys.alive(7, 5)
    assert keys.parse_alive(keys.account(7)) is None
    assert keys.parse_alive("hbdns:alive:{s:7}:x") is None
    assert keys.parse_alive("other:alive:{a:7}") is None


def test_admin_api_and_status_page_keys() -> None:
    assert keys.api_tokens() == "hbdns:tokens"
    assert keys.api_token("0123456789abcdef") == "hbdns:token:0123456789abcdef"
    assert keys.status_session("ab" * 32) == "hbdns:session:" + "ab" * 32
    assert keys.badges() == "hbdns:badges"
