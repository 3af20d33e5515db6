"""The sweeper's Prometheus metrics: transitions it recorded, its sweeps, and at scrape time the
accounts live and neutral, the due deadlines not yet recorded and how late the oldest is.

No SCAN: the account counts come from each shard's ``keys.stats(shard)`` field ``live``, the
shard's accounts recorded live, which the transition scripts keep as a state crosses ``live``
(``hbdns/lua/lib.lua``), summed, and ``SCARD accounts`` for all of them. A database written before
that count existed has none until ``hbdns migrate`` counted it (every shard, empty ones too): until
every shard has it ``hbdns_accounts`` is not exported and ``hbdns_accounts_counted`` is 0. The
backlog reads every shard's ``deadlines`` set at Redis ``TIME``:
members (one per account and address family) whose deadline passed without the transition
recorded yet (DNS already answers neutral for that family).

Several sweepers each export the same values (alert on ``max``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator

import redis
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from hbdns import keys
from hbdns.metrics import LATENCY_BUCKETS

log = logging.getLogger(__name__)


def liveness_counts(r: redis.Redis) -> dict[str, float | None]:
    """Accounts live/neutral (None: not counted yet), the sweep backlog and lag (seconds), summed
    over the shards (one pipelined round trip)."""
    secs, micros = r.time()
    now_ms = int(secs) * 1000 + int(micros) // 1000
    pipe = r.pipeline(transaction=False)
    pipe.scard(keys.accounts())
    for shard in keys.all_shards():
        pipe.hget(keys.stats(shard), "live")
        pipe.zcount(keys.deadlines(shard), "-inf", now_ms)
        pipe.zrange(keys.deadlines(shard), 0, 0, withscores=True)
    total, *flat = pipe.execute()
    lives, backlogs, oldest = flat[0::3], [int(n) for n in flat[1::3]], flat[2::3]
    # the oldest unrecorded deadline of the shards with a backlog
    firsts = [float(o[0][1]) for o, n in zip(oldest, backlogs, strict=True) if o and n]
    lag = max(0.0, (now_ms - min(firsts)) / 1000) if firsts else 0.0
    counted = all(live is not None for live in lives)  # a part-counted sum would be wrong
    live = sum(int(n) for n in lives) if counted else 0
    return {
        "live": live if counted else None,
        "neutral": max(0, int(total) - live) if counted else None,
        "backlog": sum(backlogs),
        "lag": lag,
    }


class LivenessCollector(Collector):
    """``hbdns_accounts{state}``, ``hbdns_sweep_backlog``, ``hbdns_sweep_lag_seconds``, read at scrape."""

    def __init__(self, r: redis.Redis) -> None:
        self.r = r

    def describe(self) -> Iterable[Metric]:
        return []  # nothing to read from Redis at registration

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("hbdns_sweeper_redis_up", "1 when this scrape could read the liveness counts.")
        try:
            c = liveness_counts(self.r)
        except redis.RedisError as exc:
            log.debug("liveness counts unavailable", extra={"error": str(exc)})
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        counted = c["live"] is not None
        yield GaugeMetricFamily(
            "hbdns_accounts_counted", "1 once the live count exists (else run hbdns migrate).", int(counted)
        )
        if counted:
            accounts = GaugeMetricFamily(
                "hbdns_accounts", "Accounts by recorded state: live or neutral.", labels=["state"]
            )
            accounts.add_metric(["live"], c["live"] or 0)
            accounts.add_metric(["neutral"], c["neutral"] or 0)
            yield accounts
        yield GaugeMetricFamily(
            "hbdns_sweep_backlog",
            "Deadlines (per account and family) passed without their transition recorded yet.",
            c["backlog"],
        )
        yield GaugeMetricFamily(
            "hbdns_sweep_lag_seconds", "How long ago the oldest unrecorded deadline passed (0: none).", c["lag"]
        )


class SweeperMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        registry = registry if registry is not None else CollectorRegistry()
        self.registry = registry
        self.neutralized = Counter(
            "hbdns_sweeper_neutralized",
            "neutralized transitions this sweeper recorded, by what found them (sweep, hint).",
            ["via"],
            registry=registry,
        )
        self.sweeps = Counter("hbdns_sweeper_sweeps", "Sweep steps completed.", registry=registry)
        self.sweep_seconds = Histogram(
            "hbdns_sweeper_sweep_seconds", "Time one sweep step took.", registry=registry, buckets=LATENCY_BUCKETS
        )
        self.last_sweep = Gauge(
            "hbdns_sweeper_last_sweep_timestamp_seconds",
            "When the last sweep step completed (Unix time).",
            registry=registry,
        )

    def swept(self, seconds: float) -> None:
        self.sweeps.inc()
        self.sweep_seconds.observe(seconds)
        self.last_sweep.set(time.time())
