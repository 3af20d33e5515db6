"""Daemon loops of the long-running services (sweeper, notifier): one thread per step function.

A service's work is a few small step functions that tests call directly; in production each runs in
a loop of its own here. A Redis outage only pauses a loop, with backoff, until Redis is back (the
steps are written to catch up: the sweep records what fell due meanwhile, a consumer group resumes at
its last acknowledged entry). Signals only set the stop flag; the main thread then stops the loops.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

import redis

from hbdns.logs import RateLimitedLog

log = logging.getLogger(__name__)

REDIS_DOWN = (redis.ConnectionError, redis.TimeoutError)
FIRST_BACKOFF = 0.1  # seconds; doubles per failed step up to MAX_BACKOFF
MAX_BACKOFF = 1.0


def run_loop(
    name: str,
    step: Callable[[], Any],
    interval: float,
    stop: threading.Event,
    on_error: Callable[[str, str], object] | None = None,
) -> None:
    """Call ``step`` every ``interval`` s until ``stop``; back off (0.1 s doubling to 1 s) while Redis is away.

    Any other error is logged (rate-limited) and the step is tried again a second later: a bug in one
    step must not end the loop, and the process stays up for its other loops. ``on_error(loop,
    kind)`` hears of each failed step (``redis`` or ``bug``), for the metrics.
    """
    errors = RateLimitedLog(log, 10.0)
    backoff = FIRST_BACKOFF
    while not stop.is_set():
        started = time.monotonic()
        try:
            step()
        except REDIS_DOWN as exc:
            if on_error is not None:
                on_error(name, "redis")
            errors.log(
                logging.WARNING, name, "redis unavailable, retrying", loop=name, error=str(exc), retry_in=backoff
            )
            stop.wait(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF)
            continue
        except Exception as exc:
            if on_error is not None:
                on_error(name, "bug")
            errors.log(logging.ERROR, name + ":bug", "loop step failed", loop=name, error=repr(exc))
            log.debug("loop step failed", exc_info=True)
            stop.wait(1.0)
            continue
        if backoff > FIRST_BACKOFF:
            log.info("redis reachable again", extra={"loop": name})
            backoff = FIRST_BACKOFF
        if interval > 0:
            stop.wait(max(0.0, interval - (time.monotonic() - started)))


class Loops:
    """Named loops sharing one stop flag: ``start`` each, ``wait`` in the main thread, then ``stop``."""

    def __init__(self, on_error: Callable[[str, str], object] | None = None) -> None:
        self.on_error = on_error  # told (loop, "redis" | "bug") of each failed step
        self.stop_event = threading.Event()
        self._threads: list[threading.Thread] = []

    @property
    def names(self) -> list[str]:
        return [t.name for t in self._threads]

    def start(self, name: str, step: Callable[[], Any], interval: float = 0.0) -> None:
        """Run ``step`` in a daemon thread every ``interval`` s (0: again at once; a step may block)."""
        t = threading.Thread(
            target=run_loop, args=(name, step, interval, self.stop_event, self.on_error), name=name, daemon=True
        )
        t.start()
        self._threads.append(t)

    def stop(self, timeout: float = 10.0) -> None:
        """Set the flag and join every loop, all within ``timeout`` s (a step finishes what it is doing)."""
        self.stop_event.set()
        deadline = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.1, deadline - time.monotonic()))
        self._threads.clear()

    def wait(self) -> None:
        """Block until the stop flag is set (by a signal handler or another thread)."""
        while not self.stop_event.wait(1.0):
            pass

    def stop_on_signals(self) -> None:
        """SIGTERM and SIGINT only set the stop flag; call from the main thread."""

        def on_signal(signum: int, _frame: Any) -> None:
            self.stop_event.set()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)

    def serve(self, start: Callable[[], Any], stop: Callable[[], None]) -> int:
        """A service's main thread: signals set the flag; ``start`` the loops, wait for it, ``stop``."""
        self.stop_on_signals()
        start()
        self.wait()
        log.info("stopping", extra={"loops": self.names})
        stop()
        return 0
