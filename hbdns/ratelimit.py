"""Shared rate limits: GCRA buckets in Redis, so every process (and host) enforces one limit.

One script per bucket (``hbdns/lua/gcra.lua``) on Redis ``TIME``: processes on several hosts agree
without clock sync, and a check-and-take is atomic. The update API counts updates and failed logins with it
(``update_api/ratelimit.py``); the admin API counts requests per token and failed token checks per
source. A bucket is one key (:func:`hbdns.keys.ratelimit`), so it is Redis Cluster safe.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from redis import Redis

from hbdns import scripts


@dataclass(frozen=True)
class Limit:
    """``burst`` events at once, then ``per_minute`` sustained."""

    per_minute: float
    burst: int

    @property
    def interval_ms(self) -> int:
        return max(1, int(60_000 / self.per_minute))


class RateLimiter:
    """Shared buckets in Redis, so every process enforces one limit."""

    def __init__(self, r: Redis) -> None:
        self.r = r

    def check(self, key: str, limit: Limit, *, take: bool = True) -> float:
        """0 when allowed (and counted when ``take``), else seconds until the next event is allowed."""
        return int(self.queue(self.r, key, limit, take=take)) / 1000.0

    def queue(self, client: Any, key: str, limit: Limit, *, take: bool) -> Any:
        """Run (or, on a pipeline, queue) one bucket's check; the reply is in ms."""
        return scripts.GCRA(client, [key], [limit.interval_ms, limit.burst, "1" if take else "0"])
