"""System benchmarks through the processes ``make run`` starts (issue 7).

- last beat -> neutral at pdns, IP change -> pdns, offline beat -> neutral at pdns: each measured
  per run from the moment the beat left the sender to the first pdns answer showing the change;
  the same-run reference is when Redis itself showed it (alive key gone / address stored), so the
  difference is what the sweep, purge and pdns caches add.
- neutralization -> e-mail handed to SMTP: from the recorded deadline to the SMTP sink receiving it;
  reference: deadline -> ``neutralized`` recorded in the stream.
- Redis memory per account at 100k live accounts; reference: a minimal design (one name->IP hash
  entry and one TTL key per account).
"""

from __future__ import annotations

import json
import socket
import tempfile
import time
from pathlib import Path
from typing import Any

from hbdns_client import wire

from bench.common import Metric, percentile
from hbdns import config, keys
from hbdns.connection import connect
from hbdns.liveness import BeatRequest
from hbdns.store import Store
from tests.support.servers import RedisServer
from tests.support.stack import Stack

ZONE = "dyn.bench.test"
NEUTRAL = "192.0.2.1"


def _beat(account_id: int, key: bytes, source: str, port: int, offline: bool = False) -> float:
    flags = wire.FLAG_OFFLINE if offline else 0
    packet = wire.encode_beat(account_id, time.time_ns() // 1_000_000, key, flags)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((source, 0))
        sent = time.time()
        s.sendto(packet, ("127.0.0.1", port))
    return sent


def _poll(checks: dict[Any, object], timeout: float) -> dict[Any, float]:
    """Call each check until it returns True; return the wall time each first did."""
    done: dict[int, float] = {}
    deadline = time.monotonic() + timeout
    while len(done) < len(checks) and time.monotonic() < deadline:
        for i, check in checks.items():
            if i not in done:
                try:
                    if check():  # type: ignore[operator]
                        done[i] = time.time()
                except Exception:
                    continue
        time.sleep(0.01)
    return done


def latencies(quick: bool) -> list[Metric]:
    runs = 5 if quick else 20
    with tempfile.TemporaryDirectory(prefix="hbdns-bench-") as tmp:
        stack = Stack(Path(tmp))
        try:
            stack.start(["zone", "add", ZONE, "--ns", f"ns1.{ZONE}", "--backup-mx", "mx-backup.provider.test"])
            settings = config.load({"HBDNS_REDIS_URL": stack.env["HBDNS_REDIS_URL"]})
            store = Store(connect(settings.redis_url), settings)
            accounts = []
            for i in range(runs):
                r = stack.cli("--json", "account", "add", f"h{i}.{ZONE}", "--plan", "heartbeat-c", "--mx",
                              "--email", f"owner{i}@customer.test", "--password", "bench-password")  # fmt: skip
                assert r.returncode == 0, r.stderr
                data = json.loads(r.stdout)
                accounts.append((data["id"], bytes.fromhex(data["heartbeat_key"]), data["fqdn"]))
            owner = {aid: f"owner{i}@customer.test" for i, (aid, _, _) in enumerate(accounts)}
            port = stack.heartbeat_port

            def a_is(name: str, addr: str) -> object:
                return lambda: stack.answers(name, "A") == {addr}

            # 1. first beat from .2: live; then IP change to .3
            for aid, key, _ in accounts:
                _beat(aid, key, "127.0.0.2", port)
            assert len(_poll({i: a_is(n, "127.0.0.2") for i, (_, _, n) in enumerate(accounts)}, 10)) == runs
            ip_change, ip_ref = [], []
            for aid, key, name in accounts:
                t0 = _beat(aid, key, "127.0.0.3", port)
                redis_done = _poll({0: lambda aid=aid: store.r.hget(keys.account(aid), "ipv4") == "127.0.0.3"}, 5)
                dns_done = _poll({0: a_is(name, "127.0.0.3")}, 10)
                ip_change.append(dns_done[0] - t0)
                ip_ref.append(redis_done[0] - t0)
            # 2. last beat -> neutral: one more beat each, staggered, then silence
            sent = {}
            for i, (aid, key, _) in enumerate(accounts):
                sent[i] = _beat(aid, key, "127.0.0.3", port)
                time.sleep(0.2)
            checks: dict[Any, object] = {}
            for i, (aid, _, name) in enumerate(accounts):
                checks[("redis", i)] = lambda aid=aid: not store.r.exists(keys.alive(aid))
                checks[("dns", i)] = a_is(name, NEUTRAL)
            seen = _poll(checks, 40)
            neutral = [seen[("dns", i)] - sent[i] for i in range(runs) if ("dns", i) in seen]
            neutral_ref = [seen[("redis", i)] - sent[i] for i in range(runs) if ("redis", i) in seen]
            # 3. neutralization -> e-mail: deadline from the account log, receipt at the sink
            mail_lat: list[float] = []
            record_lat: list[float] = []
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and len(mail_lat) < runs:
                mail_lat, record_lat = [], []
                for aid, _, name in accounts:
                    entry = next((e for e in store.account_log(aid) if e["type"] == "neutralized"), None)
                    mails = [m for m in stack.smtp.mails_for(owner[aid]) if name in m.subject]
                    if entry and mails:
                        mail_lat.append(mails[0].received - int(entry["at"]) / 1000)
                        record_lat.append((int(entry.get("swept_at", entry["at"])) - int(entry["at"])) / 1000)
                time.sleep(0.2)
            # 4. offline beat -> neutral: back to live, then an offline beat
            for aid, key, _ in accounts:
                _beat(aid, key, "127.0.0.3", port)
            _poll({i: a_is(n, "127.0.0.3") for i, (_, _, n) in enumerate(accounts)}, 10)
            offline, offline_ref = [], []
            for aid, key, name in accounts:
                t0 = _beat(aid, key, "127.0.0.3", port, offline=True)
                redis_done = _poll({0: lambda aid=aid: not store.r.exists(keys.alive(aid))}, 5)
                dns_done = _poll({0: a_is(name, NEUTRAL)}, 10)
                offline.append(dns_done[0] - t0)
                offline_ref.append(redis_done[0] - t0)
        finally:
            stack.stop()
    plan = "heartbeat-c: 5 s beats, neutral after 3 missed (15 s)"
    settle = config.load({}).mass_settle  # outage messages wait this long (docs/mass-events.md)
    return [
        Metric("last beat -> neutral at pdns", "s", tuple(neutral), "alive key gone in Redis", tuple(neutral_ref),
               "<= 17 s (3 x 5 s + 2 s)", bool(neutral) and max(neutral) <= 17 and len(neutral) == runs,
               notes=plan),
        Metric("IP change -> pdns answers it", "s", tuple(ip_change), "address stored in Redis", tuple(ip_ref),
               "<= 2 s", bool(ip_change) and max(ip_change) <= 2),
        Metric("offline beat -> neutral at pdns", "s", tuple(offline), "alive key gone in Redis", tuple(offline_ref),
               "<= 2 s", bool(offline) and max(offline) <= 2),
        Metric("neutralization (deadline) -> e-mail at SMTP", "s", tuple(mail_lat),
               "deadline -> neutralized recorded", tuple(record_lat), f"p99 <= {settle:g} s (HBDNS_MASS_SETTLE) + 2 s",
               bool(mail_lat) and percentile(mail_lat, 99) <= settle + 2 and len(mail_lat) == runs),
    ]  # fmt: skip


def memory(quick: bool) -> list[Metric]:
    n = 10_000 if quick else 100_000
    samples, refs = [], []
    with tempfile.TemporaryDirectory(prefix="hbdns-mem-") as tmp:
        for run in range(3 if not quick else 1):
            with RedisServer(Path(tmp) / f"r{run}") as srv:
                r = connect(srv.url)
                settings = config.load({})
                store = Store(r, settings)
                from hbdns.model import Zone

                store.add_zone(Zone(apex=ZONE, ns=(f"ns1.{ZONE}",), hostmaster=f"hm.{ZONE}", neutral_ipv4=NEUTRAL))
                base = int(r.info("memory")["used_memory"])
                accounts = store.bulk_add_accounts(
                    [
                        store.new_account(f"h{i}.{ZONE}", "heartbeat-c", mx=True, emails=[f"o{i}@c.test"])
                        for i in range(n)
                    ]
                )
                now = time.time_ns() // 1_000_000
                for i in range(0, n, 2000):
                    store.liveness.beats(
                        BeatRequest(
                            a.id,
                            ZONE,
                            60_000,
                            ipv4=f"10.{(a.id >> 16) & 255}.{(a.id >> 8) & 255}.{a.id & 255}",
                            counter=now,
                        )
                        for a in accounts[i : i + 2000]
                    )
                samples.append((int(r.info("memory")["used_memory"]) - base) / n)
                r.flushall()
                base = int(r.info("memory")["used_memory"])
                pipe = r.pipeline(transaction=False)
                for a in accounts:
                    pipe.hset("minimal:names", a.fqdn, "10.0.0.1")
                    pipe.set(f"minimal:alive:{a.id}", 1, px=60_000)
                    if len(pipe) >= 4000:
                        pipe.execute()
                pipe.execute()
                refs.append((int(r.info("memory")["used_memory"]) - base) / n)
                r.close()
    return [
        Metric(f"Redis memory per live account ({n // 1000}k accounts)", "bytes", tuple(samples),
               "minimal design: name->IP hash entry + TTL key", tuple(refs),
               notes="includes the account hash (config + state), name index, alive key, deadline, "
                     "capped event log and its share of the event stream"),
    ]  # fmt: skip


def run(quick: bool = False) -> list[Metric]:
    return latencies(quick) + memory(quick)


if __name__ == "__main__":
    import sys

    for m in run(quick="--quick" in sys.argv):
        print(json.dumps(m.to_dict()))
