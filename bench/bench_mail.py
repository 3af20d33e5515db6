"""Mail through a real backup MX (issue 13), in a private namespace (tests.support.mail_scenarios
``bench``): Postfix as the backup MX from deploy/postfix, a stock Postfix as the sender, DNS from
pdns (phase 1: a static zone the scenario rewrites), the neutral host.

- customer back (DNS at pdns shows its address again) -> last queued message delivered, with an
  ETRN flush right then; same-run reference: the same with no flush, left to Postfix's default
  retry schedule (outages started spread over one queue_run_delay period, so every phase of the
  schedule is sampled; the reference alone takes ~10 minutes, as Postfix does).
- what a sending MTA pays per message while the customer is neutral, by what the neutral address
  does on port 25 (the 421 of hbdns-neutral-host, a refused connection, no answer at all), one
  message at a time; reference: delivery straight to the live customer.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from bench.common import Metric
from tests.support import netns

COSTS = [
    ("421", "neutral host (421)", ""),
    ("refused", "address refusing port 25", ""),
    ("dropped", "address not answering", "smtp_connect_timeout (30 s) per attempt and sending MTA; 3 in parallel"),
]


def run(quick: bool) -> list[Metric]:
    reason = netns.unavailable()
    if reason:
        raise RuntimeError(f"no namespace: {reason}")
    runs, refs = (5, 0) if quick else (20, 20)
    with tempfile.TemporaryDirectory(prefix="hbdns-bench-mail-") as tmp:
        done = netns.run(
            "tests.support.mail_scenarios",
            ["bench", "--runs", str(runs), "--refs", str(refs)],
            workdir=Path(tmp),
            timeout=1800,
        )
    if done.returncode != 0:
        raise RuntimeError(done.explain())
    res = done.result
    costs = res["costs"]
    flushed = tuple(res["flushed"])
    live = tuple(costs["live"])
    note = f"outage {res['outage_s']:.0f} s, 5 messages queued per run"
    if not refs:
        note += "; quick mode: no Postfix-schedule reference"
    else:
        note += f"; without flush Postfix delivered at {res['reference_deliveries_at_s']} s after its start"
    return [
        Metric(
            name="mail: customer back -> last queued message delivered, ETRN flush",
            unit="s",
            samples=flushed,
            reference_name="same, no flush (Postfix's default retry schedule)",
            reference_samples=tuple(res["reference"]),
            goal="max <= 10 s",
            met=max(flushed) <= 10,
            notes=note,
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
