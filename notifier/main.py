"""``hbdns-notifier``: the stream consumer, the scheduler of queued sends and the liveness loop, one thread each.

The consumer reads the transitions (every shard's ``hbdns:events:{s:<n>}``) with a consumer group
and sends them as e-mail, SMS and webhooks; the scheduler sends what is due in the queue and
decides deferred SMS; the liveness loop refreshes this process's liveness every second and takes
over what dead notifiers left. Every thread runs a small step function in a loop
(:mod:`hbdns.loops`; tests call the steps directly). A Redis error only pauses a loop until Redis
is back; the consumer group then resumes at its last acknowledged entry. The ``neutralized``
transitions come from the sweeper (``hbdns-sweeper``).
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable

import redis
from prometheus_client import CollectorRegistry

from hbdns import config
from hbdns import metrics as prom
from hbdns.connection import connect, redact
from hbdns.loops import Loops
from hbdns.migrations import legacy_notify_queue
from hbdns.notices.render import Renderer
from notifier.channel import LogTransport, Transport
from notifier.consumer import GROUP, Consumer, default_consumer_name
from notifier.counters import Counters
from notifier.dispatch import Dispatcher
from notifier.flush import flush_service
from notifier.langs import ZoneLangs
from notifier.mass_hold import MassHold
from notifier.messages import Composer
from notifier.metrics import CountersCollector, NotifierMetrics, QueueCollector
from notifier.presence import Presence
from notifier.sms import SmsScheduler
from notifier.transports import build_transports

log = logging.getLogger("notifier")

SCHEDULE_INTERVAL = 0.2  # seconds between looks at due retries and deferred SMS
CONSUME_BLOCK_MS = 1000  # how long one consumer step waits for new entries (and how soon it sees stop)
LIVENESS_INTERVAL = 1.0  # seconds between liveness refreshes (and looks for dead notifiers' work)
LEGACY_EVERY = 60.0  # seconds between looks at the queue of an older version (rolling upgrades)


class Notifier:
    """The services of one notifier process, wired from settings (built in ``main()`` or by a test)."""

    def __init__(
        self,
        settings: config.Settings,
        *,
        r: redis.Redis | None = None,
        transports: dict[str, Transport] | None = None,
        renderer: Renderer | None = None,
        clock: Callable[[], float] = time.time,
        registry: CollectorRegistry | None = None,
    ) -> None:
        if settings.notify_liveness < 2 * LIVENESS_INTERVAL:
            raise ValueError(
                f"HBDNS_NOTIFY_LIVENESS must be at least {2 * LIVENESS_INTERVAL:g} s (refreshed every second)"
            )
        self.settings = settings
        # the templates are checked now: a broken override stops the notifier here, not at the first outage
        self.renderer = renderer if renderer is not None else Renderer.from_settings(settings)
        for warning in self.renderer.warnings:
            log.warning(f"templates: {warning}")
        self.r = r if r is not None else connect(settings.redis_url)
        self.name = settings.notify_consumer or default_consumer_name()
        self.clock = clock
        self.presence = Presence(self.r, self.name, ttl=settings.notify_liveness, clock=clock)
        self.counters = Counters()  # the SMS counts (notifier.counters), exported with the metrics
        self.transports = transports if transports is not None else build_transports(settings, self.counters)
        self.composer = Composer(
            self.renderer, zone_lang=ZoneLangs(self.r), sms_segments=settings.sms_max_segments, counters=self.counters
        )
        self.registry = registry if registry is not None else prom.new_registry()
        self.metrics = NotifierMetrics(self.registry)
        self.registry.register(QueueCollector(self.r, GROUP))
        self.registry.register(CountersCollector(self.counters))
        self.dispatcher = Dispatcher(
            self.r, self.transports, settings, presence=self.presence, clock=clock, metrics=self.metrics
        )
        self.sms = SmsScheduler(
            self.r, self.dispatcher, composer=self.composer, lease=settings.notify_liveness, clock=clock
        )
        self.mass = MassHold(
            self.r,
            self.dispatcher,
            self.sms,
            settings,
            composer=self.composer,
            lease=settings.notify_liveness,
            clock=clock,
        )
        self.consumer = Consumer(
            self.r,
            self.dispatcher,
            self.sms,
            composer=self.composer,
            name=self.name,
            claim_idle=settings.notify_claim_idle,
            mass=self.mass,
        )
        self.dispatcher.not_before = self.sms.not_before
        self.dispatcher.rebuild = self.consumer.rebuild
        self.flush = flush_service(settings, self.r, self.name)  # the recovery flush (its own group)
        self.loops = Loops(on_error=prom.LoopErrors(self.registry, "hbdns_notifier"))
        self._joined = False
        self._last_legacy = -LEGACY_EVERY

    # --- steps the loops run --------------------------------------------------------------------------

    def join(self) -> None:
        """Register this process's liveness (ending an earlier incarnation of the same name)."""
        if not self._joined:
            self.presence.join()
            self._joined = True

    def consume_step(self) -> int:
        """Handle one batch of events (this consumer's unacknowledged ones first)."""
        self.join()
        return self.consumer.step(block_ms=CONSUME_BLOCK_MS)

    def schedule_step(self) -> int:
        """Send due queued messages and decide due deferred SMS."""
        self.join()
        if time.monotonic() - self._last_legacy >= LEGACY_EVERY:
            self._last_legacy = time.monotonic()
            moved = legacy_notify_queue.apply(self.r)
            if moved:
                log.warning("moved retries of an older version into the queue", extra={"count": moved})
        return self.dispatcher.retry_step() + self.sms.step() + self.mass.step()

    def liveness_step(self) -> int:
        """Refresh this process's liveness; take over what dead (or stuck) notifiers left."""
        self.join()
        self.presence.beat()
        taken = self.consumer.takeover_step(self.presence)
        if self.presence.may_judge():
            jobs = self.dispatcher.queue.takeover(self.clock(), self.presence.live())
            if jobs:
                log.warning("took over queued messages of a dead notifier", extra={"count": jobs})
            taken += jobs
        return taken

    # --- lifecycle ------------------------------------------------------------------------------------

    def start(self) -> Notifier:
        self.loops.start("liveness", self.liveness_step, LIVENESS_INTERVAL)  # each step joins first
        self.loops.start("consumer", self.consume_step)
        self.loops.start("scheduler", self.schedule_step, SCHEDULE_INTERVAL)
        if self.flush is not None:
            self.flush.start(self.loops)
        channels = {
            ch: ("log" if isinstance(t, LogTransport) else type(t).__name__) for ch, t in self.transports.items()
        }
        log.info(
            "notifier started",
            extra={"consumer": self.name, "channels": channels, "redis": _safe_url(self.settings.redis_url)},
        )
        return self

    def stop(self, timeout: float = 10.0) -> None:
        if self.flush is not None:
            self.flush.stop()
        self.loops.stop(timeout)
        self.dispatcher.close()
        log.info("notifier stopped", extra={"counters": self.counters.snapshot()})
        if self._joined:
            try:
                self.presence.leave()
            except redis.RedisError:
                pass  # the liveness then ends by its deadline


def _safe_url(url: str) -> str:
    """The Redis URL without its passwords (a Sentinel URL may carry two)."""
    return redact(url)


def main(argv: list[str] | None = None) -> int:
    settings = config.service_settings("hbdns-notifier")
    try:
        notifier = Notifier(settings)  # checks the templates and the SMS body now, not at the first outage
    except (ValueError, OSError) as exc:
        print(f"hbdns-notifier: {exc}", file=sys.stderr)
        return 2
    endpoint = prom.serve(notifier.registry, settings.notifier_metrics_addr, "notifier")
    try:
        return notifier.loops.serve(notifier.start, notifier.stop)
    finally:
        prom.stop(endpoint)


if __name__ == "__main__":
    sys.exit(main())
