"""``hbdns-notifier``: sweeper, keyspace-hint subscriber, stream consumer and deferred sends, one thread each.

Every thread runs a small step function in a loop (tests call the steps directly). A Redis error
only pauses a loop, with backoff, until Redis is back; the sweeper then catches up on what fell due
and the consumer group resumes at its last acknowledged entry. Signals only set the stop flag.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

import redis

from hbdns import config
from hbdns.connection import connect
from hbdns.logs import RateLimitedLog
from hbdns.purge import Purger
from hbdns.store import Store
from notifier.consumer import Consumer, default_consumer_name
from notifier.dispatch import Dispatcher
from notifier.sms import SmsScheduler
from notifier.transports import LogTransport, Transport, build_transports
from sweeper.sweeper import HintSubscriber, Sweeper

log = logging.getLogger("notifier")

ROLES = ("sweeper", "hints", "consumer")
SCHEDULE_INTERVAL = 0.2  # seconds between looks at due retries and deferred SMS
_REDIS_DOWN = (redis.ConnectionError, redis.TimeoutError)


def run_loop(name: str, step: Callable[[], Any], interval: float, stop: threading.Event) -> None:
    """Call ``step`` every ``interval`` s until ``stop``; back off (0.1 s doubling to 1 s) while Redis is away."""
    errors = RateLimitedLog(log, 10.0)
    backoff = 0.1
    while not stop.is_set():
        started = time.monotonic()
        try:
            step()
        except _REDIS_DOWN as exc:
            errors.log(
                logging.WARNING, name, "redis unavailable, retrying", loop=name, error=str(exc), retry_in=backoff
            )
            stop.wait(backoff)
            backoff = min(backoff * 2, 1.0)
            continue
        except Exception as exc:
            errors.log(logging.ERROR, name + ":bug", "loop step failed", loop=name, error=repr(exc))
            log.debug("loop step failed", exc_info=True)
            stop.wait(1.0)
            continue
        if backoff > 0.1:
            log.info("redis reachable again", extra={"loop": name})
            backoff = 0.1
        if interval > 0:
            stop.wait(max(0.0, interval - (time.monotonic() - started)))


def parse_roles(raw: Iterable[str]) -> tuple[str, ...]:
    roles = tuple(dict.fromkeys(r.strip().lower() for r in raw if r.strip()))
    bad = [r for r in roles if r not in ROLES]
    if bad or not roles:
        raise config.ConfigError(
            f"{config.env_name('notifier_roles')}={','.join(roles)!r}: expected a comma list of {', '.join(ROLES)}"
        )
    return roles


class Notifier:
    """The services of one notifier process, wired from settings (built in ``main()`` or by a test)."""

    def __init__(
        self,
        settings: config.Settings,
        *,
        r: redis.Redis | None = None,
        transports: dict[str, Transport] | None = None,
        clock: Callable[[], float] = time.time,
        roles: Iterable[str] | None = None,
    ) -> None:
        self.settings = settings
        self.roles = parse_roles(settings.notifier_roles if roles is None else roles)
        self.r = r if r is not None else connect(settings.redis_url)
        self.stop_event = threading.Event()
        self.store = Store(self.r, settings)
        self.liveness = self.store.liveness
        self.purger = Purger(settings.pdns_api_urls, settings.pdns_api_key, settings.pdns_api_timeout)
        self.name = settings.notify_consumer or default_consumer_name()
        self.transports = transports if transports is not None else build_transports(settings)
        self.dispatcher = Dispatcher(self.r, self.transports, settings, owner=self.name, clock=clock)
        self.sms = SmsScheduler(self.r, self.dispatcher, lease=settings.notify_claim_idle, clock=clock)
        self.consumer = Consumer(
            self.r, self.dispatcher, self.sms, name=self.name, claim_idle=settings.notify_claim_idle
        )
        self.sweeper = Sweeper(self.liveness, self.purger, batch=settings.sweep_batch)
        self.hints = HintSubscriber(self.r, self.liveness, self.purger)
        self._threads: list[threading.Thread] = []
        self._claim_every = max(1.0, settings.notify_claim_idle / 2)
        self._last_claim = 0.0

    # --- steps the loops run --------------------------------------------------------------------------

    def consume_step(self) -> int:
        """Handle one batch of events, and now and then take over entries a dead consumer left."""
        handled = self.consumer.step(block_ms=1000)
        if time.monotonic() - self._last_claim >= self._claim_every:
            handled += self.consumer.claim_step()
            self._last_claim = time.monotonic()
        return handled

    def schedule_step(self) -> int:
        """Send due retries and decide due deferred SMS."""
        return self.dispatcher.retry_step() + self.sms.step()

    # --- lifecycle ------------------------------------------------------------------------------------

    def start(self) -> Notifier:
        self.purger.start()
        loops: list[tuple[str, Callable[[], Any], float]] = []
        if "sweeper" in self.roles:
            loops.append(("sweeper", self.sweeper.step, self.settings.sweep_interval))
        if "hints" in self.roles:
            loops.append(("hints", lambda: self.hints.step(timeout=1.0), 0.0))
        if "consumer" in self.roles:
            loops.append(("consumer", self.consume_step, 0.0))
            loops.append(("scheduler", self.schedule_step, SCHEDULE_INTERVAL))
        for name, step, interval in loops:
            t = threading.Thread(target=run_loop, args=(name, step, interval, self.stop_event), name=name, daemon=True)
            t.start()
            self._threads.append(t)
        channels = {
            ch: ("log" if isinstance(t, LogTransport) else type(t).__name__) for ch, t in self.transports.items()
        }
        log.info(
            "notifier started",
            extra={
                "roles": list(self.roles),
                "consumer": self.name,
                "channels": channels,
                "redis": _safe_url(self.settings.redis_url),
            },
        )
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self.stop_event.set()
        deadline = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.1, deadline - time.monotonic()))
        self._threads.clear()
        self.hints.close()
        self.dispatcher.close()
        self.purger.stop()

    def wait(self) -> None:
        while not self.stop_event.wait(1.0):
            pass


def _safe_url(url: str) -> str:
    """The Redis URL without a password."""
    if "@" in url:
        scheme, _, rest = url.partition("://")
        return f"{scheme}://***@{rest.rpartition('@')[2]}"
    return url


def main(argv: list[str] | None = None) -> int:
    settings = config.service_settings("hbdns-notifier")
    try:
        notifier = Notifier(settings)  # validates roles and the SMS body template now, not at the first outage
    except (ValueError, OSError) as exc:
        print(f"hbdns-notifier: {exc}", file=sys.stderr)
        return 2

    def on_signal(signum: int, _frame: Any) -> None:
        notifier.stop_event.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    notifier.start()
    notifier.wait()
    log.info("notifier stopping")
    notifier.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
