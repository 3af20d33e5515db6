"""The lookup hot path on the sharded schema: the global index finds a name, its shard confirms it;
the name -> id map saves the discovery a round trip, never an answer."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
import redis
from redis.crc import key_slot

from hbdns import keys, scripts
from hbdns.resp import BatchConnection, ConnectionLost
from pdns_backend.accounts import AccountReader
from pdns_backend.answers import ACCOUNT_FIELDS
from tests.support.sharded_accounts import drop_name, put_account

Sent = list[tuple[int, bytes]]


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


@pytest.fixture
def sent(r: redis.Redis, monkeypatch: pytest.MonkeyPatch) -> Iterator[Sent]:
    """Every payload any BatchConnection sends, with the connection's id (the script loaded first,
    so that no NOSCRIPT retry adds a call)."""
    r.script_load(scripts.LOOKUP.source)
    log: Sent = []
    real = BatchConnection.send

    def spy(self: BatchConnection, payload: bytes, count: int) -> None:
        log.append((id(self), payload))
        real(self, payload, count)

    monkeypatch.setattr(BatchConnection, "send", spy)
    yield log


def commands(log: Sent, name: bytes) -> int:
    return sum(p.count(b"\r\n" + name + b"\r\n") for _, p in log)


def test_fields_and_liveness_per_name_in_order_one_call_across_shards(r: redis.Redis, sent: Sent) -> None:
    put_account(r, 1, "live.example.com", aliases=("www.example.com",), ipv4="203.0.113.5", live_ms=60_000)
    put_account(r, 18, "idle.example.com", plan="setip-c", mx=True)  # shard 2
    reader = AccountReader(r)
    names = ["www.example.com", "nope.example.com", "idle.example.com"]
    got = [fields(x) for x in reader.fetch(names)]
    assert got[0] is not None and got[2] is not None
    assert (got[0]["fqdn"], got[0]["ipv4"], got[0]["alive"]) == ("live.example.com", "203.0.113.5", 1)
    assert got[1] is None
    assert (got[2]["plan"], got[2]["mx"], got[2]["alive"]) == ("setip-c", "1", 0)
    # the answer cache's part: the account id, and how long the alive key lives (-1: not live)
    assert got[0]["id"] == "1" and 0 < int(got[0]["pttl"]) <= 60_000  # type: ignore[call-overload]
    assert got[0]["pttl6"] == -1 and got[2]["pttl"] == -1  # not live: no IPv6 beat, no beat at all
    assert len(reader) == 2  # names without an account are not remembered
    assert (commands(sent, b"HMGET"), commands(sent, b"EVALSHA")) == (1, 1)  # discovery, then one call
    sent.clear()
    assert [x and x["fqdn"] for x in map(fields, reader.fetch(names))] == [x and x["fqdn"] for x in got]
    # known names: one script call for both shards; the unknown one costs the discovery again
    assert (commands(sent, b"HMGET"), commands(sent, b"EVALSHA")) == (1, 1)
    sent.clear()
    reader.fetch(["idle.example.com", "www.example.com"])
    assert (commands(sent, b"HMGET"), commands(sent, b"EVALSHA")) == (0, 1)
    reader.forget()  # what the benchmark's first sight does
    sent.clear()
    reader.fetch(["idle.example.com"])
    assert (commands(sent, b"HMGET"), commands(sent, b"EVALSHA"), len(reader)) == (1, 1, 1)


def test_a_name_moved_to_an_account_of_another_shard_is_found_again_at_once(r: redis.Redis, sent: Sent) -> None:
    put_account(r, 3, "host.example.com")
    reader = AccountReader(r)
    assert fields(reader.fetch(["host.example.com"])[0])["id"] == "3"  # type: ignore[index]
    drop_name(r, 3, "host.example.com")
    assert reader.fetch(["host.example.com"]) == [None]
    assert len(reader) == 0
    put_account(r, 20, "host.example.com", plan="setip-c")  # shard 4
    sent.clear()
    assert fields(reader.fetch(["host.example.com"])[0])["plan"] == "setip-c"  # type: ignore[index]
    # the map still had nothing: discovery, then the confirmation in shard 4
    assert (commands(sent, b"HMGET"), commands(sent, b"EVALSHA")) == (1, 1)
    # moved on while remembered: shard 4 refutes the id, the global index gives the new one
    drop_name(r, 20, "host.example.com")
    put_account(r, 37, "host.example.com", plan="heartbeat-a")  # shard 5
    sent.clear()
    assert fields(reader.fetch(["host.example.com"])[0])["plan"] == "heartbeat-a"  # type: ignore[index]
    assert (commands(sent, b"HMGET"), commands(sent, b"EVALSHA")) == (1, 2)


def test_a_name_given_to_another_account_of_the_same_shard_is_asked_again_with_its_id(
    r: redis.Redis, sent: Sent
) -> None:
    put_account(r, 5, "mail.example.com")
    reader = AccountReader(r)
    reader.fetch(["mail.example.com"])
    put_account(r, 21, "mail.example.com", plan="setip-c")  # shard 5 too: both indexes now say 21
    sent.clear()
    assert fields(reader.fetch(["mail.example.com"])[0])["id"] == "21"  # type: ignore[index]
    assert (commands(sent, b"HMGET"), commands(sent, b"EVALSHA")) == (0, 2)  # the shard named the id


def test_an_index_entry_its_shard_does_not_confirm_is_no_account(r: redis.Redis) -> None:
    r.hset(keys.names(), "ghost.example.com", "999")  # a half-written (or corrupt) entry
    reader = AccountReader(r)
    assert reader.fetch(["ghost.example.com"]) == [None]
    assert len(reader) == 0  # not remembered
    # the shard's index decides even when the account hash is there
    put_account(r, 7, "half.example.com")
    r.hdel(keys.shard_names(7), "half.example.com")
    assert reader.fetch(["half.example.com"]) == [None]


def test_a_full_map_starts_afresh_and_answers_stay_right(r: redis.Redis) -> None:
    names = [f"h{i}.example.com" for i in range(5)]
    for i, n in enumerate(names):
        put_account(r, i + 1, n)
    reader = AccountReader(r, max_names=3)
    for _ in range(2):
        assert [fields(x)["fqdn"] for x in reader.fetch(names)] == names  # type: ignore[index]
        assert len(reader) <= 3


def test_duplicate_names_in_one_batch(r: redis.Redis) -> None:
    put_account(r, 9, "dup.example.com")
    got = AccountReader(r).fetch(["dup.example.com", "x.example.com", "dup.example.com"])
    assert got[0] == got[2] and got[0] is not None and got[1] is None


def test_a_name_whose_id_keeps_changing_fails_the_lookup(r: redis.Redis, monkeypatch: pytest.MonkeyPatch) -> None:
    put_account(r, 1, "host.example.com")
    reader = AccountReader(r)
    ids = iter(range(100, 200))
    calls: list[int] = []

    def moving(names: list[str], parts: object) -> list[object]:  # the shard names another id every call
        calls.append(1)
        return [str(next(ids)) for _ in names]

    monkeypatch.setattr(reader, "_confirm", moving)
    with pytest.raises(redis.RedisError, match="kept changing"):
        reader.fetch(["host.example.com"])
    assert len(calls) == AccountReader.PASSES


# --- Redis Cluster: one call per shard, batched per primary ---------------------------------------


class FakeRouter:
    """Three "primaries" (connections to one fakeredis server) owning the slot range in thirds,
    as ``hbdns.cluster_route.ClusterRouter`` would hand them out."""

    def __init__(self, r: redis.Redis) -> None:
        self.conns = [BatchConnection(r) for _ in range(3)]
        self.refreshes = 0

    def connection(self, slot_or_key: int | str) -> BatchConnection:
        slot = slot_or_key if isinstance(slot_or_key, int) else key_slot(slot_or_key.encode())
        return self.conns[slot * 3 // 16384]

    def refresh(self) -> None:
        self.refreshes += 1


def no_pttl(rows: list[object]) -> list[object]:
    return [row[:-2] if isinstance(row, list) else row for row in rows]


def tags(payload: bytes) -> set[bytes]:
    return set(re.findall(rb"\{s:\d+\}", payload))


def test_on_cluster_each_call_is_one_shard_and_each_primary_one_send(r: redis.Redis, sent: Sent) -> None:
    names = [f"c{i}.example.com" for i in range(40)]
    for i, n in enumerate(names):
        put_account(r, i + 1, n, ipv4=f"203.0.113.{i + 1}", live_ms=60_000 if i % 2 else None)
    standalone = no_pttl(AccountReader(r).fetch(names))
    router = FakeRouter(r)
    reader = AccountReader(r, router=lambda: router)
    assert no_pttl(reader.fetch(names)) == standalone  # first sight: discovery, then confirmations
    sent.clear()
    assert no_pttl(reader.fetch(names)) == standalone
    evals = [(conn, p) for conn, p in sent if b"EVALSHA" in p]
    assert len(evals) == len({conn for conn, _ in evals}) <= 3  # one send per primary
    for _conn, payload in evals:
        calls = payload.split(b"EVALSHA")[1:]
        assert sum(len(tags(c)) for c in calls) == len(calls)  # each call: one shard's tag only
    assert sum(len(p.split(b"EVALSHA")) - 1 for _, p in evals) == keys.SHARDS  # 40 names: every shard
    # what the answer cache checks is tracked: every primary this batch read from
    assert {id(c) for c in reader.connections()} == {conn for conn, _ in evals}


def test_on_cluster_a_lost_connection_rereads_the_slot_map_and_asks_again(
    r: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    put_account(r, 2, "a.example.com")
    put_account(r, 3, "b.example.com")
    router = FakeRouter(r)
    reader = AccountReader(r, router=lambda: router)
    want = AccountReader(r).fetch(["a.example.com", "b.example.com"])
    real = BatchConnection.read
    failed: list[int] = []

    def once(self: BatchConnection, count: int) -> list[object]:
        if not failed:
            failed.append(1)
            self.close()
            raise ConnectionLost("gone")
        return real(self, count)

    monkeypatch.setattr(BatchConnection, "read", once)
    assert reader.fetch(["a.example.com", "b.example.com"]) == want
    assert router.refreshes == 1
    assert all(c.inflight == 0 for c in router.conns)  # nothing left unread on any primary


def test_on_cluster_a_moved_reply_reroutes(r: redis.Redis, monkeypatch: pytest.MonkeyPatch) -> None:
    put_account(r, 4, "m.example.com")
    router = FakeRouter(r)
    reader = AccountReader(r, router=lambda: router)
    want = AccountReader(r).fetch(["m.example.com"])
    reader.fetch(["m.example.com"])
    real = BatchConnection.read
    moved: list[int] = []

    def moving(self: BatchConnection, count: int) -> list[object]:
        out = real(self, count)
        if not moved:
            moved.append(1)
            return [redis.exceptions.MovedError("1234 127.0.0.1:7001")] * count
        return out

    monkeypatch.setattr(BatchConnection, "read", moving)
    assert reader.fetch(["m.example.com"]) == want
    assert router.refreshes == 1
