"""Mail through a real backup MX (issue 13), in private namespaces: Postfix as the backup MX from
deploy/postfix, a stock Postfix as the sender, the neutral host.

- first beat back -> last queued message delivered, on the real hbdns stack
  (tests.support.mail_bench: pdns with the hbdns backend, pdns-recursor as the backup
  MX's caching resolver with other users keeping the neutral answer cached, listener, sweeper,
  notifier with the recovery flush; the customer's hbdns-client), 20 outages of 5 queued messages
  each; same-run reference: 20 accounts through the same outage with the notifier not flushing,
  left to Postfix's default retry schedule (outages started spread over one queue_run_delay, so
  every phase of the schedule is sampled; the reference alone takes ~10 minutes, as Postfix does).
- what a sending MTA pays per message while the customer is neutral, by what the neutral address
  does on port 25 (the 421 of hbdns-neutral-host, a refused connection, no answer at all), one
  message at a time (tests.support.mail_scenarios ``bench``, DNS from a static zone); reference:
  delivery straight to the live customer.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from bench.common import Metric
from tests.support import netns

COSTS = [
    ("421", "neutral host (421)", ""),
    ("refused", "address refusing port 25", ""),
    ("dropped", "address not answering", "smtp_connect_timeout (30 s) per attempt and sending MTA; 3 in parallel"),
]


def _scenario(module: str, args: list[str]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="hbdns-bench-mail-") as tmp:
        done = netns.run(module, args, workdir=Path(tmp), timeout=2400)
    if done.returncode != 0:
        raise RuntimeError(done.explain())
    return done.result


def run(quick: bool) -> list[Metric]:
    reason = netns.unavailable()
    if reason:
        raise RuntimeError(f"no namespace: {reason}")
    runs, refs = (5, 0) if quick else (20, 20)
    stack = _scenario("tests.support.mail_bench", ["bench", "--runs", str(runs), "--refs", str(refs)])
    costs = _scenario("tests.support.mail_scenarios", ["bench", "--runs", str(runs), "--refs", "0"])["costs"]
    flushed = tuple(stack["flushed"])
    live = tuple(costs["live"])
    note = (
        f"hbdns stack; outage {stack['outage_s']:.0f} s, 5 queued messages per run; the backup MX resolves "
        "through a caching resolver that others keep asking: where it still held the neutral answer at the "
        "first flush, the second one (record TTL + 2 s later) delivered"
    )
    if not refs:
        note += "; quick mode: no Postfix-schedule reference"
    return [
        Metric(
            name="mail: first beat back -> last queued message delivered, recovery flush",
            unit="s",
            samples=flushed,
            reference_name="same, no flush (Postfix's default retry schedule)",
            reference_samples=tuple(stack["reference"]),
            goal="max <= 10 s",
            met=max(flushed) <= 10,
            notes=note,
        ),
        Metric(
            name="heartbeat-c: last beat -> neutral at a caching resolver (pdns-recursor)",
            unit="s",
            samples=tuple(stack["neutral_after_last_beat_s"]["resolver"]),
            reference_name="last beat -> neutral at pdns",
            reference_samples=tuple(stack["neutral_after_last_beat_s"]["pdns"]),
            goal="max <= 20 s (the seed: neutral within 20 s)",
            met=max(stack["neutral_after_last_beat_s"]["resolver"]) <= 20,
            notes="window 15 s + grace 0.5 s + pdns' 1 s caches + record TTL 3 s; the resolver asked every 50 ms",
        ),
        *(
            Metric(
                name=f"mail: sender's delay per message while neutral, {label}",
                unit="s",
                samples=tuple(costs[key]),
                reference_name="live: straight to the customer",
                reference_samples=live,
                notes=notes,
            )
            for key, label, notes in COSTS
        ),
    ]
