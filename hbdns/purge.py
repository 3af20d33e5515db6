"""Best-effort PowerDNS cache purges, off the write path.

Writers call :meth:`Purger.purge` with the names whose answers changed; a background thread sends
``PUT /api/v1/servers/localhost/cache/flush?domain=<name>.`` to every configured pdns instance.
A failed purge only costs freshness (pdns caches are short, see ``deploy/pdns.conf``), so it is
logged, not retried, and never blocks or fails the beat or update that asked for it.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Iterable

import requests

from hbdns.logs import RateLimitedLog

log = logging.getLogger(__name__)


class Purger:
    def __init__(self, api_urls: Iterable[str], api_key: str, timeout: float = 1.0, maxsize: int = 10000) -> None:
        self.api_urls = [u.rstrip("/") for u in api_urls]
        self.api_key = api_key
        self.timeout = timeout
        self._queue: queue.Queue[str | None] = queue.Queue(maxsize=maxsize)
        self._thread: threading.Thread | None = None
        self._session = requests.Session()
        self._errors = RateLimitedLog(log, 30.0)
        self.sent = 0
        self.failed = 0
        self.dropped = 0

    @property
    def enabled(self) -> bool:
        return bool(self.api_urls)

    def start(self) -> Purger:
        if self.enabled and self._thread is None:
            self._thread = threading.Thread(target=self._run, name="pdns-purge", daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float = 2.0) -> None:
        if self._thread is not None:
            try:
                self._queue.put_nowait(None)
            except queue.Full:
                pass
            self._thread.join(timeout)
            self._thread = None

    def purge(self, names: Iterable[str]) -> None:
        """Queue names for purging; never blocks (drops and counts when the queue is full)."""
        if not self.enabled:
            return
        for name in names:
            try:
                self._queue.put_nowait(name)
            except queue.Full:
                self.dropped += 1

    def flush_now(self, name: str) -> bool:
        """Purge one name synchronously on every instance; True when all accepted it."""
        ok = True
        for base in self.api_urls:
            url = f"{base}/api/v1/servers/localhost/cache/flush"
            try:
                resp = self._session.put(
                    url,
                    params={"domain": name.rstrip(".") + "."},
                    headers={"X-API-Key": self.api_key},
                    timeout=self.timeout,
                )
                resp.raise_for_status()
                self.sent += 1
            except requests.RequestException as exc:
                self.failed += 1
                ok = False
                self._errors.log(logging.WARNING, base, "pdns purge failed", url=base, error=str(exc))
        return ok

    def _run(self) -> None:
        while True:
            name = self._queue.get()
            if name is None:
                return
            batch = {name}
            while len(batch) < 100:  # coalesce a burst into one purge per name
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self._queue.put(None)
                    break
                batch.add(more)
            for n in sorted(batch):
                self.flush_now(n)
