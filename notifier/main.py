"""``hbdns-notifier``: the stream consumer and the scheduler of deferred sends, one thread each.

The consumer reads the transitions (``hbdns:events``) with a consumer group and sends them as e-mail,
SMS and webhooks; the scheduler sends due retries and decides deferred SMS. Every thread runs a small
step function in a loop (:mod:`hbdns.loops`; tests call the steps directly). A Redis error only
pauses a loop until Redis is back; the consumer group then resumes at its last acknowledged entry.
The ``neutralized`` transitions come from the sweeper (``hbdns-sweeper``), a service of its own.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable

import redis

from hbdns import config
from hbdns.connection import connect
from hbdns.loops import Loops
from notifier.consumer import Consumer, default_consumer_name
from notifier.dispatch import Dispatcher
from notifier.flush import flush_service
from notifier.sms import SmsScheduler
from notifier.transports import LogTransport, Transport, build_transports

log = logging.getLogger("notifier")

SCHEDULE_INTERVAL = 0.2  # seconds between looks at due retries and deferred SMS
CONSUME_BLOCK_MS = 1000  # how long one consumer step waits for new entries (and how soon it sees stop)


class Notifier:
    """The services of one notifier process, wired from settings (built in ``main()`` or by a test)."""

    def __init__(
        self,
        settings: config.Settings,
        *,
        r: redis.Redis | None = None,
        transports: dict[str, Transport] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.r = r if r is not None else connect(settings.redis_url)
        self.name = settings.notify_consumer or default_consumer_name()
        self.transports = transports if transports is not None else build_transports(settings)
        self.dispatcher = Dispatcher(self.r, self.transports, settings, owner=self.name, clock=clock)
        self.sms = SmsScheduler(self.r, self.dispatcher, lease=settings.notify_claim_idle, clock=clock)
        self.consumer = Consumer(
            self.r, self.dispatcher, self.sms, name=self.name, claim_idle=settings.notify_claim_idle
        )
        self.flush = flush_service(settings, self.r, self.name)  # the recovery flush (its own group)
        self.loops = Loops()
        self._claim_every = max(1.0, settings.notify_claim_idle / 2)
        self._last_claim = 0.0

    # --- steps the loops run --------------------------------------------------------------------------

    def consume_step(self) -> int:
        """Handle one batch of events, and now and then take over entries a dead consumer left."""
        handled = self.consumer.step(block_ms=CONSUME_BLOCK_MS)
        if time.monotonic() - self._last_claim >= self._claim_every:
            handled += self.consumer.claim_step()
            self._last_claim = time.monotonic()
        return handled

    def schedule_step(self) -> int:
        """Send due retries and decide due deferred SMS."""
        return self.dispatcher.retry_step() + self.sms.step()

    # --- lifecycle ------------------------------------------------------------------------------------

    def start(self) -> Notifier:
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


def _safe_url(url: str) -> str:
    """The Redis URL without a password."""
    if "@" in url:
        scheme, _, rest = url.partition("://")
        return f"{scheme}://***@{rest.rpartition('@')[2]}"
    return url


def main(argv: list[str] | None = None) -> int:
    settings = config.service_settings("hbdns-notifier")
    try:
        notifier = Notifier(settings)  # validates the SMS body template now, not at the first outage
    except (ValueError, OSError) as exc:
        print(f"hbdns-notifier: {exc}", file=sys.stderr)
        return 2
    return notifier.loops.serve(notifier.start, notifier.stop)


if __name__ == "__main__":
    sys.exit(main())
