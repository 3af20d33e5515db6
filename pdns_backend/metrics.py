"""The backend's Prometheus metrics: lookups by result, their latency, calls, Redis errors.

Counted where :class:`~pdns_backend.backend.Backend` decides, so the HTTP and the unix transport
count alike. Results: ``live`` and ``neutral`` (an account's names, by the ``alive`` key at that
moment), ``zone`` (the zone's own records: apex, static, ACME, empty non-terminals), ``empty``
(no records: pdns makes NXDOMAIN or NODATA of it) and ``error`` (SERVFAIL).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from hbdns.metrics import LATENCY_BUCKETS

RESULTS = ("live", "neutral", "zone", "empty", "error")


def result_kind(account: Sequence[str | None] | None, live: int, records: Sequence[Any]) -> str:
    """An answer's result (not ``error``): by the account's liveness, or the zone's own records."""
    if not records:
        return "empty"
    return "zone" if account is None else "live" if live else "neutral"


class BackendMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        registry = registry if registry is not None else CollectorRegistry()
        self.registry = registry
        lookups = Counter(
            "hbdns_backend_lookups",
            "Lookups answered, by result: live, neutral, zone (the zone's own records), empty, error.",
            ["result"],
            registry=registry,
        )
        self.lookups = {r: lookups.labels(result=r) for r in RESULTS}  # children resolved once: hot path
        self.lookup_seconds = Histogram(
            "hbdns_backend_lookup_seconds",
            "Time to answer one lookup call (the unix transport answers lookups that arrive together in one).",
            registry=registry,
            buckets=LATENCY_BUCKETS,
        )
        self.calls = Counter(
            "hbdns_backend_calls",
            "Remote-backend calls other than lookups, by method and result (ok, error).",
            ["method", "result"],
            registry=registry,
        )
        self.redis_errors = Counter(
            "hbdns_backend_redis_errors", "Backend calls that failed because Redis did.", registry=registry
        )
        self.redis_up = Gauge(
            "hbdns_backend_redis_up", "0 from a failed Redis call until the next one succeeds.", registry=registry
        )

    def watch_cache(self, stats: Callable[[], dict[str, int]]) -> None:
        """Export the answer cache's counters (:class:`~pdns_backend.answer_cache.CacheStats` and its
        size, ``Backend.stats()``), read at scrape time: the hot path keeps plain ints."""
        self.registry.register(_CacheCollector(stats))

    def watch_redis(self, down: Callable[[], bool]) -> None:
        """Read ``hbdns_backend_redis_up`` from ``down()`` at scrape time."""
        self.redis_up.set_function(lambda: 0.0 if down() else 1.0)


_CACHE_COUNTERS = {
    "hits": "Lookups answered from the answer cache.",
    "misses": "Lookups the answer cache did not hold (asked Redis).",
    "invalidations": "Cached answers dropped because Redis reported a key of theirs changed.",
    "flushes": "Times the whole answer cache was dropped (a connection made or lost, a flush, the name index).",
    "evictions": "Cached answers dropped for room.",
    "expiries": "Cached live answers turned neutral at their alive key's expiry.",
}


class _CacheCollector(Collector):
    def __init__(self, stats: Callable[[], dict[str, int]]) -> None:
        self.stats = stats

    def collect(self) -> Iterator[Metric]:
        s = self.stats()
        for name, text in _CACHE_COUNTERS.items():
            yield CounterMetricFamily(f"hbdns_backend_answer_cache_{name}", text, value=s[name])
        yield GaugeMetricFamily("hbdns_backend_answer_cache_entries", "Answers in the cache now.", value=s["entries"])
