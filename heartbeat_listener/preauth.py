"""Work on datagrams that have not authenticated yet: what it may cost, and what is remembered.

Every datagram gets the cheap checks (length, version, flags and, for a cached account, one HMAC),
whatever its source: their cost per datagram is small and fixed, so they are never limited, and an
authentic beat always gets through them. The one pre-authentication step that costs more is a
Redis lookup (an account the listener has not cached, or a cached key that failed and may have been
rotated); :class:`PreAuth` decides which of those happen:

- ids above the account id sequence (:class:`IdCeiling`) do not exist: no lookup (ids are handed
  out in order, so a spoofed random id costs nothing);
- ids found unknown (or unusable) are remembered for ``ttl`` seconds (:class:`NegativeCache`), so
  the same junk id costs one lookup per ``ttl``, and a new account under an id cached as unknown is
  seen after at most ``ttl``;
- everything else shares one global budget of lookups per second (:class:`TokenBucket`): past it,
  a beat of an uncached account is dropped as ``preauth_budget``. The cap holds whatever arrives.

The refresh of a cached key after a bad MAC is limited per account (:class:`~heartbeat_listener.
recent.RecentBeats`) and charged to the same budget. ``now`` is monotonic seconds, passed in.
"""

from __future__ import annotations

from collections.abc import Callable

from heartbeat_listener.accounts import StoreUnavailable


class TokenBucket:
    """``rate`` tokens per second up to ``burst``; starts full."""

    __slots__ = ("burst", "rate", "stamp", "tokens")

    def __init__(self, rate: float, burst: float) -> None:
        self.rate = float(rate)
        self.burst = float(burst)
        self.tokens = float(burst)
        self.stamp = float("-inf")

    def take(self, now: float) -> bool:
        tokens = self.tokens + (now - self.stamp) * self.rate
        self.tokens = self.burst if tokens > self.burst else tokens
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


class NegativeCache:
    """Account ids a lookup found unknown (or unusable: the reason is kept), for ``ttl`` seconds.

    Bounded: entries are kept in insertion order, which is expiry order (one TTL for all), so the
    oldest go first when the table is full, and expired ones are dropped from the front as new ones
    come in.
    """

    def __init__(self, ttl: float, max_entries: int = 100_000) -> None:
        self.ttl = float(ttl)
        self.max_entries = max_entries
        self._d: dict[int, tuple[float, str]] = {}  # id -> (expires, reason), oldest first

    def __len__(self) -> int:
        return len(self._d)

    def get(self, account_id: int, now: float) -> str:
        """The remembered reason, or '' when the id is not (or no longer) known to be bad."""
        hit = self._d.get(account_id)
        if hit is None:
            return ""
        if hit[0] <= now:
            del self._d[account_id]
            return ""
        return hit[1]

    def put(self, account_id: int, reason: str, now: float) -> None:
        d = self._d
        d.pop(account_id, None)  # re-inserted at the end: insertion order stays expiry order
        while d:
            oldest = next(iter(d))
            if len(d) < self.max_entries and d[oldest][0] > now:
                break
            del d[oldest]
        d[account_id] = (now + self.ttl, reason)

    def forget(self, account_id: int) -> None:
        self._d.pop(account_id, None)

    def clear(self) -> None:
        self._d.clear()


class IdCeiling:
    """The highest account id handed out (the ``account_seq`` counter), read through ``read``.

    An id above it cannot be an account, unless the account was created since the last read: so an
    id above it makes the listener read it again, at most ``rate`` times per second (bursts of
    ``burst``), and only an id still above it is refused. A new account is therefore seen at once,
    and under a flood of ids above the ceiling within ``1 / rate`` s. ``read`` returns None when
    there is no sequence (ids then are not filtered) and raises
    :class:`~heartbeat_listener.accounts.StoreUnavailable` when Redis cannot answer (the last value
    is kept).
    """

    def __init__(self, read: Callable[[], int | None], rate: float = 2.0, burst: int = 20) -> None:
        self.read = read
        self.value: int | None = None
        self.reads = 0
        self._bucket = TokenBucket(rate, burst)
        self.on_lower: Callable[[], None] | None = None  # the sequence went down: Redis was reset

    def admits(self, account_id: int, now: float) -> bool:
        value = self.value
        if value is not None and account_id <= value:
            return True
        if self._bucket.take(now):
            value = self.refresh()
        return value is None or account_id <= value

    def refresh(self) -> int | None:
        try:
            value = self.read()
        except StoreUnavailable:
            return self.value
        self.reads += 1
        old, self.value = self.value, value
        if value is not None and old is not None and value < old and self.on_lower is not None:
            self.on_lower()
        return value


class PreAuth:
    """The lookup decisions for accounts the listener has not cached (see the module docstring).

    ``stats`` counts the decisions for the metrics page.
    """

    def __init__(
        self,
        *,
        lookup_rate: float,
        lookup_burst: int,
        unknown_ttl: float,
        unknown_max: int = 100_000,
        ceiling: IdCeiling | None = None,
    ) -> None:
        self.budget = TokenBucket(lookup_rate, lookup_burst)
        self.negative = NegativeCache(unknown_ttl, unknown_max)
        self.ceiling = ceiling
        if ceiling is not None:
            ceiling.on_lower = self.negative.clear
        self.stats: dict[str, int] = dict.fromkeys(
            ("lookups", "negative_hits", "above_ceiling", "over_budget", "refreshes", "refreshes_refused"), 0
        )

    def miss(self, account_id: int, now: float) -> str:
        """For an id not in the account cache: '' to look it up, else the reason to drop the beat."""
        stats = self.stats
        reason = self.negative.get(account_id, now)
        if reason:
            stats["negative_hits"] += 1
            return reason
        if self.ceiling is not None and not self.ceiling.admits(account_id, now):
            stats["above_ceiling"] += 1
            return "unknown_account"
        if not self.budget.take(now):
            stats["over_budget"] += 1
            return "preauth_budget"
        stats["lookups"] += 1
        return ""

    def refresh(self, now: float) -> bool:
        """Whether a cached account whose MAC failed (and that may refresh) is looked up again."""
        if self.budget.take(now):
            self.stats["refreshes"] += 1
            return True
        self.stats["over_budget"] += 1
        return False

    def found(self, account_id: int, reason: str, now: float) -> None:
        """The result of a lookup: ``reason`` '' (an account), else unknown_account / bad_account."""
        if reason:
            self.negative.put(account_id, reason, now)
        else:
            self.negative.forget(account_id)
