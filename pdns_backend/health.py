"""The backend's view of Redis: one log line when an outage starts and one when it ends."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)


class Health:
    """Logs a Redis outage once when it starts and once when it ends, however many queries fail.

    ``ok()`` is called only right after a Redis reply arrived: calls that need no Redis (``initialize``
    on every pdns reconnect, metadata, answers from the zone cache) must not end an outage.
    """

    def __init__(self, on_failure: Callable[[], object] | None = None) -> None:
        self.on_failure = on_failure  # e.g. a metrics counter, once per failed call
        self._lock = threading.Lock()
        self.down_since: float | None = None
        self.failures = 0
        self.incidents = 0

    def failed(self, exc: BaseException) -> None:
        if self.on_failure is not None:
            self.on_failure()
        with self._lock:
            self.failures += 1
            if self.down_since is not None:
                return
            self.down_since = time.monotonic()
            self.incidents += 1
        log.error(
            "redis unavailable: answering SERVFAIL until it is back",
            extra={"error": f"{type(exc).__name__}: {exc}"},
        )

    def ok(self) -> None:
        if self.down_since is None:  # the common case: no lock
            return
        with self._lock:
            if self.down_since is None:
                return
            down_for = time.monotonic() - self.down_since
            failed, self.failures, self.down_since = self.failures, 0, None
        log.warning("redis reachable again", extra={"down_seconds": round(down_for, 3), "failed_requests": failed})
