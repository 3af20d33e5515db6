"""``make bench`` "faults" section (issue 14): what our own faults cost the customers. Goal per fault: 0 lost.

Section ``notifier`` (tests/support/notify_faults.py, the same scenarios ``make test`` runs scaled down),
the sweeper and the notifier as processes on a real redis-server, the shipped notifier settings:

- the SMTP relay refuses connections and the SMS gateway answers 503, both for 10 minutes, while
  200 accounts go offline at once; 100 come back during the outage (their offline and recovery
  messages must arrive as one merged message), 100 after it (offline, then "back online"). Counted
  per channel: messages lost, doubled, merged, and how long after the receivers returned the last
  one arrived (a held receiver is probed at least every 60 s, ``HBDNS_NOTIFY_PROBE_MAX``);
- the notifier SIGKILLed once a fifth of a burst of 50 outage e-mails went out (each takes 0.1 s at
  the relay), then started again under the same consumer name, or another notifier taking over:
  seconds from the restart until all 50 arrived (goal <= 10), lost (goal 0), doubled (goal: only
  the ones in flight at the kill: accepted by the relay, not yet recorded).

Section ``listener`` (tests/support/junk_flood.py, the scenario ``make test`` runs for 30 s): a real
listener and redis-server with the shipped settings, and a sweeper. A customer beats every second
from its address, with 100 neighbours behind the same address (a CGNAT) beating every second too,
alternately without and under 10,000 junk datagrams/s spoofed from that address (1-byte datagrams,
wrong versions, forged MACs with the customer's id, unknown ids, replays of its own beats):
accepted beats/s of the customer and of the neighbours (goal: every beat, 0 neutralized), and the
listener's CPU. Plus the listener's CPU per datagram by kind (bench/listener_stage_costs.py) and the
cost of an account lookup, the figures behind the pre-authentication design (docs/protocol.md).

Other faults of issue 14 (Redis restarts) are separate sections of this module.
Run: ``python -m bench.bench_faults [--quick] [--only notifier|listener]``; results in
bench/out/faults.json (``--only``: bench/out/faults-<sections>.json).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench.common import Metric
from hbdns.connection import connect
from tests.support.notify_faults import Figures, notifier_killed, transport_outage
from tests.support.servers import RedisServer
from tests.support.sinks import HttpSink, SmtpSink

OUT = Path(__file__).resolve().parent / "out"
LABEL = {"email": "SMTP relay refusing connections", "sms": "SMS gateway answering 503"}


def _count(name: str, value: int, goal: int, notes: str) -> Metric:
    return Metric(name=name, unit="messages", samples=(float(value),), goal=f"{goal}", met=value == goal, notes=notes)


def _outage_metrics(figures: dict[str, Figures], minutes: float, accounts: int) -> list[Metric]:
    out = []
    for ch, f in figures.items():
        head = f"notifier, {LABEL[ch]} for {minutes:g} min, {accounts} accounts offline"
        notes = (
            f"{f.delivered} of {f.expected} expected delivered, {f.wrong} out of order or unexpected, "
            f"{f.dead_letters} dead letters; queue peak {f.extra['queue_peak']} (both channels), oldest "
            f"{f.extra['queue_oldest_s']} s at the end of the outage; last message "
            f"{f.extra['last_delivery_after_return_s']} s after the receivers returned"
        )
        out += [
            _count(f"{head}: messages lost", f.lost, 0, notes),
            _count(f"{head}: messages doubled", f.doubled, 0, notes),
            _count(f"{head}: moot pairs merged into one message", f.merged, accounts // 2, notes),
            Metric(
                name=f"{head}: last message after the receiver returned",
                unit="s",
                samples=(float(f.extra["last_delivery_after_return_s"]),),
                notes="bounded by the probe cap of a held receiver (HBDNS_NOTIFY_PROBE_MAX, 60 s shipped)",
            ),
        ]
    return out


def _kill_metrics(runs: dict[str, list[Figures]]) -> list[Metric]:
    out = []
    for variant, figures in runs.items():
        head = f"notifier SIGKILLed mid-burst of 50 e-mails, {variant}"
        in_flight = [f.extra["in_flight_at_kill"] for f in figures]
        notes = (
            f"delivered before the kill {[f.extra['delivered_before_kill'] for f in figures]}, in flight at the "
            f"kill {in_flight} (8 workers); doubled ones not in flight: "
            f"{sum(f.extra['doubled_not_in_flight'] for f in figures)}"
        )
        after = tuple(float(f.extra["all_delivered_after_restart_s"]) for f in figures)
        doubled = tuple(float(f.doubled) for f in figures)
        out += [
            Metric(
                name=f"{head}: all delivered after the restart",
                unit="s",
                samples=after,
                goal="<= 10 s",
                met=max(after) <= 10.0,
                notes=notes,
            ),
            Metric(
                name=f"{head}: messages lost",
                unit="messages",
                samples=tuple(float(f.lost) for f in figures),
                goal="0",
                met=all(f.lost == 0 for f in figures),
            ),
            Metric(
                name=f"{head}: messages doubled",
                unit="messages",
                samples=doubled,
                goal="only those in flight at the kill",
                met=all(
                    f.doubled <= f.extra["in_flight_at_kill"] and not f.extra["doubled_not_in_flight"] for f in figures
                ),
                notes=f"median in flight {statistics.median(in_flight)}",
            ),
        ]
    return out


def notifier_section(workdir: Path, quick: bool) -> list[Metric]:
    minutes, accounts, kill_runs = (1.0, 40, 1) if quick else (10.0, 200, 3)
    server = RedisServer(workdir / "redis").start()
    smtp, http = SmtpSink().start(), HttpSink().start()
    r = connect(server.url, socket_timeout=30)
    try:
        r.flushall()
        print(f"   notifier: relay and gateway down {minutes:g} min, {accounts} accounts", flush=True)
        figures = transport_outage(
            r,
            server.url,
            workdir,
            channels=("email", "sms"),
            outage_s=minutes * 60,
            backoff_max=None,
            accounts=accounts,
            smtp=smtp,
            http=http,
        )
        for ch, f in figures.items():
            print(f"   {ch}: {f}", flush=True)
        metrics = _outage_metrics(figures, minutes, accounts)
        runs: dict[str, list[Figures]] = {"restarted under the same name": [], "another notifier takes over": []}
        for variant, same in zip(runs, (True, False), strict=True):
            for k in range(kill_runs):
                r.flushall()
                with smtp.lock:
                    smtp.mails.clear()
                f = notifier_killed(r, server.url, workdir, smtp, same_name=same)
                print(f"   kill, {variant}, run {k + 1}: {f}", flush=True)
                runs[variant].append(f)
        return metrics + _kill_metrics(runs)
    finally:
        smtp.stop()
        http.stop()
        server.stop()


FLOOD_RATE = 10_000.0
NEIGHBOURS = 100
CUSTOMER_SOURCE = "127.0.0.50"


def listener_section(workdir: Path, quick: bool) -> list[Metric]:
    from bench.listener_stage_costs import lookup_costs, shell_costs
    from hbdns import config
    from hbdns.model import Zone
    from hbdns.store import Store
    from sweeper.main import SweeperService
    from tests.support import junk_flood
    from tests.support.listener import ZONE, Listener, beat, now_ms, send

    seconds, pairs = (10.0, 1) if quick else (30.0, 2)
    server = RedisServer(workdir / "redis").start()
    r = connect(server.url)
    store = Store(r, config.load({}))
    store.add_zone(Zone(ZONE, ("ns1.test",), "hostmaster.test", "192.0.2.1"))
    customer = store.add_account(store.new_account(f"customer.{ZONE}", "heartbeat-c"))
    neighbours = tuple(store.add_account(store.new_account(f"n{i}.{ZONE}", "heartbeat-c")) for i in range(NEIGHBOURS))
    gone = [store.add_account(store.new_account(f"gone{i}.{ZONE}", "heartbeat-c")).id for i in range(10)]
    for account_id in gone:
        store.remove_account(account_id)
    listener = Listener(workdir, server.url, HBDNS_LOG_LEVEL="WARNING").start()
    sweeper = SweeperService(config.load({"HBDNS_REDIS_URL": server.url})).start()
    runs: dict[bool, list[junk_flood.FloodFigures]] = {False: [], True: []}
    try:
        send(beat(customer.id, customer.hb_key, now_ms()), listener.port, CUSTOMER_SOURCE, wait=3)
        for _ in range(pairs):
            for flood in (False, True):
                f = junk_flood.run(
                    listener, store, customer, CUSTOMER_SOURCE, seconds=seconds, deleted=tuple(gone),
                    neighbours=neighbours, flood_rate=FLOOD_RATE if flood else 0.0,
                )  # fmt: skip
                print(f"   listener, {'under the flood' if flood else 'no flood'}: {f}", flush=True)
                runs[flood].append(f)
        costs = shell_costs(repeats=3 if quick else 5)
        lookup = lookup_costs(server.url)
    finally:
        sweeper.stop()
        listener.stop()
        r.close()
        server.stop()
    return _listener_metrics(runs, costs, lookup, seconds)


def _listener_metrics(
    runs: dict[bool, list[Any]], costs: dict[str, float], lookup: dict[str, float], seconds: float
) -> list[Metric]:
    flood, calm = runs[True], runs[False]
    head = f"listener, {FLOOD_RATE:,.0f} junk datagrams/s spoofed from a beating customer's address for {seconds:g} s"
    dropped = sum(f.dropped for f in flood)
    behind = sum(f.neighbours_behind for f in flood)
    neutralized = sum(f.neutralized for f in flood)
    notes = (
        f"customer beats every 1 s, {NEIGHBOURS} neighbours behind the same address every 1 s (no reply asked); "
        f"under the flood: {dropped} customer beats dropped, {behind} neighbours not stored, {neutralized} "
        f"neutralized, {sum(f.junk_replies for f in flood)} answers to junk; junk sent per run "
        f"{[f.junk_sent for f in flood]}, kernel drops {[f.kernel_drops for f in flood]}; the listener's work "
        f"per run: {[f.extra['listener_metrics'] for f in flood]}"
    )
    ok = dropped == 0 and behind == 0 and neutralized == 0

    def rate(f: Any) -> float:
        return f.answered / f.seconds

    def neighbour_rate(f: Any) -> float:
        return (f.accepted - f.answered) / f.seconds

    cost_notes = ", ".join(f"{k} {v} us" for k, v in costs.items())
    return [
        Metric(
            name=f"{head}: the customer's accepted beats/s",
            unit="beats/s",
            samples=tuple(rate(f) for f in flood),
            reference_name="the same without the flood",
            reference_samples=tuple(rate(f) for f in calm),
            goal="every beat accepted (0 dropped, 0 neutralized), as without the flood",
            met=ok,
            notes=notes,
            extra={"flood": [asdict(f) for f in flood], "no_flood": [asdict(f) for f in calm]},
        ),
        Metric(
            name=f"{head}: the {NEIGHBOURS} neighbours' accepted beats/s",
            unit="beats/s",
            samples=tuple(neighbour_rate(f) for f in flood),
            reference_name="the same without the flood",
            reference_samples=tuple(neighbour_rate(f) for f in calm),
            goal="every beat stored",
            met=behind == 0 and all(f.accepted - f.answered == f.neighbour_beats for f in flood),
        ),
        Metric(
            name=f"{head}: listener CPU",
            unit="CPU-s/s",
            samples=tuple(round(f.cpu_per_s, 4) for f in flood),
            reference_name="the same without the flood",
            reference_samples=tuple(round(f.cpu_per_s, 4) for f in calm),
            goal="bounded: <= 0.5",
            met=all(f.cpu_per_s <= 0.5 for f in flood),
            notes=f"listener CPU per datagram by kind, without Redis: {cost_notes}; an account lookup: {lookup}",
            extra={"us_per_datagram": costs, "lookup": lookup},
        ),
    ]


SECTIONS: dict[str, Callable[[Path, bool], list[Metric]]] = {"notifier": notifier_section, "listener": listener_section}


def run(quick: bool = False, only: list[str] | None = None) -> list[Metric]:
    metrics: list[Metric] = []
    for name in only or list(SECTIONS):
        with tempfile.TemporaryDirectory(prefix=f"hbdns-bench-faults-{name}-") as tmp:
            metrics += SECTIONS[name](Path(tmp), quick)
    OUT.mkdir(parents=True, exist_ok=True)
    # a run of some sections only does not overwrite the last run of them all
    name = "faults.json" if not only or set(only) == set(SECTIONS) else f"faults-{'-'.join(sorted(set(only)))}.json"
    (OUT / name).write_text(json.dumps([m.to_dict() for m in metrics], indent=2))
    return metrics


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_faults")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", action="append", choices=sorted(SECTIONS), help="run only these sections")
    args = parser.parse_args(argv)
    for m in run(quick=args.quick, only=args.only):
        print(json.dumps({k: v for k, v in m.to_dict().items() if k != "extra"}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
