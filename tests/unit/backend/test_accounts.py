"""The lookup hot path's name -> id map: it saves the name index a round trip, never an answer."""

from __future__ import annotations

import dataclasses

import pytest
import redis

from hbdns import keys
from hbdns.liveness import BeatRequest
from hbdns.store import Store
from pdns_backend.accounts import AccountReader
from pdns_backend.answers import ACCOUNT_FIELDS


def fields(raw: list[object] | None) -> dict[str, object] | None:
    if raw is None:
        return None
    n = len(ACCOUNT_FIELDS)
    assert len(raw) == n + 4
    return {
        **dict(zip(ACCOUNT_FIELDS, raw[:n], strict=True)),
        "alive": raw[n],
        "id": raw[n + 1],
        "pttl": raw[n + 2],  # IPv4
        "pttl6": raw[n + 3],
    }


def test_fields_and_liveness_per_name_in_order(store: Store, r: redis.Redis) -> None:
    live = store.add_account(store.new_account("live.example.com", "heartbeat-c", aliases=["www.example.com"]))
    store.add_account(store.new_account("idle.example.com", "setip-c", mx=True))
    store.liveness.beat(BeatRequest(live.id, live.zone, 60_000, ipv4="203.0.113.5"))
    reader = AccountReader(r)
    got = [fields(x) for x in reader.fetch(["www.example.com", "nope.example.com", "idle.example.com"])]
    assert got[0] is not None and got[2] is not None
    assert (got[0]["fqdn"], got[0]["ipv4"], got[0]["alive"]) == ("live.example.com", "203.0.113.5", 1)
    assert got[1] is None
    assert (got[2]["plan"], got[2]["mx"], got[2]["alive"]) == ("setip-c", "1", 0)
    # the answer cache's part: the account id, and how long the alive key lives (-1: not live)
    assert got[0]["id"] == str(live.id) and 0 < int(got[0]["pttl"]) <= 60_000  # type: ignore[call-overload]
    assert got[0]["pttl6"] == -1 and got[2]["pttl"] == -1  # not live: no IPv6 beat, no beat at all
    assert len(reader) == 2  # names without an account are not remembered


def test_a_name_given_to_another_account_is_answered_from_it_at_once(store: Store, r: redis.Redis) -> None:
    first = store.add_account(store.new_account("host.example.com", "heartbeat-c"))
    reader = AccountReader(r)
    assert fields(reader.fetch(["host.example.com"])[0])["plan"] == "heartbeat-c"  # type: ignore[index]
    store.remove_account(first.id)
    assert reader.fetch(["host.example.com"]) == [None]
    assert len(reader) == 0
    second = store.add_account(store.new_account("host.example.com", "setip-c"))
    assert second.id != first.id
    assert fields(reader.fetch(["host.example.com"])[0])["plan"] == "setip-c"  # type: ignore[index]


def test_an_alias_moved_between_accounts_follows_the_name_index(store: Store, r: redis.Redis) -> None:
    a = store.add_account(store.new_account("a.example.com", "heartbeat-c", aliases=["mail.example.com"]))
    b = store.add_account(store.new_account("b.example.com", "heartbeat-c"))
    reader = AccountReader(r)
    assert fields(reader.fetch(["mail.example.com"])[0])["fqdn"] == "a.example.com"  # type: ignore[index]
    store.save_account(a, dataclasses.replace(a, aliases=()))
    store.save_account(b, dataclasses.replace(b, aliases=("mail.example.com",)))
    assert fields(reader.fetch(["mail.example.com"])[0])["fqdn"] == "b.example.com"  # type: ignore[index]


def test_a_full_map_starts_afresh_and_answers_stay_right(store: Store, r: redis.Redis) -> None:
    names = [f"h{i}.example.com" for i in range(5)]
    for n in names:
        store.add_account(store.new_account(n, "heartbeat-c"))
    reader = AccountReader(r, max_names=3)
    for _ in range(2):
        assert [fields(x)["fqdn"] for x in reader.fetch(names)] == names  # type: ignore[index]
        assert len(reader) <= 3


def test_a_corrupt_name_index_entry_is_no_account(store: Store, r: redis.Redis) -> None:
    r.hset(keys.names(), "ghost.example.com", "999")  # an id without an account hash
    assert fields(AccountReader(r).fetch(["ghost.example.com"])[0]) == {
        **dict.fromkeys(ACCOUNT_FIELDS),
        "alive": 0,
        "id": "999",
        "pttl": -1,
        "pttl6": -1,
    }


def test_a_name_whose_id_keeps_changing_fails_the_lookup(
    store: Store, r: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.add_account(store.new_account("host.example.com", "heartbeat-c"))
    reader = AccountReader(r)
    ids = iter(range(100, 200))
    calls: list[int] = []

    def moving(names: list[str], learnt: object) -> list[object]:  # the name index changes every call
        calls.append(1)
        return [str(next(ids)) for _ in names]

    monkeypatch.setattr(reader, "_call", moving)
    with pytest.raises(redis.RedisError, match="kept changing"):
        reader.fetch(["host.example.com"])
    assert len(calls) == AccountReader.PASSES
