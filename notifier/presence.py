"""Which notifier processes are alive: each refreshes its own liveness, the others read it.

Every process is an *owner* ``<consumer name>/<incarnation>`` (a fresh incarnation per start). It
puts its liveness deadline (now + ``notify_liveness``) into ``keys.notify_owners`` every second; an
owner whose deadline passed is dead, and what it held (unacknowledged stream entries, in-flight sent
markers, claimed queue jobs) is taken over at once instead of after a fixed lease. A restart under
the same consumer name removes the previous incarnation on start, so its leases end that moment.

Two guards against judging a live process dead: a process only judges others after its own
liveness has been refreshed without a Redis error for one full ``notify_liveness`` (after a Redis
outage everyone's deadline has passed, and the first one back must not take over the rest), and a
consumer that never registered liveness (a notifier of a version before this one, during a rolling
upgrade) is left to the idle-time takeover (``notify_claim_idle``).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable

import redis

from hbdns import keys

FORGET_AFTER = 3600.0  # seconds after its deadline an owner is removed from the set
CACHE_S = 0.5  # how long one read of the live owners is reused


def name_of(token: str) -> str:
    return token.rpartition("/")[0]


class Presence:
    def __init__(self, r: redis.Redis, name: str, *, ttl: float, clock: Callable[[], float] = time.time) -> None:
        self.r = r
        self.name = name
        self.ttl = ttl
        self.clock = clock
        self.token = f"{name}/{secrets.token_hex(4)}"
        self._healthy_since: float | None = None
        self._cache: tuple[float, frozenset[str]] = (-1.0, frozenset())
        self._known: tuple[frozenset[str], frozenset[str]] = (frozenset(), frozenset())

    def join(self) -> None:
        """Register this incarnation and end every earlier one of the same name."""
        mine = [t for t in map(str, self.r.zrange(keys.notify_owners(), 0, -1)) if name_of(t) == self.name]
        pipe = self.r.pipeline(transaction=True)
        if mine:
            pipe.zrem(keys.notify_owners(), *mine)
        pipe.zadd(keys.notify_owners(), {self.token: self.clock() + self.ttl})
        pipe.execute()
        self._healthy_since = self.clock()

    def beat(self) -> None:
        """Refresh this owner's deadline (the liveness loop calls it every second)."""
        try:
            now = self.clock()
            pipe = self.r.pipeline(transaction=False)
            pipe.zadd(keys.notify_owners(), {self.token: now + self.ttl})
            pipe.zremrangebyscore(keys.notify_owners(), "-inf", now - FORGET_AFTER)
            pipe.zrange(keys.notify_owners(), 0, -1, withscores=True)
            owners = pipe.execute()[2]
        except (redis.ConnectionError, redis.TimeoutError):
            self._healthy_since = None
            raise
        if self._healthy_since is None:
            self._healthy_since = now
        live = frozenset(t for t, deadline in owners if deadline >= now)
        self._cache = (time.monotonic(), live)
        self._known = (live, frozenset(name_of(t) for t, _ in owners))

    def leave(self) -> None:
        """On a clean stop: others need not wait for the deadline."""
        self.r.zrem(keys.notify_owners(), self.token)

    def live(self) -> frozenset[str]:
        """Tokens of live owners (this one included), read at most every ``CACHE_S``."""
        at, tokens = self._cache
        if time.monotonic() - at > CACHE_S:
            now = self.clock()
            tokens = frozenset(map(str, self.r.zrangebyscore(keys.notify_owners(), now, "+inf"))) | {self.token}
            self._cache = (time.monotonic(), tokens)
        return tokens | {self.token}

    def may_judge(self) -> bool:
        """Whether this process has been in touch with Redis long enough to call others dead."""
        return self._healthy_since is not None and self.clock() - self._healthy_since >= self.ttl

    def dead_names(self) -> frozenset[str]:
        """Consumer names that registered liveness and have no live owner now (from the last beat)."""
        live, known = self._known
        return known - {name_of(t) for t in live} - {self.name}
