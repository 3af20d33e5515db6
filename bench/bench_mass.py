"""``make bench`` mass-outage row (issue 20): many heartbeat-c accounts beating, then all stop within
1 s (a provider-wide outage), and separately 10% of them.

Real redis-server, pdns_server with the hbdns backend (unix socket, the shipped 1 s caches and its
API for purges), the sweeper and the notifier as processes with the shipped settings (mass-outage
policy and sending rates included), an SMTP sink. The accounts beat through the beat script every
5 s from a process of its own (``Liveness.beats``, what the listener runs per batch; the UDP path is
bench_listener's), until the chosen ones stop at once (their last beats then lie within one beat
interval, as when a line drops). Measured:

- last beat -> neutral at pdns, p99 over a sample of the stopped accounts (goal <= 17 s: 3 x 5 s
  + sweep + pdns cache), and whether every stopped account is recorded neutral;
- events lost: entries some consumer group never read (the trim's ``unread`` counter) and the
  notifier's lag once it has caught up (goal 0);
- DNS at a fixed 2,000 queries/s (dnsperf) during the neutralizations against the same run's steady
  state before the stop: answered queries/s, p99 latency, timeouts (goal: none);
- notifications: the operator's alarm (goal: within one mass window of the stop), customer
  e-mails within the observation (goal: 0 for the 100% case, held; the 10% case is below the
  policy's 25% and notified at the e-mail rate).

Run: ``python -m bench.bench_mass [--quick] [--accounts N]``; results in bench/out/mass.json.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import random
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import dns.message
import dns.query

from bench.common import Metric, percentile
from hbdns import config, keys
from hbdns.connection import connect
from hbdns.event_trim import stream_status
from hbdns.liveness import BeatRequest
from hbdns.model import Zone
from hbdns.store import Store
from tests.support.pdns import started_pdns, stop_all
from tests.support.servers import Process, RedisServer, wait_for, which
from tests.support.sinks import SmtpSink

OUT = Path(__file__).resolve().parent / "out"
ROOT = Path(__file__).resolve().parents[1]
WORK = Path("/tmp/hbdns-bench-mass")
ZONE = "dyn.bench.test"
NEUTRAL = "192.0.2.1"
NOC = "noc@provider.test"
INTERVAL = 5.0  # heartbeat-c
QPS = 2000  # the fixed DNS load
SAMPLE = 300  # stopped accounts polled at pdns (a round of polls is the resolution)


def beater(
    redis_url: str, ids: list[int], stop_ids: list[int], expiry_ms: int, stop: Any, halt: Any, beats: Any
) -> None:
    """A process of its own (so the poller is not starved): beats every account every INTERVAL s
    through the beat script, in 50 slices over the interval; once ``stop`` is set, no more beats
    for ``stop_ids``."""
    store = Store(connect(redis_url), config.load({}))
    stopped = set(stop_ids)
    chunk = max(1, len(ids) // 50)
    while not halt.is_set():
        start = time.monotonic()
        for k in range(0, len(ids), chunk):
            todo = [i for i in ids[k : k + chunk] if not (stop.is_set() and i in stopped)]
            now = int(time.time() * 1000)
            store.liveness.beats(
                BeatRequest(i, ZONE, expiry_ms, ipv4=f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}", counter=now)
                for i in todo
            )
            with beats.get_lock():
                beats.value += len(todo)
            halt.wait(max(0.0, start + INTERVAL * (k // chunk + 1) / 50 - time.monotonic()))
            if halt.is_set():
                return


def dnsperf(port: int, names: Path, seconds: float) -> dict[str, float]:
    """dnsperf at QPS for ``seconds``: answered/s, p99 latency (ms) and timeouts, from its verbose output."""
    argv = [which("dnsperf"), "-s", "127.0.0.1", "-p", str(port), "-d", str(names), "-l", str(seconds)]
    out = subprocess.run(
        [*argv, "-Q", str(QPS), "-c", "4", "-t", "2", "-v"], capture_output=True, text=True, timeout=seconds + 60
    ).stdout
    lat = [float(m.group(1)) * 1000 for m in re.finditer(r"^> \S+ .* ([\d.]+)$", out, re.M)]
    lost = re.search(r"Queries lost:\s+(\d+)", out)
    qps = re.search(r"Queries per second:\s+([\d.]+)", out)
    return {
        "qps": float(qps.group(1)) if qps else 0.0,
        "p99_ms": percentile(lat, 99) if lat else float("nan"),
        "timeouts": float(lost.group(1)) if lost else float("nan"),
    }


def _is_neutral(port: int, name: str) -> bool:
    msg = dns.query.udp(dns.message.make_query(name, "A"), "127.0.0.1", port=port, timeout=1)
    return any(rr.address == NEUTRAL for rrset in msg.answer for rr in rrset)


def scenario(n: int, share: float, tag: str) -> dict[str, Any]:
    work = WORK / tag
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    smtp = SmtpSink().start()
    procs: list[Process] = []
    with RedisServer(work / "redis") as srv:
        r = connect(srv.url)
        settings = config.load({})
        store = Store(r, settings)
        store.add_zone(Zone(apex=ZONE, ns=(f"ns1.{ZONE}",), hostmaster=f"hm.{ZONE}", neutral_ipv4=NEUTRAL))
        accounts = store.bulk_add_accounts(
            [
                store.new_account(f"h{i}.{ZONE}", "heartbeat-c", mx=True, emails=[f"c{i}@customer.test"])
                for i in range(n)
            ]
        )
        ids = [a.id for a in accounts]
        names = {a.id: a.fqdn for a in accounts}
        pdns = started_pdns(work, srv.url, "unix", extra={"loglevel": "3"})
        try:
            env = {k: v for k, v in os.environ.items() if not k.startswith("HBDNS_")}
            env.update(
                HBDNS_REDIS_URL=srv.url,
                HBDNS_SMTP_HOST="127.0.0.1",
                HBDNS_SMTP_PORT=str(smtp.port),
                HBDNS_OPERATOR_EMAILS=NOC,
                HBDNS_LOG_LEVEL="warning",
                **pdns.writer_env,
            )
            for service in ("sweeper", "notifier"):
                procs.append(
                    Process([sys.executable, "-m", f"{service}.main"], work / f"{service}.log", env=env, cwd=str(ROOT))
                )
            stop = sorted(random.sample(ids, max(1, int(n * share))))
            ctx = multiprocessing.get_context("fork")
            stop_now, halt, beats = ctx.Event(), ctx.Event(), ctx.Value("q", 0)
            expiry = store.plans["heartbeat-c"].expiry_ms
            proc = ctx.Process(target=beater, args=(srv.url, ids, stop, expiry, stop_now, halt, beats), daemon=True)
            proc.start()
            wait_for(lambda: _deadlines(r) >= n, 120, interval=0.5, what="every account live")
            qfile = work / "queries.txt"
            qfile.write_text("".join(f"{names[i]} A\n" for i in random.sample(ids, min(n, 10_000))))
            time.sleep(2 * INTERVAL)  # a census and steady beating
            steady = dnsperf(pdns.port, qfile, 10)
            mails_before = len(smtp.mails)
            t_stop = time.time()
            stop_now.set()  # each beats no more from its next slot: all within one beat interval
            during: dict[str, float] = {}
            load = threading.Thread(target=lambda: during.update(dnsperf(pdns.port, qfile, 12)))
            time.sleep(max(0.0, 3 * INTERVAL - 4))
            load.start()  # from shortly before the first deadline through the neutralizations
            sample = random.sample(stop, min(SAMPLE, len(stop)))
            neutral_at: dict[int, float] = {}
            deadline = time.time() + 60
            rounds: list[float] = []
            while len(neutral_at) < len(sample) and time.time() < deadline:
                rounds.append(time.time())
                for i in sample:
                    if i not in neutral_at:
                        try:
                            if _is_neutral(pdns.port, names[i]):
                                neutral_at[i] = time.time()
                        except Exception:
                            continue
            load.join()
            last = dict(zip(sample, _last_beats(r, sample), strict=True))  # Redis' clock, ms
            lat = [neutral_at[i] - last[i] / 1000 for i in neutral_at]
            recorded = wait_for(
                lambda: sum(1 for s in _states(r, stop) if s == "neutral") == len(stop) or None, 60,
                interval=0.5, what="all recorded neutral",
            )  # fmt: skip
            alarm = (
                wait_for(lambda: smtp.mails_for(NOC), 90, interval=0.2, what="operator alarm") if share >= 0.25 else []
            )
            alarm_s = (alarm[0].received - t_stop) if alarm else float("nan")
            time.sleep(10)  # what the notifier sends in the first seconds after the event
            customer_mails = [m for m in smtp.mails[mails_before:] if NOC not in m.rcpts]
            window_s = time.time() - t_stop
            wait_for(lambda: _lag(r) == 0, 300, interval=0.5, what="the notifier caught up")
            st = stream_status(r)
            halt.set()
            proc.join(10)
            return {
                "accounts": n,
                "stopped": len(stop),
                "neutral_p99_s": percentile(lat, 99) if lat else float("nan"),
                "neutral_max_s": max(lat) if lat else float("nan"),
                "poll_round_s": (rounds[-1] - rounds[0]) / max(1, len(rounds) - 1) if rounds else 0.0,
                "sampled_neutral": len(neutral_at),
                "sample": len(sample),
                "all_recorded": bool(recorded),
                "events_lost": st["unread"],
                "steady": steady,
                "during": during,
                "alarm_s": alarm_s,
                "customer_mails": len(customer_mails),
                "observed_s": window_s,
                "mass_events": [json.loads(v) for v in r.hgetall(keys.mass_events()).values()],
                "beats": beats.value,
            }
        finally:
            for p in procs:
                p.stop()
            stop_all(pdns)
            smtp.stop()


def _states(r: Any, ids: list[int]) -> list[str]:
    pipe = r.pipeline(transaction=False)
    for i in ids:
        pipe.hget(keys.account(i), "state")
    return list(pipe.execute())


def _last_beats(r: Any, ids: list[int]) -> list[int]:
    pipe = r.pipeline(transaction=False)
    for i in ids:
        pipe.hget(keys.account(i), "last_beat")
    return [int(x or 0) for x in pipe.execute()]


def _deadlines(r: Any) -> int:
    pipe = r.pipeline(transaction=False)
    for shard in keys.all_shards():
        pipe.zcard(keys.deadlines(shard))
    return sum(int(n) for n in pipe.execute())


def _lag(r: Any) -> int:
    groups = {g["name"]: g for g in stream_status(r)["groups"]}
    g = groups.get("hbdns-notifier")
    return int(g["lag"] or 0) + int(g["pending"]) if g else -1


def run(quick: bool = False, accounts: int | None = None) -> list[Metric]:
    n = accounts or (10_000 if quick else 100_000)
    out: list[Metric] = []
    results = {}
    for share, tag in ((1.0, "all"), (0.1, "tenth")):
        res = scenario(n, share, tag)
        results[tag] = res
        head = f"mass outage, {int(share * 100)}% of {n // 1000}k heartbeat-c accounts stop within 1 s"
        out += [
            Metric(f"{head}: last beat -> neutral at pdns (p99 of {res['sample']} sampled)", "s",
                   (res["neutral_p99_s"],), goal="<= 17 s + one poll round, every one recorded",
                   met=res["neutral_p99_s"] <= 17 + res["poll_round_s"] and res["all_recorded"]
                   and res["sampled_neutral"] == res["sample"],
                   extra={"max_s": res["neutral_max_s"], "poll_round_s": res["poll_round_s"]}),
            Metric(f"{head}: events lost", "events", (float(res["events_lost"]),), goal="0",
                   met=res["events_lost"] == 0),
            Metric(f"{head}: DNS p99 at {QPS} q/s during the neutralizations", "ms", (res["during"]["p99_ms"],),
                   "steady state before the stop", (res["steady"]["p99_ms"],), goal="no timeouts",
                   met=res["during"]["timeouts"] == 0,
                   extra={"during": res["during"], "steady": res["steady"]}),
            Metric(f"{head}: customer e-mails in the first {res['observed_s']:.0f} s", "messages",
                   (float(res["customer_mails"]),),
                   goal="0 (held)" if share >= 0.25 else "sent at the configured rate",
                   met=res["customer_mails"] == 0 if share >= 0.25 else res["customer_mails"] > 0,
                   extra={"alarm_s": res["alarm_s"], "mass_events": res["mass_events"]}),
        ]  # fmt: skip
    OUT.mkdir(exist_ok=True)
    (OUT / "mass.json").write_text(json.dumps({"results": results, "metrics": [m.to_dict() for m in out]}, indent=1))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--accounts", type=int)
    args = p.parse_args(argv)
    for m in run(quick=args.quick, accounts=args.accounts):
        print(json.dumps(m.to_dict()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
