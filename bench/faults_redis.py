"""The "faults" benchmark's ``redis`` section (issue 14): Redis SIGKILLed under 150 beating accounts.

The scenario ``make test`` runs (tests/support/redis_outage.py): redis-server with the shipped AOF
setting, the real listener, the sweeper and the notifier, pdns with the real backend asked for the
names all along; Redis SIGKILLed for 10 s and then for 60 s, restarted from its AOF each time, one
account stopping for good at each kill. Rows per outage: false neutralizations and false e-mails
of accounts that kept beating, lost or doubled transitions and messages of the account that really
stopped (goal 0 each), NXDOMAIN answers (goal 0), and when the stopped account was neutralized
(goal: one window after ingest was back). Before issue 14 the 10 s outage neutralized 52 of 190
accounts that never stopped beating (104 false e-mails).
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from bench.common import Metric
from tests.support.redis_outage import WINDOW, OutageFigures, OutageRig

OUTAGES = (10.0, 60.0)
ACCOUNTS = 150


def redis_section(workdir: Path, quick: bool) -> list[Metric]:
    rig = OutageRig(workdir, accounts=ACCOUNTS, stoppers=len(OUTAGES))
    figures: list[OutageFigures] = []
    try:
        for seconds, stopper in zip(OUTAGES, rig.stoppers, strict=True):
            print(f"   redis: SIGKILL for {seconds:g} s", flush=True)
            figures.append(rig.outage(seconds, stopper))
            print(f"   {figures[-1]}", flush=True)
    finally:
        rig.stop()
    return [m for f in figures for m in _metrics(f)]


def _zero(name: str, unit: str, value: int, notes: str = "") -> Metric:
    return Metric(name=name, unit=unit, samples=(float(value),), goal="0", met=value == 0, notes=notes)


def _metrics(f: OutageFigures) -> list[Metric]:
    head = (
        f"Redis SIGKILLed for {f.seconds:g} s, restarted from its AOF, {ACCOUNTS} accounts beating every 5 s "
        f"({f.accounts} throughout)"
    )
    expected = ["neutralized", "recovered"]
    lost = sum(1 for k in expected if k not in f.stopper_transitions)
    lost_mails = max(0, 2 - f.stopper_mails)
    notes = (
        f"held beats written on reconnect {f.held_beats_reapplied}; every beating account's alive key back "
        f"{f.live_again_s} s after the restart began; pdns answered {f.probes_during} probes from the kill on "
        f"({f.servfail_during} SERVFAIL while the backend could not read Redis), {f.neutral_after} neutral "
        f"answers of {f.answers_after} for beating accounts after the restart, the last "
        f"{f.neutral_until_s} s after it began"
    )
    return [
        _zero(f"{head}: false neutralizations", "accounts", f.false_transitions, notes),
        _zero(f"{head}: false notifications", "messages", f.false_mails),
        _zero(
            f"{head}: lost or doubled transitions",
            "transitions",
            lost + f.doubled,
            f"the account that stopped at the kill recorded {f.stopper_transitions}",
        ),
        _zero(f"{head}: lost messages", "messages", lost_mails, f"{f.stopper_mails} of 2 (offline, back online)"),
        _zero(f"{head}: NXDOMAIN answers", "answers", f.nxdomain_during),
        Metric(
            name=f"{head}: the account that really stopped, neutralized after the restart",
            unit="s",
            samples=(f.stopper_neutralized_after_s,),
            goal=f"one window ({WINDOW:g} s) after ingest was back, not before",
            met=WINDOW - 1 <= f.stopper_neutralized_after_s <= WINDOW + 10,
            extra={"figures": asdict(f)},
        ),
    ]
