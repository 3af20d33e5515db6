"""The notifier's Prometheus metrics: what became of each message, how long after its transition a
message went out, and at scrape time the queue, the dead letters and the consumer group's backlog
(summed over the shard streams).

Message results are :mod:`notifier.outcomes`' statuses: ``sent``, ``duplicate`` (sent before),
``queued`` (failed, retried later), ``held`` (not tried: quiet hours, the destination is held after
failures), ``dead`` (dead-lettered), ``deferred`` (in flight elsewhere), ``moot`` (not needed any
more). The queue figures are read from Redis (:func:`hbdns.notify_queue.stats`, the one reader of
the stored layout) and are the same on every notifier: alert on ``max``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator

import redis
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from hbdns import event_streams, notify_queue
from notifier.counters import Counters
from notifier.outcomes import Outcome

log = logging.getLogger(__name__)

# From the transition to the message: seconds for a direct send, minutes to days for retries.
DELAY_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 4 * 3600, 86400)


def event_ms(event_id: str) -> int | None:
    """The Unix ms of an event id (``<shard>/<ms>-<seq>``, or ``<ms>-<seq>`` from before sharding),
    the moment the transition was recorded."""
    return event_streams.event_ms(event_id)


class NotifierMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        registry = registry if registry is not None else CollectorRegistry()
        self.registry = registry
        self.messages = Counter(
            "hbdns_notifier_messages",
            "Messages handled, by channel and result (sent, duplicate, queued, held, dead, deferred, moot).",
            ["channel", "result"],
            registry=registry,
        )
        self.delay = Histogram(
            "hbdns_notifier_delivery_delay_seconds",
            "From the transition recorded in the stream to its message sent, by channel.",
            ["channel"],
            registry=registry,
            buckets=DELAY_BUCKETS,
        )

    def outcome(self, outcome: Outcome, now: float) -> None:
        channel = outcome.message.channel
        self.messages.labels(channel=channel, result=outcome.status).inc()
        if outcome.status == "sent":
            ms = event_ms(outcome.message.event_id)
            if ms is not None:
                self.delay.labels(channel=channel).observe(max(0.0, now - ms / 1000))


class QueueCollector(Collector):
    """The notification queue, dead letters and the consumer group, read from Redis at scrape time."""

    def __init__(self, r: redis.Redis, group: str) -> None:
        self.r = r
        self.group = group

    def describe(self) -> Iterable[Metric]:
        return []  # nothing to read from Redis at registration

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("hbdns_notifier_redis_up", "1 when this scrape could read the queue from Redis.")
        try:
            st = notify_queue.stats(self.r)
            group = event_streams.group_totals(self.r, self.group)  # summed over the shard streams
        except redis.RedisError as exc:
            log.debug("queue stats unavailable", extra={"error": str(exc)})
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        gauges = {
            "hbdns_notifier_queue_depth": ("Messages waiting in the retry queue.", st.queued),
            "hbdns_notifier_queue_oldest_seconds": (
                "Age of the oldest message in the retry queue (0: none).",
                st.oldest_s,
            ),
            "hbdns_notifier_queue_overdue_seconds": (
                "How long the most overdue queued message has been due (0: none due).",
                max(0.0, -st.next_due_s) if st.queued else 0.0,
            ),
            "hbdns_notifier_in_flight": ("Queued messages a notifier is sending right now.", st.in_flight),
            "hbdns_notifier_dead_letters": (
                "Dead letters stored (hbdns notify dead-letters lists them).",
                st.dead,
            ),
            "hbdns_notifier_held_destinations": (
                "Destinations held after failures (probed with backoff).",
                len(st.holds),
            ),
            "hbdns_notifier_legacy_entries": ("Entries in an older queue layout (run hbdns migrate).", st.legacy),
        }
        for name, (text, value) in gauges.items():
            yield GaugeMetricFamily(name, text, value=value)
        yield CounterMetricFamily(
            "hbdns_notifier_dead_letters_dropped_total",
            f"Dead letters dropped beyond the newest {notify_queue.DEAD_LETTER_CAP}.",
            value=st.dead_dropped,
        )
        if group.found:
            yield GaugeMetricFamily(
                "hbdns_notifier_stream_pending",
                "Transitions read by a notifier and not yet done (all shards).",
                group.pending,
            )
            if group.lag is not None:  # Redis cannot tell after entries were deleted from a stream
                yield GaugeMetricFamily(
                    "hbdns_notifier_stream_lag", "Transitions no notifier has read yet (all shards).", group.lag
                )


class CountersCollector(Collector):
    """The notifier's SMS counts (:mod:`notifier.counters`): sent, their segments (what the gateway
    bills), sent by number of segments, and texts cut to ``HBDNS_SMS_MAX_SEGMENTS``."""

    def __init__(self, counters: Counters) -> None:
        self.counters = counters

    def describe(self) -> Iterable[Metric]:
        return []  # by-segment children appear as they are counted

    def collect(self) -> Iterator[Metric]:
        counts = self.counters.snapshot()
        yield CounterMetricFamily(
            "hbdns_notifier_sms_sent_total", "SMS the gateway accepted.", value=counts.get("sms_sent_total", 0)
        )
        yield CounterMetricFamily(
            "hbdns_notifier_sms_segments_total",
            "Segments of the SMS sent (what the gateway bills).",
            value=counts.get("sms_segments_total", 0),
        )
        yield CounterMetricFamily(
            "hbdns_notifier_sms_cut_total",
            "SMS texts cut to HBDNS_SMS_MAX_SEGMENTS when built.",
            value=counts.get("sms_cut_total", 0),
        )
        by = CounterMetricFamily(
            "hbdns_notifier_sms_sent_by_segments_total", "SMS sent, by their number of segments.", labels=["segments"]
        )
        prefix = "sms_sent_segments_"
        for name, n in counts.items():
            if name.startswith(prefix):
                by.add_metric([name.removeprefix(prefix)], n)
        yield by
