"""The listener's protocol logic, pure: datagrams in, decisions out. No sockets, no Redis client here.

A batch goes through three stages, so the socket shell can overlap Redis round trips with work on the
next batch, and tests can call each stage (or :func:`process_batch`, which chains them) directly:

1. :func:`~heartbeat_listener.verify.screen`: shape check -> candidate beats;
2. :func:`~heartbeat_listener.verify.authenticate`: with the accounts' keys/plans/zones, check MACs
   (constant time), then drop what the listener already knows to be a replay and charge the
   per-account and per-source limits -> the :class:`~hbdns.liveness.BeatRequest` list for the beat
   script (replay check and state change happen there, atomically, so two listener processes can't
   both accept one beat). What a datagram may cost before it has authenticated is decided by
   :mod:`heartbeat_listener.preauth`;
3. :func:`~heartbeat_listener.decide.conclude`: with the script results -> replies, names to purge,
   counts by reason, cache evictions.

The records a batch becomes are in :mod:`heartbeat_listener.batch`, the account cache in
:mod:`heartbeat_listener.accounts`, the per-source limit in :mod:`heartbeat_listener.sources`, the
per-account memory (counter floor, rate limit) in :mod:`heartbeat_listener.recent`.

The cache is what keeps the per-beat cost at one Redis script step: every beat carries the config
fingerprint (``fp``) it was authenticated with, and the script compares it with the stored one in the
same atomic step that applies the beat, so a stale cache entry can delay a beat by one pass but can
never make the listener accept a beat the current key would refuse.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

from hbdns.liveness import BeatRequest, BeatResult
from heartbeat_listener.accounts import AccountCache, AccountInfo, Lookup, StoreUnavailable
from heartbeat_listener.batch import (
    GOOD,
    RESULTS,
    Address,
    Authenticated,
    Candidate,
    Change,
    Datagram,
    Decisions,
    Reject,
    Screened,
)
from heartbeat_listener.decide import DEFAULT_WINDOW_MS, StaleReplies, conclude, dropped
from heartbeat_listener.preauth import IdCeiling, NegativeCache, PreAuth
from heartbeat_listener.recent import RecentBeats
from heartbeat_listener.sources import SourceLimiter, source_ip
from heartbeat_listener.verify import Checks, authenticate, authenticate_all, screen

__all__ = [
    "GOOD",
    "RESULTS",
    "AccountCache",
    "AccountInfo",
    "Address",
    "Authenticated",
    "BeatWriter",
    "Candidate",
    "Change",
    "Checks",
    "Datagram",
    "Decisions",
    "IdCeiling",
    "Lookup",
    "NegativeCache",
    "PreAuth",
    "RecentBeats",
    "Reject",
    "Screened",
    "SourceLimiter",
    "StaleReplies",
    "StoreUnavailable",
    "authenticate",
    "authenticate_all",
    "conclude",
    "dropped",
    "process_batch",
    "screen",
    "source_ip",
]


class BeatWriter(Protocol):
    """Runs the beat script for each request, in order (``hbdns.liveness.Liveness`` is one)."""

    def beats(self, reqs: Sequence[BeatRequest]) -> list[BeatResult]: ...


def process_batch(
    datagrams: Sequence[Datagram],
    lookup: Callable[[Sequence[int]], Mapping[int, AccountInfo | str]],
    writer: BeatWriter,
    limiter: SourceLimiter | None = None,
    now: float = 0.0,
    cache: AccountCache | None = None,
    *,
    now_ms: int | None = None,
    window_ms: int = DEFAULT_WINDOW_MS,
    stale: StaleReplies | None = None,
    recent: RecentBeats | None = None,
    preauth: PreAuth | None = None,
) -> Decisions:
    """One batch, synchronously: screen, authenticate (a lookup round trip for what the cache lacks),
    write (1 round trip). Beats handed back as ``requeue`` are not retried here. ``now_ms`` (the
    listener's clock for CLOCK_SKEW answers and the stale checks) defaults to the wall clock."""
    wall_ms = time.time_ns() // 1_000_000 if now_ms is None else now_ms
    checks = Checks(preauth=preauth, recent=recent, limiter=limiter, window_ms=window_ms, now=now, now_ms=wall_ms)
    screened = screen(datagrams)
    if not screened.candidates:
        return Decisions(counts=screened.counts, rejects=screened.rejects)
    try:
        auth = authenticate_all(screened, cache, lookup, checks)
    except StoreUnavailable as exc:
        return dropped(screened, str(exc))
    if not auth.requests:
        return Decisions(counts=auth.counts, rejects=auth.rejects)
    try:
        results = writer.beats(auth.requests)
        decisions = conclude(auth, results, now_ms=wall_ms, window_ms=window_ms, stale=stale, recent=recent)
    except StoreUnavailable as exc:
        return dropped(auth, str(exc))
    if cache is not None:
        cache.evict(decisions.evict)
    return decisions
