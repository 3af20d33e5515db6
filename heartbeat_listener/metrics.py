"""The listener's counters, exposed with prometheus_client under the names they always had.

The loop thread adds to plain dicts once per batch (cheaper on the hot path than a locked
prometheus_client counter per beat); :class:`ListenerCollector` turns them into metric families at
scrape time in the HTTP thread (a dict copy is atomic under the GIL). The endpoint is the shared
one (:func:`hbdns.metrics.serve`) on ``HBDNS_METRICS_HOST:HBDNS_METRICS_PORT``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Iterator, Mapping

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from heartbeat_listener.accounts import AccountCache
from heartbeat_listener.batch import RESULTS
from heartbeat_listener.preauth import PreAuth
from heartbeat_listener.recent import RecentBeats

log = logging.getLogger(__name__)

_HELP = {
    "hbdns_heartbeat_packets_total": ("counter", "Datagrams received, by what became of them."),
    "hbdns_heartbeat_replies_total": ("counter", "Replies sent to authenticated beats that asked for one."),
    "hbdns_heartbeat_reply_errors_total": ("counter", "Replies the kernel refused to send."),
    "hbdns_heartbeat_changes_total": ("counter", "Accepted beats that changed a DNS answer."),
    "hbdns_heartbeat_batches_total": ("counter", "Wake-ups that drained at least one datagram."),
    "hbdns_heartbeat_redis_errors_total": ("counter", "Batches dropped because Redis failed."),
    "hbdns_heartbeat_purges_dropped_total": ("counter", "Cache purges dropped because the queue was full."),
    "hbdns_heartbeat_kernel_drops_total": ("counter", "Datagrams the kernel dropped (receive buffer full)."),
    "hbdns_heartbeat_redis_up": ("gauge", "1 while the last Redis round trip succeeded."),
    "hbdns_heartbeat_held_beats": ("gauge", "Beats held to be applied again on the next Redis connection."),
    "hbdns_heartbeat_held_dropped_total": ("counter", "Held beats dropped (too many or too old)."),
    "hbdns_heartbeat_reapplied_total": ("counter", "Held beats applied again on a new Redis connection."),
    "hbdns_heartbeat_rerecorded_total": ("counter", "Transitions recorded again after a reconnect (were lost)."),
    "hbdns_heartbeat_wait_timeouts_total": ("counter", "WAITs for replicas that timed out."),
    "hbdns_heartbeat_redis_connects_total": ("counter", "Connections the beat writer made to Redis."),
    # what datagrams cost before they authenticated (heartbeat_listener.preauth, .recent)
    "hbdns_heartbeat_lookups_total": ("counter", "Account ids looked up in Redis: not in the cache."),
    "hbdns_heartbeat_refreshes_total": ("counter", "Cached accounts read again after a bad MAC."),
    "hbdns_heartbeat_refreshes_refused_total": (
        "counter",
        "Bad MACs of a cached account not read again (per-account refresh limit).",
    ),
    "hbdns_heartbeat_negative_hits_total": ("counter", "Unknown account ids answered from the negative cache."),
    "hbdns_heartbeat_above_ceiling_total": ("counter", "Account ids above the id sequence, dropped unread."),
    "hbdns_heartbeat_over_budget_total": ("counter", "Lookups refused by the global pre-authentication budget."),
    "hbdns_heartbeat_id_ceiling_reads_total": ("counter", "Reads of the account id sequence."),
    "hbdns_heartbeat_known_replays_total": ("counter", "Authentic replays and copies dropped without Redis."),
    "hbdns_heartbeat_known_stale_total": ("counter", "Copies of stale beats dropped without Redis."),
    "hbdns_heartbeat_negative_cache_entries": ("gauge", "Account ids remembered as unknown."),
    "hbdns_heartbeat_account_cache_entries": ("gauge", "Accounts in the listener's cache."),
    "hbdns_heartbeat_recent_accounts": ("gauge", "Accounts whose recent beats the listener remembers."),
}


class Metrics:
    def __init__(self) -> None:
        self.packets: dict[str, int] = dict.fromkeys(RESULTS, 0)
        self.counters: dict[str, int] = {name: 0 for name, (kind, _) in _HELP.items() if kind == "counter"}
        self.counters.pop("hbdns_heartbeat_packets_total")
        self.gauges: dict[str, float] = {"hbdns_heartbeat_redis_up": 1.0}
        self.collectors: list[Callable[[], Mapping[str, float]]] = []  # read at scrape time

    def add_packets(self, counts: Mapping[str, int]) -> None:
        packets = self.packets
        for reason, n in counts.items():
            packets[reason] = packets.get(reason, 0) + n

    def inc(self, name: str, n: int = 1) -> None:
        self.counters[name] = self.counters.get(name, 0) + n

    def register(self, registry: CollectorRegistry) -> ListenerCollector:
        collector = ListenerCollector(self)
        registry.register(collector)
        return collector


class ListenerCollector(Collector):
    """Metric families from a :class:`Metrics` (and its collectors), read at scrape time."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def describe(self) -> Iterable[Metric]:
        return []  # families vary with the collectors: describe by collecting, at registration and scrape

    def collect(self) -> Iterator[Metric]:
        m = self.metrics
        packets = dict(m.packets)
        values: dict[str, float] = {**dict(m.counters), **dict(m.gauges)}
        for collect in m.collectors:
            try:
                values.update(collect())
            except Exception as exc:  # a scrape must not fail because one source did
                log.debug("metrics collector failed", extra={"error": str(exc)})
        _, text = _HELP["hbdns_heartbeat_packets_total"]
        family = CounterMetricFamily("hbdns_heartbeat_packets_total", text, labels=["result"])
        for reason, n in sorted(packets.items()):
            family.add_metric([reason], n)
        yield family
        for name, value in sorted(values.items()):
            kind, text = _HELP.get(name, ("gauge", name))
            if kind == "counter":
                yield CounterMetricFamily(name, text, value=value)
            else:
                yield GaugeMetricFamily(name, text, value=value)


def checks_collector(
    preauth: PreAuth | None, recent: RecentBeats | None, cache: AccountCache | None
) -> Callable[[], dict[str, float]]:
    """A collector of the pre-authentication decisions and the listener's per-account memory."""

    def collect() -> dict[str, float]:
        out: dict[str, float] = {}
        if preauth is not None:
            st = dict(preauth.stats)
            out.update(
                {
                    "hbdns_heartbeat_lookups_total": st["lookups"],
                    "hbdns_heartbeat_refreshes_total": st["refreshes"],
                    "hbdns_heartbeat_refreshes_refused_total": st["refreshes_refused"],
                    "hbdns_heartbeat_negative_hits_total": st["negative_hits"],
                    "hbdns_heartbeat_above_ceiling_total": st["above_ceiling"],
                    "hbdns_heartbeat_over_budget_total": st["over_budget"],
                    "hbdns_heartbeat_negative_cache_entries": len(preauth.negative),
                }
            )
            if preauth.ceiling is not None:
                out["hbdns_heartbeat_id_ceiling_reads_total"] = preauth.ceiling.reads
        if recent is not None:
            st = dict(recent.stats)
            out["hbdns_heartbeat_known_replays_total"] = st["replays"] + st["copies"]
            out["hbdns_heartbeat_known_stale_total"] = st["stale"]
            out["hbdns_heartbeat_recent_accounts"] = len(recent)
        if cache is not None:
            out["hbdns_heartbeat_account_cache_entries"] = len(cache)
        return out

    return collect


def kernel_drops(inodes: Iterable[int], paths: Iterable[str] = ("/proc/net/udp", "/proc/net/udp6")) -> int:
    """Datagrams the kernel dropped on our sockets (the ``drops`` column of /proc/net/udp*)."""
    wanted = {str(i) for i in inodes}
    total = 0
    for path in paths:
        try:
            with open(path) as f:
                next(f, None)
                for line in f:
                    cols = line.split()
                    if len(cols) >= 13 and cols[9] in wanted:
                        total += int(cols[12])
        except OSError:
            continue
    return total


def socket_inodes(fds: Iterable[int]) -> list[int]:
    return [os.fstat(fd).st_ino for fd in fds]
