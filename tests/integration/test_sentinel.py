"""Redis Sentinel: 1 primary + 1 replica + 3 sentinels on loopback (tests/support/sentinel.py).

The URL's credentials reach servers and sentinels, a dead sentinel costs nothing, ``role=replica``
reads a replica, the admin CLI works through Sentinel, a backend reading a replica flips to neutral
at the deadline with no write reaching the replica, and a transition the old primary acknowledged
and never replicated is recorded again on the new one, whose empty script cache is handled on both
call paths. The failover under load is in test_sentinel_failover.py.
"""

from __future__ import annotations

import json
import os
import signal
import time
import urllib.request
from pathlib import Path

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from hbdns import config, keys, scripts
from hbdns.connection import connect
from hbdns.liveness import BeatRequest
from hbdns.model import Zone
from hbdns.resp import BatchConnection
from hbdns.store import Store
from heartbeat_listener.redis_io import RedisBeats
from pdns_backend.accounts import AccountReader
from tests.support.events import fields as stream_fields
from tests.support.listener import now_ms
from tests.support.pdns import BackendProcess
from tests.support.sentinel import (
    MASTER,
    SentinelGroup,
    SentinelProcess,
    cached,
    command,
    fresh_group,
    noscripts,
    started_group,
)
from tests.support.servers import RedisServer, free_port, wait_for

ZONE = "ha.test"
NEUTRAL = "192.0.2.1"
FAST_PLAN = json.dumps({"test-fast": {"kind": "heartbeat", "interval": 1, "misses": 2, "ttl": 1}})


group = pytest.fixture(scope="module")(started_group)
fresh = pytest.fixture(fresh_group)


def add_zone(store: Store) -> None:
    store.add_zone(Zone(ZONE, (f"ns1.{ZONE}",), f"hostmaster.{ZONE}", NEUTRAL))


# --- connections -----------------------------------------------------------------------------------


def test_a_dead_sentinel_in_the_list_costs_a_reconnect_nothing(fresh: SentinelGroup) -> None:
    dead = free_port()
    hosts = ",".join([f"127.0.0.1:{dead}", *(f"127.0.0.1:{s.port}" for s in fresh.sentinels)])
    client = connect(f"redis+sentinel://{hosts}/hbdns/0")
    started = time.monotonic()
    client.set("k", "v")
    assert time.monotonic() - started < 0.5  # one refused connect, no retry backoff on it
    assert connect(fresh.primary().url).get("k") == "v"


def test_passwords_reach_the_servers_and_the_sentinels(tmp_path: Path) -> None:
    """``user:pass`` authenticate to the Redis servers, ``sentinel_password`` to the sentinels;
    either one wrong is refused (a quorum-1 sentinel over one password-protected primary)."""
    server = RedisServer(tmp_path / "redis", extra=["requirepass s3rv3r-pw"]).start()
    sentinel = SentinelProcess(
        tmp_path / "sentinel",
        server.port,
        quorum=1,
        extra=["requirepass s3nt-pw", f"sentinel auth-pass {MASTER} s3rv3r-pw"],
    )
    try:
        sentinel.start()
        hosts = f"127.0.0.1:{sentinel.port}"
        good = connect(f"redis+sentinel://:s3rv3r-pw@{hosts}/{MASTER}/0?sentinel_password=s3nt-pw")
        assert good.ping() and good.set("k", "v")
        for url in (
            f"redis+sentinel://:wrong@{hosts}/{MASTER}/0?sentinel_password=s3nt-pw",
            f"redis+sentinel://:s3rv3r-pw@{hosts}/{MASTER}/0?sentinel_password=wrong",
            f"redis+sentinel://:s3rv3r-pw@{hosts}/{MASTER}/0",
        ):
            with pytest.raises(redis.RedisError):
                connect(url, socket_timeout=1, retry=Retry(NoBackoff(), 0)).ping()
    finally:
        sentinel.stop()
        server.stop()


def test_role_replica_reads_a_replica(fresh: SentinelGroup) -> None:
    reader = connect(fresh.url + "?role=replica")
    connect(fresh.url).set("k", "v")
    wait_for(lambda: reader.get("k") == "v", 5, what="replicated read")
    assert reader.info("replication")["role"] == "slave"
    conn = BatchConnection(reader)  # the raw path too
    assert conn.roundtrip(b"*1\r\n$4\r\nROLE\r\n", 1)[0][0] == "slave"


def test_the_admin_cli_works_through_sentinel(fresh: SentinelGroup, monkeypatch: pytest.MonkeyPatch) -> None:
    from admin.cli.main import main

    monkeypatch.setenv("HBDNS_REDIS_URL", fresh.url)
    assert main(["zone", "add", ZONE, "--ns", f"ns1.{ZONE}"]) == 0
    assert main(["account", "add", f"cli.{ZONE}", "--plan", "heartbeat-c"]) == 0
    assert main(["status"]) == 0
    replica = connect(fresh.replica().url)
    wait_for(lambda: replica.hget(keys.names(), f"cli.{ZONE}"), 5, what="the new account on the replica")


# --- the neutral flip on a replica -----------------------------------------------------------------


def test_a_replica_answers_neutral_at_the_deadline_with_no_write(fresh: SentinelGroup, tmp_path: Path) -> None:
    """The primary never deletes the alive key (active expiry off, nobody reads it there), so no DEL
    reaches the replica: the backend reading the replica answers neutral within 1 s of the deadline
    because Redis >= 3.2 replicas report a key past its expire time as missing."""
    primary, replica = fresh.primary(), fresh.replica()
    settings = config.load({"HBDNS_REDIS_URL": fresh.url, "HBDNS_PLANS": FAST_PLAN})
    store = Store(connect(fresh.url), settings)
    add_zone(store)
    account = store.add_account(store.new_account(f"flip.{ZONE}", "test-fast"))
    backend = BackendProcess(
        tmp_path / "backend",
        fresh.url,
        env={"HBDNS_BACKEND_REDIS_URL": replica.url, "HBDNS_PLANS": FAST_PLAN},
    ).start()
    url = f"{backend.url}/dnsapi/lookup/flip.{ZONE}./A"

    def answer() -> str:
        with urllib.request.urlopen(url, timeout=2) as resp:
            result = json.loads(resp.read())["result"]
        return str(next(r["content"] for r in result if r["qtype"] == "A"))

    command(primary.port, "DEBUG", "SET-ACTIVE-EXPIRE", "0")
    try:
        store.liveness.beat(BeatRequest(account.id, ZONE, 2000, ipv4="203.0.113.10", counter=now_ms()))
        deadline = int(command(primary.port, "PEXPIRETIME", keys.alive(account.id))) / 1000
        wait_for(lambda: answer() == "203.0.113.10", 5, what="live answer from the replica")
        keys_before = command(replica.port, "DBSIZE")
        flipped = wait_for(lambda: answer() == NEUTRAL and time.time(), deadline - time.time() + 3, interval=0.01)
        late = flipped - deadline
        assert -0.05 < late < 1.0, f"neutral {late:+.3f} s after the deadline"
        assert command(replica.port, "DBSIZE") == keys_before  # the key is still there: no DEL came
    finally:
        command(primary.port, "DEBUG", "SET-ACTIVE-EXPIRE", "1")
        backend.stop()


# --- a failover, client by client ---------------------------------------------------------------------


def test_a_transition_lost_in_a_failover_is_recorded_again(fresh: SentinelGroup) -> None:
    """The replica is made to miss the primary's last writes (stopped while 40 MB of junk fill the
    primary's replication buffer past the kernel's socket buffers, then the IP change), the primary
    is SIGKILLed, Sentinel promotes the replica. The writer's WAIT timed out, so it held the beat and
    applies it on its first connection to the new primary, where the IP change is recorded again.
    The new primary's script cache is empty: the backend's raw lookup and the sweeper's redis-py
    call each get NOSCRIPT there and load their script."""
    client = connect(fresh.url)
    store = Store(client, config.load({"HBDNS_REDIS_URL": fresh.url}))
    add_zone(store)
    a = store.add_account(store.new_account(f"a.{ZONE}", "heartbeat-c"))
    b = store.add_account(store.new_account(f"b.{ZONE}", "heartbeat-c"))
    purged: list[str] = []
    writer = RedisBeats(BatchConnection(client), store.liveness, wait_replicas=1, wait_timeout=0.1, purge=purged.extend)
    reader = AccountReader(client)
    t = now_ms()
    writer.beats([BeatRequest(a.id, ZONE, 60_000, ipv4="203.0.113.1", counter=t)])
    writer.beats([BeatRequest(b.id, ZONE, 60_000, ipv4="203.0.113.9", counter=t)])
    writer.confirm(block=True)
    assert not writer.held  # the replica has both
    assert reader.fetch([f"a.{ZONE}"])[0][2] == "203.0.113.1"
    primary, replica = fresh.primary(), fresh.replica()
    wait_for(fresh.replicating, 5, what="replica in sync")
    assert not any(cached(replica.port, s.sha) for s in (scripts.BEAT, scripts.LOOKUP, scripts.DUE))

    assert replica.process is not None
    os.kill(replica.process.pid, signal.SIGSTOP)
    try:
        junk = connect(primary.url)
        for i in range(10):
            junk.set(f"junk:{i}", "x" * (4 << 20))
        [moved] = writer.beats([BeatRequest(a.id, ZONE, 60_000, ipv4="203.0.113.2", counter=t + 1)])
        assert moved.changed
        writer.confirm(block=True)  # the replica cannot answer
        assert writer.counters()["hbdns_heartbeat_wait_timeouts_total"] >= 1 and [
            q.account_id for q in writer.held.beats()
        ] == [a.id]
        primary.kill()
    finally:
        os.kill(replica.process.pid, signal.SIGCONT)
    fresh.wait_failover(primary.port)
    assert fresh.primary_port() == replica.port
    new = connect(replica.url)
    assert new.hget(keys.account(a.id), "ipv4") == "203.0.113.1"  # the IP change was lost

    def beat_b() -> bool:
        return writer.beats([BeatRequest(b.id, ZONE, 60_000, ipv4="203.0.113.9", counter=now_ms())])[0].accepted

    wait_for(beat_b, 15, interval=0.1, what="a write on the new primary")
    assert writer.rerecorded == 1  # a's IP change; b's beats held on the way (failed tries) were no news
    assert new.hget(keys.account(a.id), "ipv4") == "203.0.113.2" and purged == [f"a.{ZONE}"]
    changes = [f["new"] for f in stream_fields(new) if f["type"] == "ip_changed" and f["fqdn"] == f"a.{ZONE}"]
    assert changes == ["203.0.113.1", "203.0.113.2"]

    before = noscripts(replica.port)
    assert wait_for(lambda: reader.fetch([f"a.{ZONE}"])[0], 10, what="backend lookup")[2] == "203.0.113.2"
    assert store.liveness.due() == [] and cached(replica.port, scripts.DUE.sha)
    # LOOKUP (raw) loaded once on its NOSCRIPT; DUE, on a pipeline (one call per shard), is loaded
    # before the pipeline runs, with no NOSCRIPT
    assert noscripts(replica.port) - before == 1


def test_a_failover_drops_the_answer_cache(fresh: SentinelGroup) -> None:
    """The backend's answer cache (pdns_backend/tracking.py) through Sentinel: its invalidation
    connection dies with the primary, so nothing cached before the failover is answered after it;
    on the new primary it is tracked again (a write there is seen at once)."""
    from pdns_backend.app import backend_redis
    from pdns_backend.backend import Backend

    store = Store(connect(fresh.url), config.load({"HBDNS_REDIS_URL": fresh.url}))
    add_zone(store)
    acct = store.add_account(store.new_account(f"c.{ZONE}", "heartbeat-c"))
    store.liveness.beat(BeatRequest(acct.id, ZONE, 3_600_000, ipv4="203.0.113.1", counter=now_ms()))
    wait_for(fresh.replicating, 5, what="replica in sync")
    backend = Backend(backend_redis(fresh.url), config.load({}).plan_table(), cache_entries=100)
    assert backend.cache is not None

    def answer() -> bytes | None:
        body = backend.lookup_bodies([(f"c.{ZONE}", "ANY")])[0]
        return body if isinstance(body, bytes) else None

    wait_for(lambda: answer() and (f"c.{ZONE}", "ANY") in backend.cache, 5, what="cached")  # type: ignore[operator]
    old = fresh.kill_primary()
    port, _ = fresh.wait_failover(old.port)
    new = connect(f"redis://127.0.0.1:{port}/0")
    new.hset(keys.account(acct.id), "ipv4", "203.0.113.2")  # a change the old connections never hear of
    got = wait_for(answer, 15, interval=0.05, what="an answer from the new primary")
    assert b"203.0.113.2" in got
    stats = backend.stats()["answer_cache"]
    assert stats["tracking_connects"] == 2 and stats["flushes"] >= 2
    wait_for(lambda: answer() and (f"c.{ZONE}", "ANY") in backend.cache, 5, what="cached again")  # type: ignore[operator]
    store.liveness.beat(BeatRequest(acct.id, ZONE, 3_600_000, ipv4="203.0.113.3", counter=now_ms()))
    assert b"203.0.113.3" in (answer() or b"")
    assert backend.tracker is not None
    backend.tracker.close()
    fresh.heal(old)
