"""The beat writer's durability on real redis-servers (no Sentinel): WAIT after a transition, what a
timeout costs, READONLY from a demoted primary, and beats held while Redis was away applied again on
the next connection (heartbeat_listener.held). The failover itself is tested in test_sentinel.py."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from hbdns import config, keys
from hbdns.connection import connect
from hbdns.liveness import BeatRequest
from hbdns.model import Zone
from hbdns.resp import BatchConnection, ConnectionLost
from hbdns.store import Store
from heartbeat_listener.protocol import StoreUnavailable
from heartbeat_listener.redis_io import RedisBeats
from heartbeat_listener.replication import ReplicaWait
from tests.support.events import fields as stream_fields
from tests.support.events import length as stream_length
from tests.support.servers import RedisServer, wait_for

ZONE = "dur.test"


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[RedisServer, RedisServer]]:
    """A primary and its replica (link up)."""
    primary = RedisServer(tmp_path / "p", extra=["repl-diskless-sync-delay 0"]).start()
    replica = RedisServer(tmp_path / "r", extra=[f"replicaof 127.0.0.1 {primary.port}"]).start()
    wait_for(lambda: connect(replica.url).info("replication")["master_link_status"] == "up", 20, what="replica link")
    yield primary, replica
    replica.stop()
    primary.stop()


def accounts(r: redis.Redis, n: int = 1) -> tuple[Store, list[int]]:
    store = Store(r, config.load({}))
    store.add_zone(Zone(ZONE, ("ns1.test",), "hostmaster.test", "192.0.2.1"))
    ids = [store.add_account(store.new_account(f"h{i}.{ZONE}", "heartbeat-c")).id for i in range(n)]
    return store, ids


def beat(account_id: int, ip: str, counter: int) -> BeatRequest:
    return BeatRequest(account_id, ZONE, 15000, ipv4=ip, counter=counter)


def ip_changes(r: redis.Redis, account_id: int) -> list[str]:
    return [f["new"] for f in stream_fields(r) if f["type"] == "ip_changed" and f["account"] == str(account_id)]


def test_wait_confirms_a_transition_once_the_replica_has_it(pair: tuple[RedisServer, RedisServer]) -> None:
    primary, replica = pair
    r = connect(primary.url)
    store, [a, b] = accounts(r, 2)
    writer = RedisBeats(BatchConnection(r), store.liveness, wait_replicas=1, wait_timeout=2.0)
    t = now_ms()
    assert writer.beats([beat(a, "203.0.113.1", t)])[0].changed  # recovered: held until WAIT answers
    assert [q.account_id for q in writer.held.beats()] == [a]  # its WAIT is in flight
    writer.confirm(block=True)
    assert (len(writer.held), writer.counters()["hbdns_heartbeat_wait_timeouts_total"]) == (0, 0)
    [res] = writer.beats([beat(b, "203.0.113.9", t)])
    assert res.changed
    wait_for(lambda: not writer.beats([beat(a, "203.0.113.1", now_ms())])[0].changed and not writer.held, 5)
    assert connect(replica.url).hget(keys.account(b), "ipv4") == "203.0.113.9"


def test_transitions_of_many_batches_share_one_wait(pair: tuple[RedisServer, RedisServer]) -> None:
    primary, _ = pair
    r = connect(primary.url)
    store, ids = accounts(r, 20)
    writer = RedisBeats(BatchConnection(r), store.liveness, wait_replicas=1, wait_timeout=1.0)
    waits = r.info("commandstats").get("cmdstat_wait", {}).get("calls", 0)
    t = now_ms()
    started = time.monotonic()
    for i, account_id in enumerate(ids):  # 20 batches, each with a transition, well within WAIT_EVERY
        writer.beats([beat(account_id, "203.0.113.1", t + i)])
    sent = r.info("commandstats")["cmdstat_wait"]["calls"] - waits
    assert sent <= 1 + (time.monotonic() - started) / ReplicaWait.WAIT_EVERY
    wait_for(lambda: not writer.beats([beat(ids[0], "203.0.113.1", now_ms())])[0].changed and not writer.held, 5)


def test_without_a_replica_the_beats_do_not_wait_and_stay_held(tmp_path: Path) -> None:
    """A dead replica (here: none at all): WAIT times out on its own connection, the beat batches
    never wait for it, and after the timeout no WAIT is sent for a while."""
    server = RedisServer(tmp_path / "solo").start()
    try:
        r = connect(server.url)
        store, ids = accounts(r, 6)
        writer = RedisBeats(BatchConnection(r), store.liveness, wait_replicas=1, wait_timeout=0.5)
        t = now_ms()
        started = time.monotonic()
        for i, account_id in enumerate(ids[:3]):  # each batch records a transition
            assert writer.beats([beat(account_id, f"203.0.113.{i + 1}", t)])[0].changed
        assert time.monotonic() - started < 0.5  # not held up by the WAIT in flight
        writer.confirm(block=True)
        assert (
            writer.counters()["hbdns_heartbeat_wait_timeouts_total"] >= 1 and len(writer.held) == 3
        )  # unconfirmed: kept
        waits = r.info("commandstats")["cmdstat_wait"]["calls"]
        for i, account_id in enumerate(ids[3:]):
            assert writer.beats([beat(account_id, f"203.0.113.{i + 4}", t)])[0].changed
        assert r.info("commandstats")["cmdstat_wait"]["calls"] == waits  # paused after the timeout
        assert len(writer.held) == 6
    finally:
        server.stop()


def test_a_demoted_primary_answers_readonly_and_the_batch_is_held(pair: tuple[RedisServer, RedisServer]) -> None:
    """The primary the writer talks to becomes a replica (a failover the connection survived): the
    READONLY reply is a lost connection, nothing of the batch applied, its beats held; on the next
    connection (here: the same server, promoted again) they run first and their transition is
    recorded, its names purged."""
    primary, replica = pair
    r = connect(primary.url)
    store, [a, b] = accounts(r, 2)
    purged: list[str] = []
    writer = RedisBeats(BatchConnection(r), store.liveness, wait_replicas=1, wait_timeout=1.0, purge=purged.extend)
    t = now_ms()
    writer.beats([beat(a, "203.0.113.1", t), beat(b, "203.0.113.2", t)])
    writer.confirm(block=True)
    assert not writer.held
    other = connect(replica.url)
    other.replicaof("no", "one")
    r.replicaof("127.0.0.1", replica.port)  # the writer's server is a replica now; its connection stays
    wait_for(lambda: r.info("replication")["master_link_status"] == "up", 20, what="demoted primary in sync")
    with pytest.raises(StoreUnavailable, match="READONLY"):
        writer.beats([beat(a, "203.0.113.5", t + 1)])
    assert not writer.conn.connected and [q.ipv4 for q in writer.held.beats()] == ["203.0.113.5"]
    r.replicaof("no", "one")
    assert writer.beats([beat(b, "203.0.113.2", t + 1)])[0].status == "ok"
    assert (writer.reapplied, writer.rerecorded) == (1, 1)
    assert purged == [f"h0.{ZONE}"]
    assert r.hget(keys.account(a), "ipv4") == "203.0.113.5"
    assert ip_changes(r, a) == ["203.0.113.1", "203.0.113.5"]


def test_beats_that_could_not_be_sent_run_when_redis_is_back(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "aof", persist=True).start()
    try:
        r = connect(server.url)
        store, [a, b] = accounts(r, 2)
        writer = RedisBeats(BatchConnection(r), store.liveness)  # no WAIT: holding lost batches still works
        t = now_ms()
        writer.beats([beat(a, "203.0.113.1", t), beat(b, "203.0.113.2", t)])
        server.kill()
        with pytest.raises(StoreUnavailable):
            writer.beats([beat(a, "203.0.113.7", t + 1)])
        assert len(writer.held) == 1
        server.start()
        assert writer.beats([beat(b, "203.0.113.2", t + 1)])[0].status == "ok"  # a's held beat ran first
        assert writer.rerecorded == 1 and len(writer.held) == 0  # without WAIT nothing is kept after that
        assert connect(server.url).hget(keys.account(a), "ipv4") == "203.0.113.7"
    finally:
        server.stop()


def test_a_beat_already_stored_is_a_replay_when_applied_again(pair: tuple[RedisServer, RedisServer]) -> None:
    primary, _ = pair
    r = connect(primary.url)
    store, [a] = accounts(r)
    writer = RedisBeats(BatchConnection(r), store.liveness, wait_replicas=1, wait_timeout=1.0)
    t = now_ms()
    writer.beats([beat(a, "203.0.113.1", t)])
    events = stream_length(r)
    writer.held.add([beat(a, "203.0.113.1", t)])  # as if its WAIT had never answered
    writer.conn.close()
    writer.beats([beat(a, "203.0.113.1", t + 1)])
    assert (writer.reapplied, writer.rerecorded, len(writer.held)) == (1, 0, 0)
    assert stream_length(r) == events


def test_readonly_is_a_lost_connection_on_the_raw_path(pair: tuple[RedisServer, RedisServer]) -> None:
    _, replica = pair
    conn = BatchConnection(connect(replica.url))
    assert conn.roundtrip(b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n", 1) == [None]  # reads work on a replica
    with pytest.raises(ConnectionLost, match="READONLY"):
        conn.roundtrip(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n", 1)
    assert not conn.connected
