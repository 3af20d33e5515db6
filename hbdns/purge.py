"""Best-effort PowerDNS cache purges, off the write path.

Writers call :meth:`Purger.purge` with the names whose answers changed; a background thread sends
``PUT /api/v1/servers/localhost/cache/flush?domain=<name>.`` to every configured pdns instance.
A failed purge only costs freshness (pdns caches are short, see ``deploy/pdns.conf``), so it is
logged, not retried, and never blocks or fails the beat or update that asked for it.

A burst (a mass outage neutralizes 100,000 accounts within seconds) is coalesced: the thread takes
up to ``BATCH`` queued names at once, and where ``SUBTREE_AT`` or more of them share a parent
domain (usually the zone) it sends one purge of that parent instead, which pdns applies to the
parent's whole subtree (checked on pdns 4.7: ``tests/integration/test_pdns_backend.py``); the
other names of the subtree only miss the cache once. Names that find the queue full are skipped
(counted in ``dropped``): their old answers then live until pdns' caches expire (1 s).
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Iterable

import requests

from hbdns.logs import RateLimitedLog

log = logging.getLogger(__name__)


BATCH = 10_000  # names the thread takes from the queue at once
SUBTREE_AT = 20  # names under one parent in a batch from which the parent is purged instead


def coalesce(names: Iterable[str], subtree_at: int = SUBTREE_AT) -> list[str]:
    """The purges that cover ``names``: each name, or its parent domain where ``subtree_at`` or more
    of them share it (a parent purge covers its subtree), sorted."""
    unique = {n.rstrip(".").lower() for n in names if n}
    by_parent: dict[str, list[str]] = {}
    for n in unique:
        by_parent.setdefault(n.partition(".")[2], []).append(n)
    out: set[str] = set()
    for parent, members in by_parent.items():
        if parent and "." in parent and len(members) >= subtree_at:
            out.add(parent)
        else:
            out.update(members)
    return sorted(out)


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
        self.coalesced = 0  # names covered by a purge of their parent

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
            while len(batch) < BATCH:  # coalesce a burst (module docstring)
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self._queue.put(None)
                    break
                batch.add(more)
            targets = coalesce(batch)
            self.coalesced += len(batch) - len(targets)
            for n in targets:
                self.flush_now(n)
