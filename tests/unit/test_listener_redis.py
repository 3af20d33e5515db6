"""The listener's hand-encoded Redis commands, pinned byte for byte to redis-py and to
:meth:`hbdns.liveness.Liveness.beat_argv` (no server: encoding only; the round trips run against a
real redis-server in tests/integration/test_listener_redis.py)."""

from __future__ import annotations

import fakeredis
import pytest
import redis

from hbdns import keys, scripts
from hbdns.liveness import BeatRequest, Liveness, beat_shard_keys, by_shard
from hbdns.resp import BatchConnection
from heartbeat_listener.redis_io import RedisAccounts, RedisBeats

ZONE = "dyn.test"


def redis_py_packed(*args: object) -> bytes:
    return b"".join(redis.Connection().pack_command(*args))


_REQS = [
    BeatRequest(7, ZONE, 15000, ipv4="203.0.113.7", counter=1_700_000_000_000),
    BeatRequest(123456, "a.b.example", 135000, ipv6="2001:db8::1", counter=5, offline=True),
    BeatRequest(0, ZONE, 1, counter=None),
    BeatRequest(8, ZONE, 15000, ipv4="203.0.113.8", counter=1_700_000_000_001, fp="ab" * 8),
]


@pytest.mark.parametrize("reqs", [_REQS[:1], _REQS[1:2], _REQS[2:3], _REQS, _REQS[::-1]])
def test_beat_batch_is_what_redis_py_would_send(reqs: list[BeatRequest], fake_redis: redis.Redis) -> None:
    lv = Liveness(fake_redis, max_skew_ms=12345, events_maxlen=77, log_size=9)
    writer = RedisBeats(BatchConnection(fake_redis), lv)
    k, a = lv.beat_argv(reqs)
    expected = redis_py_packed("EVALSHA", scripts.BEAT.sha, len(k), *k, *a)
    assert writer.encode(reqs) == expected == scripts.BEAT.command(k, a)
    assert writer.encode(reqs) == expected  # again, from the parts it keeps per account and zone


def test_each_zone_and_shard_of_a_batch_is_passed_once(fake_redis: redis.Redis) -> None:
    lv = Liveness(fake_redis)
    k, a = lv.beat_argv(_REQS)  # ids 7, 123456, 0, 8: shards 7, 0, 0, 8
    rows = [7, 0, 8]
    assert k[:15] == [key for s in rows for key in beat_shard_keys(s)]
    assert beat_shard_keys(7) == (keys.deadlines(7), keys.events(7), keys.stats(7), keys.ingest(7), keys.serials(7))
    assert a[4:8] == ["3", "2", ZONE, "a.b.example"]
    assert k[15:20] == [keys.account(7), keys.alive(7, 4), keys.alive(7, 6), keys.alive_legacy(7), keys.account_log(7)]
    assert a[8 + 9 :: 10] == ["1", "2", "2", "3"]  # each beat's last argument: its account's row


def test_a_batch_splits_by_shard_in_order_of_appearance() -> None:
    reqs = [BeatRequest(i, ZONE, 1) for i in (3, 19, 4, 35, 3)]
    assert by_shard(reqs) == {3: [0, 1, 3, 4], 4: [2]}


@pytest.mark.parametrize("ages", [[0, 0, 0, 0], [1500, 0, 70_000, 1]])
def test_held_beats_carry_their_age_as_redis_py_would_send_it(ages: list[int], fake_redis: redis.Redis) -> None:
    lv = Liveness(fake_redis)
    k, a = lv.beat_argv(_REQS, ages=ages)
    assert a[8 + 8 :: 10] == [str(x) if x else "" for x in ages]  # each beat's age
    expected = redis_py_packed("EVALSHA", scripts.BEAT.sha, len(k), *k, *a)
    assert RedisBeats(BatchConnection(fake_redis), lv).encode(_REQS, ages) == expected


def test_lookup_batch_is_what_redis_py_would_send(fake_redis: redis.Redis) -> None:
    lookups = RedisAccounts(BatchConnection(fake_redis), {})
    expected = b"".join(
        redis_py_packed("HMGET", keys.account(i), "hb_key", "plan", "zone", "fp") for i in (1, 42, 9876543)
    )
    assert lookups.encode([1, 42, 9876543]) == expected


def test_the_writer_works_on_any_redis_py_connection() -> None:
    """fakeredis' connections are no sockets: the public connection API carries the same bytes."""
    r = fakeredis.FakeRedis(decode_responses=True)
    [res] = RedisBeats(BatchConnection(r), Liveness(r)).beats([BeatRequest(1, ZONE, 15000, ipv4="203.0.113.7")])
    assert res.status == "gone"
