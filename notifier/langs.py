"""The language each zone gives its accounts' messages, read from Redis and kept a few seconds.

An account's own language (``prefs.lang``) wins; without one its zone's (``hbdns zone set --lang``)
applies, and without that ``HBDNS_NOTIFY_LANG``. Zones change rarely and a burst of messages spans
few zones, so the notifier asks Redis at most once per zone every ``ttl`` seconds (a changed zone
language applies within that time).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import redis

from hbdns import keys

TTL = 10.0


class ZoneLangs:
    def __init__(self, r: redis.Redis, *, ttl: float = TTL, clock: Callable[[], float] = time.monotonic) -> None:
        self.r = r
        self.ttl = ttl
        self.clock = clock
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[float, str]] = {}

    def __call__(self, zone: str) -> str:
        """The zone's language, "" when it sets none (or Redis cannot say: the setting then applies)."""
        now = self.clock()
        with self._lock:
            hit = self._cache.get(zone)
        if hit is not None and now - hit[0] < self.ttl:
            return hit[1]
        try:
            lang = str(self.r.hget(keys.zone(zone), "lang") or "")
        except redis.RedisError:
            return hit[1] if hit else ""
        with self._lock:
            self._cache[zone] = (now, lang)
        return lang
