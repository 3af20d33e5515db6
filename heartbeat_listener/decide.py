"""Stage 3: with the beat script's results, decide replies, purges, counts and cache evictions.

Replies go only to authenticated beats that asked (REPLY flag) and were accepted (OK, OFFLINE_OK),
or were refused as ``stale`` (outside the skew window): that answer is CLOCK_SKEW with the
listener's clock and window, so an honest client can follow the server's clock and be accepted on
its next beat. A stale beat is answered only the first time (:class:`StaleReplies`); a replay (a
counter not above the last accepted one) never is. A beat the script refused as ``rekey``
(authenticated with a cached key/plan that changed since) is evicted from the cache and handed back
for one more pass with fresh data. Every verdict is also told to
:class:`~heartbeat_listener.recent.RecentBeats`, so that copies of the beat are decided without
Redis from then on.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from hbdns_client import wire

from hbdns.liveness import OK, BeatResult
from heartbeat_listener.accounts import StoreUnavailable
from heartbeat_listener.batch import GOOD, Address, Authenticated, Candidate, Change, Decisions, Reject, Screened
from heartbeat_listener.recent import RecentBeats

DEFAULT_WINDOW_MS = 300_000  # HBDNS_HEARTBEAT_MAX_SKEW's default

_REPLY_STATUS = {"ok": wire.STATUS_OK, "offline": wire.STATUS_OFFLINE_OK}
_RESULT_REASON = {
    "ok": "accepted",
    "offline": "offline",
    "stale": "stale",
    "replay": "replay",
    "gone": "unknown_account",  # removed between lookup and script
    "rekey": "key_changed",  # key/plan changed between a fresh lookup and the script (twice in a row)
    "noscript": "redis_down",  # the script was flushed from Redis: this beat did not run
    "unavailable": "redis_down",  # Redis Cluster: its shard's primary is away, the beat is held (cluster_io)
}


class StaleReplies:
    """Which stale beats still get their CLOCK_SKEW answer: only the first of each.

    A stale beat is authentic, so it cannot be forged, but it can be captured and replayed from any
    source address, and its counter stays stale (the script stores nothing): answering every copy
    would make the listener a reflector and a captured packet worth something. So, per account, the
    listener remembers the highest counter it answered ahead of its clock and the highest behind
    it, and answers a stale beat only above that: a replayed copy is never above itself. An honest
    client needs one answer per clock error (it then follows the server's clock) and its counters
    only grow, so it is never refused one. Kept per process (several listener processes answer
    such a beat at most once each), bounded (starts afresh when full: stale beats are rare).
    """

    def __init__(self, max_accounts: int = 100_000) -> None:
        self.max_accounts = max_accounts
        self._highest: dict[int, list[int]] = {}  # account id -> [highest ahead, highest behind]

    def __len__(self) -> int:
        return len(self._highest)

    def first(self, account_id: int, counter: int, now_ms: int) -> bool:
        """Whether this stale beat is to be answered (and remember that it was)."""
        side = 0 if counter > now_ms else 1
        highest = self._highest.get(account_id)
        if highest is None:
            if len(self._highest) >= self.max_accounts:
                self._highest.clear()
            highest = self._highest[account_id] = [-1, -1]
        if counter <= highest[side]:
            return False
        highest[side] = counter
        return True


def conclude(
    auth: Authenticated,
    results: Sequence[BeatResult],
    *,
    now_ms: int,
    window_ms: int = DEFAULT_WINDOW_MS,
    stale: StaleReplies | None = None,
    recent: RecentBeats | None = None,
) -> Decisions:
    """``results`` are the beat script's, index-aligned with ``auth.requests``; ``now_ms`` the
    listener's clock (Unix ms) for CLOCK_SKEW answers; ``stale`` None answers every stale beat;
    ``recent`` (if given) learns each verdict."""
    if len(results) != len(auth.requests):
        raise StoreUnavailable(f"{len(results)} results for {len(auth.requests)} beats")
    counts: Counter[str] = Counter(auth.counts)
    rejects = list(auth.rejects)
    replies: list[tuple[bytes, Address]] = []
    purge: list[str] = []
    changes: list[Change] = []
    evict: list[int] = []
    requeue: list[Candidate] = []
    accepted = 0
    encode_reply, want_reply, status_ok = wire.encode_reply, wire.FLAG_REPLY, wire.STATUS_OK
    cached = auth.cached or (False,) * len(results)
    memory = recent.get if recent is not None else None
    for cand, key, res, from_cache in zip(auth.candidates, auth.keys, results, cached, strict=True):
        if res is OK:  # the common case, kept short: accepted, nothing changed
            accepted += 1
            beat = cand.beat
            if memory is not None:  # RecentBeats.judged(..., "ok", ...), inlined: once per beat
                r = memory(beat.account_id)
                if r is not None and beat.counter > r.floor:
                    r.floor = beat.counter
                    if beat.counter > r.low:
                        r.low = beat.counter
            if beat.flags & want_reply:
                replies.append((encode_reply(beat, status_ok, cand.ip, key), cand.addr))
            continue
        beat, addr, ip, _v6 = cand
        status = res.status
        if recent is not None:
            recent.judged(beat.account_id, beat.counter, status, now_ms)
        if status in ("rekey", "gone"):
            evict.append(beat.account_id)
            if status == "rekey" and from_cache:
                requeue.append(cand)
                continue
        reason = _RESULT_REASON.get(status, "error")
        counts[reason] += 1
        if reason not in GOOD:
            rejects.append(Reject(reason=reason, source=ip, account_id=beat.account_id))
        if res.changed:
            purge.extend(res.names)
            change = Change(
                account_id=beat.account_id, status=status, source=ip, old_ipv4=res.old_ipv4, old_ipv6=res.old_ipv6
            )
            changes.append(change)
        if not beat.flags & want_reply:
            continue
        if status == "stale":
            if stale is None or stale.first(beat.account_id, beat.counter, now_ms):
                replies.append((wire.encode_clock_skew(beat, now_ms, window_ms, key), addr))
        elif status in _REPLY_STATUS:
            replies.append((encode_reply(beat, _REPLY_STATUS[status], ip, key), addr))
    if accepted:
        counts["accepted"] += accepted
    return Decisions(
        replies=tuple(replies),
        purge=tuple(purge),
        counts=counts,
        rejects=tuple(rejects),
        changes=tuple(changes),
        evict=tuple(evict),
        requeue=tuple(requeue),
    )


def dropped(auth: Authenticated | Screened, error: str) -> Decisions:
    """Decisions for a batch whose Redis step failed: every candidate counts as redis_down."""
    counts: Counter[str] = Counter(auth.counts)
    counts["redis_down"] += len(auth.candidates)
    return Decisions(counts=counts, rejects=auth.rejects, redis_error=error or "redis error")
