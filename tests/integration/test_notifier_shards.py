"""The notifier on the per-shard event streams (issue 16), on a real redis-server: one consumer
group on every shard's stream, read in one call (standalone) or per shard (as on a Cluster; the
same code path, chosen with ``per_shard``), acknowledged per stream, taken over per stream;
event ids ``<shard>/<entry id>`` that do not collide across shards, and migrated entries that keep
their old id. Accounts and entries are written directly, so that only the notifier is under test."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator

import pytest
import redis

from hbdns import config, event_streams, keys, notify_queue
from hbdns.etrn import FlushTarget
from hbdns.model import Account
from hbdns.mta_flush import MtaFlusher
from notifier.consumer import GROUP
from notifier.events import Event
from notifier.flush import FlushConsumer
from notifier.main import Notifier
from notifier.streams import CLUSTER_POLL_MS, ShardStreams
from tests.support.etrn import EtrnServer
from tests.support.events import consumers as stream_consumers
from tests.support.events import entries as stream_entries
from tests.support.servers import wait_for
from tests.support.services import env_for, settled
from tests.support.sinks import SmtpSink

AT = 1_733_000_000_000


def put_account(r: redis.Redis, account_id: int, **kw: object) -> Account:
    """An account stored as the store writes it, neutral since ``AT`` (its outage is open)."""
    a = Account(
        id=account_id, fqdn=f"h{account_id}.example.test", zone="example.test", plan="test-fast", hb_key=b"k" * 16,
        emails=(f"h{account_id}@example.org",), **kw,  # type: ignore[arg-type]
    )  # fmt: skip
    r.hset(keys.account(account_id), mapping=a.new_hash(AT))
    return a


def pending(r: redis.Redis, group: str = GROUP) -> list[tuple[str, str]]:
    """(event id, consumer) of what ``group`` was delivered and has not acknowledged, every shard."""
    out = []
    for s in keys.all_shards():
        for p in r.xpending_range(keys.events(s), group, min="-", max="+", count=1000):
            out.append((event_streams.event_id(s, p["message_id"]), str(p["consumer"])))
    return out


def consumers(r: redis.Redis) -> set[str]:
    return {str(c["name"]) for c in stream_consumers(r, GROUP)}


def events(r: redis.Redis, kind: str) -> list[Event]:
    """The events of ``kind`` in every shard, with their ids as the notifier gives them."""
    out = [Event.from_fields(event_streams.event_id(s, i, f), f) for s, i, f in stream_entries(r)]
    return [e for e in out if e.type == kind]


def neutralized(a: Account) -> dict[str, str]:
    return {"type": "neutralized", "account": str(a.id), "fqdn": a.fqdn, "at": str(AT), "reason": "missed"}


@pytest.fixture
def notifier(
    real_redis: redis.Redis, redis_url: str, smtp: SmtpSink, request: pytest.FixtureRequest
) -> Iterator[Notifier]:
    n = Notifier(config.load(env_for(redis_url, smtp)), r=real_redis)
    per_shard = getattr(request, "param", False)
    n.consumer.streams.per_shard = per_shard
    yield n
    n.stop()


def drain(n: Notifier, limit: int = 50) -> int:
    handled = 0
    for _ in range(limit):
        got = n.consume_step()
        handled += got
        if not got and settled(n.r):
            return handled
    raise AssertionError("the consumer did not settle")


@pytest.mark.parametrize("notifier", [False, True], ids=["one-call", "per-shard"], indirect=True)
def test_the_same_entry_id_in_every_shard_gives_every_account_its_message(
    real_redis: redis.Redis, smtp: SmtpSink, notifier: Notifier
) -> None:
    accounts = [put_account(real_redis, i) for i in range(1, keys.SHARDS + 1)]  # one per shard
    notifier.consumer.ensure_group()
    for a in accounts:  # the same entry id in 16 streams: 16 different events
        real_redis.xadd(keys.events(keys.shard_of(a.id)), neutralized(a), id=f"{AT}-0")
    assert drain(notifier) == keys.SHARDS
    assert sorted(m.rcpts[0] for m in smtp.mails) == sorted(a.emails[0] for a in accounts)
    ids = {e.id for e in events(real_redis, "neutralized")}
    assert ids == {f"{keys.shard_of(a.id)}/{AT}-0" for a in accounts}
    for a in accounts:  # each message's marker names its own shard's event
        key = notify_queue.message_key(f"{keys.shard_of(a.id)}/{AT}-0", "email", a.emails[0])
        assert real_redis.get(keys.sent(key)) == "sent"
    assert pending(real_redis) == []


def test_a_migrated_entry_keeps_its_old_id_so_its_sent_marker_still_matches(
    real_redis: redis.Redis, smtp: SmtpSink, notifier: Notifier
) -> None:
    done, todo = put_account(real_redis, 3), put_account(real_redis, 4)
    old_done, old_todo = f"{AT - 5000}-0", f"{AT - 4000}-0"
    sent = notify_queue.message_key(old_done, "email", done.emails[0])
    real_redis.set(keys.sent(sent), "sent")  # sent by the version before sharding
    notifier.consumer.ensure_group()
    real_redis.xadd(keys.events(3), {**neutralized(done), event_streams.LEGACY_FIELD: old_done})
    real_redis.xadd(keys.events(4), {**neutralized(todo), event_streams.LEGACY_FIELD: old_todo})
    drain(notifier)
    assert [m.rcpts[0] for m in smtp.mails] == [todo.emails[0]]  # not sent twice
    assert [e.id for e in events(real_redis, "neutralized")] == [old_done, old_todo]
    assert real_redis.get(keys.sent(notify_queue.message_key(old_todo, "email", todo.emails[0]))) == "sent"
    assert "legacy_id" not in events(real_redis, "neutralized")[1].data  # the id, not a field of the event


def test_a_restart_under_the_same_name_redoes_what_it_read_in_every_shard(
    real_redis: redis.Redis, smtp: SmtpSink, notifier: Notifier
) -> None:
    accounts = [put_account(real_redis, i) for i in (2, 7, 13)]
    notifier.consumer.ensure_group()
    for a in accounts:
        real_redis.xadd(keys.events(keys.shard_of(a.id)), neutralized(a))
    crashed = ShardStreams(real_redis, GROUP, notifier.name)
    assert len(crashed.read(0)) == 3  # read, then the process died before it acknowledged
    assert len(pending(real_redis)) == 3
    drain(notifier)  # the same name: its own pending entries first
    assert len(smtp.mails) == 3 and pending(real_redis) == []


def test_a_dead_consumers_entries_are_taken_over_in_every_shard(real_redis: redis.Redis) -> None:
    dead, alive = ShardStreams(real_redis, GROUP, "dead"), ShardStreams(real_redis, GROUP, "alive")
    dead.ensure_group()
    for s in (0, 5, 15):
        for i in range(3):
            real_redis.xadd(keys.events(s), {"type": "test", "account": str(s), "n": str(i)})
    assert len(dead.read(0)) == 9
    assert alive.claim_from(frozenset({"other"}), 0) == 0  # names nobody
    assert alive.claim_from(frozenset({"dead"}), 0) == 9
    got = alive.read(0)  # its own now, read first
    assert sorted((e.shard, e.fields["n"]) for e in got) == [(s, str(i)) for s in (0, 5, 15) for i in range(3)]
    pipe = real_redis.pipeline(transaction=False)
    alive.ack(pipe, got)
    pipe.execute()
    assert pending(real_redis) == []


def test_autoclaim_takes_idle_entries_of_every_shard_and_tidy_removes_idle_consumers(
    real_redis: redis.Redis,
) -> None:
    stuck, other = ShardStreams(real_redis, GROUP, "stuck"), ShardStreams(real_redis, GROUP, "other")
    stuck.ensure_group()
    for s in (1, 8):
        real_redis.xadd(keys.events(s), {"type": "test", "account": str(s)})
    assert len(stuck.read(0)) == 2
    assert other.autoclaim(60_000) == []  # not idle long enough
    taken = other.autoclaim(0)
    assert sorted(e.shard for e in taken) == [1, 8] and all(e.fields["type"] == "test" for e in taken)
    assert {c for _, c in pending(real_redis)} == {"other"}
    pipe = real_redis.pipeline(transaction=False)
    other.ack(pipe, taken)
    pipe.execute()
    assert other.tidy(0) == keys.SHARDS  # a read names the consumer in every shard's group
    assert consumers(real_redis) == {"other"}


@pytest.mark.parametrize("per_shard", [False, True], ids=["one-call", "per-shard"])
def test_a_lost_shard_stream_gets_its_group_back_and_later_entries_are_read(
    real_redis: redis.Redis, per_shard: bool
) -> None:
    c = ShardStreams(real_redis, GROUP, "c", per_shard=per_shard)
    c.ensure_group()
    real_redis.delete(keys.events(6))  # Redis without persistence restarted (this shard's node)
    assert c.read(0) == []  # NOGROUP: noted, not raised
    real_redis.xadd(keys.events(6), {"type": "test", "account": "6"})
    real_redis.xadd(keys.events(9), {"type": "test", "account": "9"})
    got = []
    for _ in range(3):
        got += c.read(0)
    assert sorted(e.shard for e in got) == [6, 9]


def test_one_blocking_call_wakes_for_an_entry_in_any_shard(real_redis: redis.Redis) -> None:
    c = ShardStreams(real_redis, GROUP, "c", per_shard=False)
    c.ensure_group()
    c.read(0)

    def add() -> None:  # once the read is blocked on all 16 streams
        wait_for(lambda: int(real_redis.info("clients")["blocked_clients"]) == 1, 10, what="a blocked read")
        real_redis.xadd(keys.events(11), {"type": "test", "account": "11"})

    writer = threading.Thread(target=add, daemon=True)
    writer.start()
    start = time.monotonic()
    got = c.read(10_000)
    writer.join(10)
    assert [e.shard for e in got] == [11]
    assert time.monotonic() - start < 5  # woken by the entry, not by the 10 s block


def test_per_shard_reads_pause_only_briefly_when_all_shards_are_empty(real_redis: redis.Redis) -> None:
    c = ShardStreams(real_redis, GROUP, "c", per_shard=True)
    c.ensure_group()
    c.read(0)
    start = time.monotonic()
    assert c.read(10_000) == []
    assert time.monotonic() - start < 5  # CLUSTER_POLL_MS, not the caller's 10 s
    real_redis.xadd(keys.events(3), {"type": "test", "account": "3"})
    start = time.monotonic()
    assert [e.shard for e in c.read(10_000)] == [3]  # data: no wait at all
    assert time.monotonic() - start < CLUSTER_POLL_MS / 1000 + 5


def test_a_batch_is_spread_over_the_shards(real_redis: redis.Redis) -> None:
    c = ShardStreams(real_redis, GROUP, "c", batch=200)
    c.ensure_group()
    pipe = real_redis.pipeline(transaction=False)
    for s in keys.all_shards():
        for i in range(30):
            pipe.xadd(keys.events(s), {"type": "test", "n": str(i)})
    pipe.execute()
    got = c.read(0)
    assert len(got) == keys.SHARDS * c.count and c.count == 16  # ceil(200 / 16) -> at least 16
    assert len(c.read(0)) == keys.SHARDS * (30 - c.count)  # the rest
    again = ShardStreams(real_redis, GROUP, "c", batch=200).read(0)  # a restart: its own pending first
    assert [(e.shard, e.entry_id) for e in again] == [(e.shard, e.entry_id) for e in got]


def test_rebuild_finds_a_dead_letters_event_by_its_id(real_redis: redis.Redis, notifier: Notifier) -> None:
    a, b = put_account(real_redis, 5), put_account(real_redis, 21)  # both in shard 5
    entry = real_redis.xadd(keys.events(5), neutralized(a))
    old = f"{AT - 9000}-3"
    real_redis.xadd(keys.events(5), {**neutralized(b), event_streams.LEGACY_FIELD: old})
    spec = {"event_id": f"5/{entry}", "channel": "email", "recipient": a.emails[0]}
    m = notifier.consumer.rebuild(spec)
    assert m is not None and m.event_id == f"5/{entry}" and m.recipient == a.emails[0]
    m = notifier.consumer.rebuild({**spec, "event_id": old, "recipient": b.emails[0]})
    assert m is not None and m.event_id == old and m.account == b.id
    assert notifier.consumer.rebuild({**spec, "event_id": f"6/{entry}"}) is None  # another shard's
    assert notifier.consumer.rebuild({**spec, "event_id": "junk"}) is None


def test_metrics_sum_the_group_over_the_shards(real_redis: redis.Redis, notifier: Notifier) -> None:
    notifier.consumer.ensure_group()
    for s in (2, 4, 4, 9):
        real_redis.xadd(keys.events(s), {"type": "test", "account": str(s)})
    real_redis.xreadgroup(GROUP, "x", {keys.events(4): ">"}, count=1)
    sample = {s.name: s.value for m in notifier.registry.collect() for s in m.samples}
    assert sample["hbdns_notifier_stream_pending"] == 1 and sample["hbdns_notifier_stream_lag"] == 3


def test_the_flush_consumer_reads_every_shard_from_its_start(real_redis: redis.Redis) -> None:
    etrn = EtrnServer().start()
    try:
        mx = [put_account(real_redis, i, mx=True) for i in (1, 2, 18)]
        real_redis.xadd(keys.events(1), {"type": "recovered", "account": "1"})  # before the group: not flushed
        flusher = MtaFlusher([FlushTarget("smtp", "127.0.0.1", etrn.port)], attempts=2, backoff=0.05, helo="t")
        c = FlushConsumer(real_redis, flusher, {}, name="f", again_after=0.2)
        c.ensure_group()
        for a in mx:
            real_redis.xadd(keys.events(keys.shard_of(a.id)), {"type": "recovered", "account": str(a.id)})
        assert c.step(block_ms=0) == 3
        assert sorted(etrn.domains()) == sorted(a.fqdn for a in mx)
        [log_entry] = [json.loads(e) for e in real_redis.lrange(keys.account_log(18), 0, -1)]
        assert log_entry["event_id"].startswith("2/") and log_entry["why"] == "recovered"
        assert pending(real_redis, "hbdns-flush") == []
    finally:
        etrn.stop()
