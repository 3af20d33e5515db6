"""Transport outages and a notifier crash, end to end (issue 14): real redis-server, the sweeper and the
notifier as processes, the aiosmtpd relay and the HTTP SMS gateway of tests/support/sinks.py.

Scaled down to fit ``make test``: the outages last 12 s instead of 10 min, and the backoff caps
(``HBDNS_NOTIFY_BACKOFF_MAX`` 300 s and ``HBDNS_NOTIFY_PROBE_MAX`` 60 s shipped) are 2 s, so a
receiver is still probed several times during the outage. ``make bench`` (bench/bench_faults.py)
runs the same scenarios for the full 10 minutes with the shipped settings.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import redis

from tests.support.notify_faults import notifier_killed, transport_outage
from tests.support.sinks import HttpSink, SmtpSink

OUTAGE_S = 12.0
BACKOFF_MAX = 2.0
ACCOUNTS = 30


def _no_loss(figures: object) -> None:
    f = figures
    assert (f.lost, f.doubled, f.wrong, f.dead_letters) == (0, 0, 0, 0), f  # type: ignore[attr-defined]


def test_smtp_down_during_an_outage_burst_delivers_everything_once_and_merges_the_moot(
    real_redis: redis.Redis, redis_url: str, tmp_path: Path, smtp: SmtpSink
) -> None:
    [f] = transport_outage(
        real_redis, redis_url, tmp_path, channels=("email",), outage_s=OUTAGE_S, backoff_max=BACKOFF_MAX, smtp=smtp
    ).values()
    _no_loss(f)
    assert f.merged == ACCOUNTS // 2  # those back during the outage: one "was offline from .. to .." each
    assert f.delivered == f.expected == ACCOUNTS // 2 + 2 * (ACCOUNTS // 2)
    assert f.extra["held_during_outage"] == ["email"]
    assert f.extra["queue_peak"] >= ACCOUNTS  # hbdns status saw the queue grow, and how old it got
    assert f.extra["queue_oldest_s"] >= OUTAGE_S - 5
    assert f.extra["last_delivery_after_return_s"] < BACKOFF_MAX * 3 + 10


def test_sms_gateway_answering_503_delivers_everything_once_and_merges_the_moot(
    real_redis: redis.Redis, redis_url: str, tmp_path: Path, http: HttpSink
) -> None:
    [f] = transport_outage(
        real_redis, redis_url, tmp_path, channels=("sms",), outage_s=OUTAGE_S, backoff_max=BACKOFF_MAX, http=http
    ).values()
    _no_loss(f)
    assert f.merged == ACCOUNTS // 2 and f.delivered == f.expected
    failed = [r for r in http.log("/sms") if r.status == 503]
    assert 0 < len(failed) < 4 * OUTAGE_S / BACKOFF_MAX * 2  # probes, not every queued SMS trying on its own


@pytest.mark.parametrize("same_name", [True, False], ids=["restart-same-name", "another-notifier-takes-over"])
def test_notifier_sigkilled_mid_burst_delivers_everything_within_10_s(
    real_redis: redis.Redis, redis_url: str, tmp_path: Path, smtp: SmtpSink, same_name: bool
) -> None:
    f = notifier_killed(real_redis, redis_url, tmp_path, smtp, same_name=same_name)
    assert (f.lost, f.wrong, f.dead_letters) == (0, 0, 0), f
    assert 0 < f.extra["delivered_before_kill"] < f.expected  # the kill did land mid-burst
    assert f.extra["all_delivered_after_restart_s"] <= 10.0, f
    assert f.extra["doubled_not_in_flight"] == 0 and f.doubled <= f.extra["in_flight_at_kill"] <= f.extra["workers"]
