"""The liveness sweeper (``hbdns-sweeper``) on a real redis-server: the sweep is the clock, keyspace
hints only make it sooner, any number of sweepers record each transition once, and the service
catches up after Redis or itself was away. Accounts use the fast test plan (neutral 0.6 s after the
last beat)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import redis

from hbdns import config, keys
from hbdns.connection import connect
from hbdns.liveness import BeatRequest
from hbdns.model import NotifyPrefs
from hbdns.store import Store
from sweeper.hints import HintSubscriber
from sweeper.main import SweeperService
from sweeper.sweeper import Sweeper
from tests.support.servers import Process, RedisServer, wait_for
from tests.support.services import ROOT, add_account, beat, env_for, events, settled, spawn
from tests.support.sinks import HttpSink, SmtpSink

Sweepers = Callable[..., SweeperService]


def _subscribers(r: redis.Redis, channel: str) -> int:
    return int(dict(r.pubsub_numsub(channel))[channel])


def _deadlines(account_id: int) -> str:
    return keys.deadlines(keys.shard_of(account_id))


def _no_deadlines(r: redis.Redis) -> bool:
    return not any(r.zcard(keys.deadlines(s)) for s in keys.all_shards())


# --- the service and its roles ----------------------------------------------------------------------


def test_both_roles_by_default_and_neutralized_names_are_purged(
    real_redis: redis.Redis, redis_url: str, http: HttpSink, sweepers: Sweepers
) -> None:
    settings = config.load(env_for(redis_url, HBDNS_PDNS_API_URLS=http.url, HBDNS_PDNS_API_KEY="pdns-key"))
    store = Store(real_redis, settings)
    acct = add_account(store, "purged", aliases=["www-purged.example.test"])
    s = sweepers(settings)
    assert s.loops.names == ["sweep", "trim", "mass", "hints"]
    wait_for(lambda: _subscribers(real_redis, s.hints.channel) == 1, 10, what="hints subscribed")
    beat(store, acct)
    [neut] = wait_for(lambda: events(real_redis, "neutralized", acct.id), 10, what="neutralized")
    assert neut.get("reason") == "missed"
    flushes = wait_for(lambda: len(http.log("/api/v1/servers/localhost/cache/flush")) >= 2 and http.log(), 10)
    domains = sorted(parse_qs(urlsplit(r.path).query)["domain"][0] for r in flushes)
    assert domains == ["purged.example.test.", "www-purged.example.test."]
    assert all(r.method == "PUT" and r.headers["x-api-key"] == "pdns-key" for r in flushes)


def test_sweep_role_alone_runs_no_subscriber(real_redis: redis.Redis, redis_url: str, sweepers: Sweepers) -> None:
    settings = config.load(env_for(redis_url, HBDNS_SWEEPER_ROLES="sweep"))
    store = Store(real_redis, settings)
    acct = add_account(store, "sweeponly")
    s = sweepers(settings)
    assert s.loops.names == ["sweep", "trim", "mass"]
    beat(store, acct)
    wait_for(lambda: events(real_redis, "neutralized", acct.id), 10, what="neutralized by the sweep")
    assert _subscribers(real_redis, s.hints.channel) == 0 and s.hints.subscriptions == 0


def test_hints_role_alone_neutralizes_from_the_expired_event(
    real_redis: redis.Redis, redis_url: str, sweepers: Sweepers
) -> None:
    settings = config.load(env_for(redis_url, HBDNS_SWEEPER_ROLES="hints", HBDNS_SWEEP_INTERVAL="3600"))
    store = Store(real_redis, settings)
    acct = add_account(store, "hintonly")
    s = sweepers(settings)
    assert s.loops.names == ["hints"]
    wait_for(lambda: s.hints.subscriptions == 1, 10, what="hints subscribed")  # its catch-up sweep ran
    beat(store, acct)
    wait_for(lambda: events(real_redis, "neutralized", acct.id), 10, what="neutralized by a hint")
    assert s.hints.subscriptions == 1  # one sweep at subscription, none since: the hint did it


def test_the_process_warns_of_the_removed_roles_setting_and_stops_on_sigterm(
    real_redis: redis.Redis, redis_url: str, tmp_path: Path, procs: list[Process]
) -> None:
    env = env_for(redis_url, HBDNS_NOTIFIER_ROLES="sweeper,hints,consumer")  # a line from the old .env.example
    store = Store(real_redis, config.load(env))
    acct = add_account(store, "proc")
    proc = spawn("sweeper", tmp_path, "sigterm", env)
    procs.append(proc)
    beat(store, acct)
    wait_for(lambda: events(real_redis, "neutralized", acct.id), 15, what="neutralized by the process")
    assert "HBDNS_NOTIFIER_ROLES is ignored" in proc.log_text()
    proc.signal(signal.SIGTERM)
    assert proc.proc.wait(15) == 0
    lines = [json.loads(line) for line in proc.log_text().splitlines() if line.startswith("{")]
    [stopping] = [line for line in lines if line["message"] == "stopping"]
    assert stopping["service"] == "hbdns-sweeper" and stopping["loops"] == ["sweep", "trim", "mass", "hints"]


def test_a_bad_role_stops_the_process_naming_the_variable(redis_url: str) -> None:
    env = {"HBDNS_REDIS_URL": redis_url, "HBDNS_SWEEPER_ROLES": "sweep,consumer", "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [sys.executable, "-m", "sweeper.main"], env=env, cwd=str(ROOT), capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert done.stderr.strip().startswith("hbdns-sweeper: HBDNS_SWEEPER_ROLES='sweep,consumer': expected")


# --- sweep and hints ----------------------------------------------------------------------------------


def test_sweep_records_what_expired_while_the_subscriber_was_disconnected(
    real_redis: redis.Redis, redis_url: str
) -> None:
    settings = config.load(env_for(redis_url))
    store = Store(real_redis, settings)
    accts = [add_account(store, f"d{i}") for i in range(20)]
    hints = HintSubscriber(connect(redis_url), store.liveness)
    try:
        hints.step(timeout=0.5)  # subscribed (its catch-up sweep finds nothing due)
        assert hints.subscriptions == 1
        deadlines = {}
        for a in accts:
            beat(store, a)
            deadlines[a.id] = int(real_redis.zscore(_deadlines(a.id), keys.deadline_member(a.id, 4)) or 0)
        killed = real_redis.client_kill_filter(_type="pubsub")
        assert killed >= 1
        alive = [keys.alive(a.id) for a in accts]
        wait_for(lambda: real_redis.exists(*alive) == 0, 10, what="keys expired")
        assert events(real_redis, "neutralized") == []  # nobody has swept, the hints went nowhere

        assert Sweeper(store.liveness).step() == 20
        neut = events(real_redis, "neutralized")
        assert sorted(e.account for e in neut) == sorted(deadlines)
        assert all(e.at_ms == deadlines[e.account] for e in neut)  # recorded at the deadline, not at the sweep

        # the subscriber comes back by itself; then a hint alone neutralizes (no sweeper running)
        late = add_account(store, "late")
        beat(store, late)
        wait_for(lambda: hints.step(timeout=0.2) >= 0 and events(real_redis, "neutralized", late.id), 10, what="hint")
        assert hints.subscriptions == 2
    finally:
        hints.close()


def test_two_sweepers_record_each_transition_once(real_redis: redis.Redis, redis_url: str) -> None:
    settings = config.load(env_for(redis_url))
    store = Store(real_redis, settings)
    accts = [add_account(store, f"s{i}") for i in range(300)]
    stop = threading.Event()
    counts = [0, 0, 0]

    def run(i: int) -> None:
        s = Store(connect(redis_url), settings)
        if i == 2:
            hints = HintSubscriber(s.r, s.liveness)
            while not stop.is_set():
                counts[i] += hints.step(timeout=0.05)
            hints.close()
            return
        sweeper = Sweeper(s.liveness, batch=1)  # per shard and round: 16 a round, so the others compete
        while not stop.is_set():
            counts[i] += sweeper.step()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    try:
        store.liveness.beats(
            BeatRequest(account_id=a.id, zone=a.zone, expiry_ms=600, ipv4="198.51.100.9") for a in accts
        )
        wait_for(lambda: len(events(real_redis, "neutralized")) >= 300 and _no_deadlines(real_redis), 20)
    finally:
        stop.set()
        for t in threads:
            t.join(10)
    neut = events(real_redis, "neutralized")
    assert len(neut) == 300 and len({e.account for e in neut}) == 300
    # each transition recorded once, while at least two of the three workers really competed (which
    # two get work is up to the scheduler: requiring both sweepers made this flaky, e.g. [125, 0, 175])
    assert sum(counts) == 300 and sum(1 for c in counts if c > 0) >= 2, counts


# --- outages ------------------------------------------------------------------------------------------


def test_redis_restart_the_sweep_catches_up(smtp: SmtpSink, tmp_path: Path, procs: list[Process]) -> None:
    server = RedisServer(tmp_path / "redis", persist=True).start()
    try:
        r = connect(server.url)
        env = env_for(server.url, smtp, HBDNS_SWEEPER_ROLES="sweep")  # no hints: the sweep alone
        store = Store(r, config.load(env))
        prefs = NotifyPrefs(email="all")
        accts = [add_account(store, f"r{i}", emails=[f"r{i}@example.org"], prefs=prefs) for i in range(10)]
        procs.append(spawn("sweeper", tmp_path, "survivor", env))
        procs.append(spawn("notifier", tmp_path, "survivor", env))
        store.liveness.beats(
            BeatRequest(account_id=a.id, zone=a.zone, expiry_ms=4000, ipv4="198.51.100.9") for a in accts
        )
        deadlines = {a.id: int(r.zscore(_deadlines(a.id), keys.deadline_member(a.id, 4)) or 0) for a in accts}
        # level "all": "online" and the first address, per account
        wait_for(lambda: smtp.count() == 20 and settled(r), 15, what="online e-mails acknowledged")
        r.close()
        server.stop()
        stopped_at = time.time() * 1000
        assert stopped_at < min(deadlines.values()), "redis took too long to stop"
        wait_for(lambda: time.time() * 1000 > max(deadlines.values()) + 500, 10, what="deadlines passed while down")
        server.start()
        restarted_at = time.time() * 1000
        r = connect(server.url)
        wait_for(lambda: smtp.count() == 30 and settled(r), 30, what="outage e-mails after the restart")
        neut = events(r, "neutralized")
        assert sorted(e.account for e in neut) == sorted(deadlines)
        assert all(e.at_ms == deadlines[e.account] for e in neut)
        # recorded after the restart (an event id is "<shard>/<entry id>")
        assert all(int(e.id.rpartition("/")[2].split("-")[0]) >= restarted_at - 50 for e in neut)
        kinds = [m.header("X-Hbdns-Event") for m in smtp.mails]
        assert {k: kinds.count(k) for k in kinds} == {"recovered": 10, "ip_changed": 10, "neutralized": 10}
        assert all(p.alive() for p in procs)
        r.close()
    finally:
        server.stop()
