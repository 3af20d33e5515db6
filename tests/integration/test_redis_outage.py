"""Issue 14: a Redis outage of our own is no customer's outage. 150 heartbeat-c accounts beat through
the real listener while redis-server is SIGKILLed for 10 s and then for 60 s and restarted from its
AOF each time (tests/support/redis_outage.py): no account that kept beating is neutralized or
notified, no transition is lost or doubled, pdns never answers NXDOMAIN, and an account that really
stopped at the kill is neutralized once and notified once, one window after ingest was back."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.redis_outage import WINDOW, OutageFigures, OutageRig


def check(f: OutageFigures) -> None:
    print(f)
    assert (f.false_transitions, f.false_mails, f.doubled) == (0, 0, 0), f.extra["false"]
    assert f.stopper_transitions == ["neutralized", "recovered"]  # once each: none lost, none doubled
    assert f.stopper_mails == 2  # offline, then back online
    assert f.nxdomain_during == 0 and f.probes_during > 100
    # after the restart, neutral only until the listener wrote its held beats (+ pdns' 1 s caches)
    assert f.neutral_until_s <= 5.0
    # held back until ingest was healthy for one whole window, not before
    assert WINDOW - 1 <= f.stopper_neutralized_after_s <= WINDOW + 10


@pytest.mark.long_wait
def test_redis_killed_for_10_s_and_for_60_s(tmp_path: Path) -> None:
    rig = OutageRig(tmp_path, accounts=150, stoppers=2)
    try:
        short = rig.outage(10.0, rig.stoppers[0])
        long = rig.outage(60.0, rig.stoppers[1])
    finally:
        rig.stop()
    check(short)
    check(long)
    assert long.held_beats_reapplied >= 100  # the beats of the outage, written on reconnect
