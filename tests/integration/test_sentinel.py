"""Redis Sentinel: 1 primary + 1 replica + 3 sentinels on loopback (tests/support/sentinel.py).

Every client follows a failover (redis-py and the raw RESP paths), a freshly promoted replica's empty
script cache is handled on both paths, a transition the old primary acknowledged and never
replicated is recorded again on the new one, a backend reading a replica flips to neutral at the
deadline with no write reaching the replica, and, under load (100 heartbeat-c accounts through the
real listener, SIGKILL of the primary), writes resume within Sentinel's failover time + 2 s with no
lost transition, no false neutralization and DNS answered from the replica-backed backend
throughout.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import statistics
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import dns.rcode
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
from sweeper.main import SweeperService
from tests.support.fleet import Beater, Fleet
from tests.support.listener import Listener
from tests.support.pdns import BackendProcess, PdnsServer, answer_texts
from tests.support.sentinel import MASTER, SentinelGroup, SentinelProcess, command
from tests.support.servers import RedisServer, free_port, wait_for

ZONE = "ha.test"
NEUTRAL = "192.0.2.1"
FAST_PLAN = json.dumps({"test-fast": {"kind": "heartbeat", "interval": 1, "misses": 2, "ttl": 1}})


@pytest.fixture(scope="module")
def group(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SentinelGroup]:
    g = SentinelGroup(Path(tmp_path_factory.mktemp("sentinel"))).start()
    yield g
    g.stop()


@pytest.fixture
def fresh(group: SentinelGroup) -> Iterator[SentinelGroup]:
    """The group with an empty database and both servers up (a test that killed one heals it)."""
    for server in group.servers.values():
        if server.process is None or not server.process.alive():
            group.heal(server)
    connect(group.url).flushall()
    for server in group.servers.values():
        command(server.port, "SCRIPT", "FLUSH")
    wait_for(group.replicating, 10, what="replica in sync")
    yield group
    for server in group.servers.values():
        if server.process is None or not server.process.alive():
            group.heal(server)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def noscripts(port: int) -> int:
    stats = redis.Redis(port=port).info("errorstats")
    return int(stats.get("errorstat_NOSCRIPT", {}).get("count", 0))


def cached(port: int, script: scripts.Script) -> bool:
    return bool(command(port, "SCRIPT", "EXISTS", script.sha)[0])


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
    assert not any(cached(replica.port, s) for s in (scripts.BEAT, scripts.LOOKUP, scripts.DUE))

    assert replica.process is not None
    os.kill(replica.process.pid, signal.SIGSTOP)
    try:
        junk = connect(primary.url)
        for i in range(10):
            junk.set(f"junk:{i}", "x" * (4 << 20))
        [moved] = writer.beats([BeatRequest(a.id, ZONE, 60_000, ipv4="203.0.113.2", counter=t + 1)])
        assert moved.changed
        writer.confirm(block=True)  # the replica cannot answer
        assert writer.wait_timeouts >= 1 and [q.account_id for q in writer.held.beats()] == [a.id]
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
    changes = [f["new"] for _, f in new.xrange(keys.events()) if f["type"] == "ip_changed" and f["fqdn"] == f"a.{ZONE}"]
    assert changes == ["203.0.113.1", "203.0.113.2"]

    before = noscripts(replica.port)
    assert wait_for(lambda: reader.fetch([f"a.{ZONE}"])[0], 10, what="backend lookup")[2] == "203.0.113.2"
    assert store.liveness.due() == []
    assert noscripts(replica.port) - before == 2  # LOOKUP (raw) and DUE (redis-py), each loaded once


# --- a failover under load -------------------------------------------------------------------------------


class Prober(threading.Thread):
    """Asks pdns for every account's A record in turn, as fast as it answers (one query at a time)."""

    def __init__(self, pdns: PdnsServer, names: list[str]) -> None:
        super().__init__(name="prober", daemon=True)
        self.pdns = pdns
        self.names = names
        self.seen: list[tuple[float, str, str, frozenset[str]]] = []  # (when, name, rcode, A rdata)
        self.timeouts = 0
        self._halt = threading.Event()

    def run(self) -> None:
        i = 0
        while not self._halt.is_set():
            name = self.names[i % len(self.names)]
            i += 1
            try:
                msg = self.pdns.query(name, "A", timeout=2.0)
            except Exception:
                self.timeouts += 1
                continue
            self.seen.append(
                (time.monotonic(), name, dns.rcode.to_text(msg.rcode()), frozenset(answer_texts(msg, name, "A")))
            )
            time.sleep(0.002)

    def stop(self) -> None:
        self._halt.set()
        self.join(10)


def _chain_holds(acked: list[str], recorded: list[str]) -> bool:
    """Every acknowledged address change is among the recorded ones, in order."""
    it = iter(recorded)
    return all(any(r == a for r in it) for a in acked)


def test_failover_under_load(
    fresh: SentinelGroup,
    tmp_path: Path,
    pdns_factory: Callable[..., PdnsServer],
    sweepers: Callable[..., SweeperService],
) -> None:
    group = fresh
    settings = config.load({"HBDNS_REDIS_URL": group.url, "HBDNS_SWEEP_INTERVAL": "0.2"})
    store = Store(connect(group.url), settings)
    add_zone(store)
    accounts = [store.add_account(store.new_account(f"h{i}.{ZONE}", "heartbeat-c")) for i in range(100)]
    stopper = store.add_account(store.new_account(f"gone.{ZONE}", "heartbeat-c"))
    replica = group.replica()
    pdns = pdns_factory(redis_url=group.url, backend_env={"HBDNS_BACKEND_REDIS_URL": replica.url})
    listener = Listener(tmp_path, group.url, **pdns.writer_env).start()
    sweepers(config.load({"HBDNS_REDIS_URL": group.url, "HBDNS_SWEEP_INTERVAL": "0.2", **pdns.writer_env}))
    movers = {a.id for a in accounts[:20]}  # a new address on every beat
    fleet = Fleet(
        listener.port,
        [
            Beater(a.id, a.hb_key, ("127.0.0.2", "127.0.0.3") if a.id in movers else ("127.0.0.1",), phase=i * 0.05)
            for i, a in enumerate(accounts)
        ]
        + [Beater(stopper.id, stopper.hb_key, ("127.0.0.4",), phase=0.0)],
    )
    names = [a.fqdn for a in accounts]
    prober = Prober(pdns, names)
    r = connect(group.url)
    try:
        fleet.start()
        wait_for(lambda: all(store.status(a).live for a in [*accounts, stopper]), 15, what="every account live")
        prober.start()
        live_since = time.monotonic() + 2.0  # pdns' 1 s caches have the live answers by then
        wait_for(lambda: len(fleet.acked) >= 250, 20, what="a few beats each")
        fleet.halt(stopper.id)  # a real outage across the failover: neutralized once, on the new primary
        assert not any(cached(replica.port, s) for s in (scripts.BEAT, scripts.DUE, scripts.NEUTRALIZE))
        killed = group.primary()
        t_kill, kill_ms = time.monotonic(), now_ms()
        killed.kill()
        new_port, t_switch = group.wait_failover(killed.port)
        assert new_port == replica.port
        new = connect(replica.url)

        def resumed() -> bool:
            pipe = new.pipeline(transaction=False)
            for a in accounts:
                pipe.hget(keys.account(a.id), "last_beat")
            return any(int(v or 0) > kill_ms for v in pipe.execute())

        wait_for(resumed, 10, interval=0.02, what="a beat written on the new primary")
        t_resume = time.monotonic()
        # run on for a full window after the kill: an account that lost 3 beats would be neutral by then
        deadline = t_kill + 17
        while time.monotonic() < deadline:
            time.sleep(0.2)
        wait_for(lambda: store.status(stopper).state.state == "neutral", 10, what="the stopped account neutral")
        metrics = listener.metrics()
    finally:
        fleet.stop()
        prober.stop()
        listener.stop()

    failover_s, resume_s = t_switch - t_kill, t_resume - t_switch
    print(f"failover {failover_s:.2f} s, writes resumed {resume_s:.2f} s after the switch")
    assert resume_s <= 2.0

    events = [f for _, f in r.xrange(keys.events())]
    neutralized = [f["account"] for f in events if f["type"] == "neutralized"]
    assert neutralized == [str(stopper.id)]  # 0 false neutralizations, the real one once
    assert all(store.status(a).live for a in accounts)
    lost = 0
    for a in accounts:
        acked = [s.source for s in fleet.acked_by(a.id)]
        changes = [f["new"] for f in events if f["type"] == "ip_changed" and f["account"] == str(a.id)]
        acked_changes = [acked[0]] + [cur for prev, cur in itertools.pairwise(acked) if cur != prev]
        if not _chain_holds(acked_changes, changes):
            lost += 1
        assert r.hget(keys.account(a.id), "ipv4") == acked[-1]
        assert [f["type"] for f in events if f["account"] == str(a.id)].count("recovered") == 1
    assert lost == 0
    assert sum(1 for s in fleet.acked if s.account_id in movers) > 100  # the movers kept moving throughout

    rcodes = [rc for _, _, rc, _ in prober.seen]
    assert "NXDOMAIN" not in rcodes and rcodes.count("SERVFAIL") == 0 and prober.timeouts == 0
    during = [s for s in prober.seen if t_kill <= s[0] <= t_resume]
    assert len(during) > 20  # pdns was asked all through the failover
    allowed = {a.fqdn: {"127.0.0.2", "127.0.0.3"} if a.id in movers else {"127.0.0.1"} for a in accounts}
    wrong = [(n, ips) for t, n, _, ips in prober.seen if t >= live_since and not (ips and ips <= allowed[n])]
    assert wrong == []  # never the neutral address for an account that kept beating
    assert noscripts(replica.port) >= 1  # the sweeper loaded its scripts on the new primary
    print(
        f"probes {len(prober.seen)} ({len(during)} during the failover), acked beats {len(fleet.acked)}, "
        f"median probe gap {statistics.median(b[0] - a[0] for a, b in itertools.pairwise(prober.seen)):.4f} s"
    )
    assert metrics["hbdns_heartbeat_redis_connects_total"] >= 2  # the beat writer reconnected
