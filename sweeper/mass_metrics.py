"""The sweeper's metrics of mass events (issue 20), read from Redis at scrape time: the events
stream (length, each consumer group's lag, what the hard cap removed and how much of it unread)
and the mass outages (one in progress holds customers' outage messages).

The sweeper owns both: it runs the trim loop and the mass watch. The values are Redis' (several
sweepers each export the same; alert on ``max``), so the counters survive a sweeper restart.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator

import redis
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from hbdns import keys, mass
from hbdns.event_trim import stream_status

log = logging.getLogger(__name__)


class MassCollector(Collector):
    """``hbdns_events_*`` and ``hbdns_mass_outage*``; nothing when Redis cannot be read (the
    liveness collector's ``hbdns_sweeper_redis_up`` says so)."""

    def __init__(self, r: redis.Redis) -> None:
        self.r = r

    def describe(self) -> Iterable[Metric]:
        return []  # nothing to read from Redis at registration

    def collect(self) -> Iterator[Metric]:
        try:
            st = stream_status(self.r)
            events = mass.load(self.r)
            held = int(self.r.zcard(keys.mass_held()))
        except redis.RedisError as exc:
            log.debug("mass metrics unavailable", extra={"error": str(exc)})
            return
        yield GaugeMetricFamily("hbdns_events_stream_length", "Entries in the events stream.", st["length"])
        lag = GaugeMetricFamily(
            "hbdns_events_group_lag", "Events a consumer group has not been delivered yet.", labels=["group"]
        )
        pending = GaugeMetricFamily(
            "hbdns_events_group_pending", "Events a consumer group was delivered but has not acknowledged.",
            labels=["group"],
        )  # fmt: skip
        for g in st["groups"]:
            if g["lag"] is not None:
                lag.add_metric([g["name"]], g["lag"])
            pending.add_metric([g["name"]], g["pending"])
        yield lag
        yield pending
        yield CounterMetricFamily(
            "hbdns_events_capped", "Events removed because the stream reached HBDNS_EVENTS_HARD_CAP.", st["capped"]
        )
        unread = CounterMetricFamily(
            "hbdns_events_dropped_unread",
            "Events the hard cap removed before a consumer group read and acknowledged them (lost to it).",
            labels=["group"],
        )
        for group, n in sorted(st["unread_by_group"].items()):
            unread.add_metric([group], n)
        if not st["unread_by_group"]:
            unread.add_metric([""], st["unread"])
        yield unread
        now_ms = int(time.time() * 1000)
        active = GaugeMetricFamily(
            "hbdns_mass_outage_active",
            "1 while a mass outage of the scope holds its customers' outage messages.",
            labels=["scope"],
        )
        silent = GaugeMetricFamily(
            "hbdns_mass_outage_silent_accounts", "Heartbeat accounts silent in the scope's last mass outage.",
            labels=["scope"],
        )  # fmt: skip
        for scope, e in sorted(events.items()):
            active.add_metric([scope], 1 if e.holding(now_ms) else 0)
            silent.add_metric([scope], e.silent)
        yield active
        yield silent
        yield GaugeMetricFamily(
            "hbdns_mass_outage_held_messages", "Customers' outage messages held by a mass outage.", held
        )
