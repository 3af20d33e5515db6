"""The listener's protocol logic, pure: datagrams in, decisions out. No sockets, no Redis client here.

A batch goes through three stages, so the socket shell can overlap Redis round trips with work on the
next batch, and tests can call each stage (or :func:`process_batch`, which chains them) directly:

1. :func:`screen`: per-source rate limit, shape check (:func:`hbdns.wire.parse_beat`) -> candidate beats
   and the distinct account ids to look up;
2. :func:`authenticate`: with the accounts' keys/plans/zones, check MACs (constant time) -> the
   :class:`~hbdns.liveness.BeatRequest` list for the beat script (replay check and state change happen
   there, atomically, so two listener processes can't both accept one beat);
3. :func:`conclude`: with the script results -> replies (only to authenticated beats that asked and were
   accepted, or were stale: then the status says CLOCK_SKEW), names to purge, counts by reason.

A bad packet never raises here; it is counted under its reason and listed in ``rejects`` for
rate-limited logging (never with key material).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from hbdns import wire
from hbdns.liveness import BeatRequest, BeatResult

Address = tuple[Any, ...]  # what recvfrom returns: (host, port) or (host, port, flowinfo, scope_id)
Datagram = tuple[bytes, Address]
# (beat, address it came from, normalized source ip, came over IPv6)
Candidate = tuple[wire.Beat, Address, str, bool]
Reject = tuple[str, str, int]  # (reason, source ip, account id or -1)

# Every reason a datagram ends up under; "accepted"/"offline" are the good ones.
RESULTS = (
    "accepted",
    "offline",
    "short",
    "long",
    "version",
    "flags",
    "rate_limited",
    "unknown_account",
    "bad_account",
    "bad_mac",
    "replay",
    "stale",
    "redis_down",
    "error",
)
GOOD = frozenset({"accepted", "offline"})

_REPLY_STATUS = {"ok": wire.STATUS_OK, "offline": wire.STATUS_OFFLINE_OK, "stale": wire.STATUS_CLOCK_SKEW}
_RESULT_REASON = {
    "ok": "accepted",
    "offline": "offline",
    "stale": "stale",
    "replay": "replay",
    "gone": "unknown_account",  # removed between lookup and script
    "noscript": "redis_down",  # the script was flushed from Redis: this beat did not run
}


class StoreUnavailable(Exception):
    """Redis could not be reached or answered garbage: the batch is dropped and counted as redis_down."""


@dataclass(frozen=True)
class AccountInfo:
    """What the listener needs of an account to accept its beats."""

    key: bytes = field(repr=False)
    expiry_ms: int
    zone: str


class Lookup(Protocol):
    """Accounts by id; a missing id is unknown, a string value is a reject reason (e.g. bad_account)."""

    def __call__(self, ids: Sequence[int]) -> Mapping[int, AccountInfo | str]: ...


class BeatWriter(Protocol):
    """Runs the beat script for each request, in order (``hbdns.liveness.Liveness`` is one)."""

    def beats(self, reqs: Sequence[BeatRequest]) -> list[BeatResult]: ...


def source_ip(addr: Address) -> tuple[str, bool]:
    """The source address as stored in DNS, and whether it is IPv6 (IPv4-mapped IPv6 counts as IPv4)."""
    host = addr[0]
    if ":" not in host:
        return host, False
    if host.startswith("::ffff:") and "." in host:
        return host[7:], False
    pct = host.find("%")
    return (host[:pct] if pct >= 0 else host), True


class SourceLimiter:
    """Token bucket per source address, so one flooding address can't starve the others.

    ``now`` is passed in (monotonic seconds) so tests control time. The table is bounded: when it is
    full, buckets that refilled completely are forgotten; if that is not enough it starts afresh
    (a flood from that many distinct sources is not what a per-source limit is for).
    """

    def __init__(self, rate: float, burst: int, max_sources: int = 200_000) -> None:
        self.rate = float(rate)
        self.burst = float(burst)
        self.max_sources = max_sources
        self._buckets: dict[str, list[float]] = {}

    def __len__(self) -> int:
        return len(self._buckets)

    def allow(self, ip: str, now: float) -> bool:
        b = self._buckets.get(ip)
        if b is None:
            if len(self._buckets) >= self.max_sources:
                self.prune(now)
            self._buckets[ip] = [self.burst - 1.0, now]
            return True
        tokens = b[0] + (now - b[1]) * self.rate
        if tokens > self.burst:
            tokens = self.burst
        b[1] = now
        if tokens >= 1.0:
            b[0] = tokens - 1.0
            return True
        b[0] = tokens
        return False

    def prune(self, now: float) -> None:
        """Forget sources whose bucket is full again (they are indistinguishable from new ones)."""
        full = [ip for ip, (tokens, last) in self._buckets.items() if tokens + (now - last) * self.rate >= self.burst]
        for ip in full:
            del self._buckets[ip]
        if len(self._buckets) >= self.max_sources:
            self._buckets.clear()


@dataclass(frozen=True)
class Screened:
    candidates: tuple[Candidate, ...]
    ids: tuple[int, ...]  # distinct account ids, first-seen order
    counts: Mapping[str, int]
    rejects: tuple[Reject, ...]


@dataclass(frozen=True)
class Authenticated:
    candidates: tuple[Candidate, ...]  # index-aligned with requests and keys
    requests: tuple[BeatRequest, ...]
    keys: tuple[bytes, ...] = field(repr=False)
    counts: Mapping[str, int]
    rejects: tuple[Reject, ...]


@dataclass(frozen=True)
class Change:
    """An accepted beat that changed the DNS answer (address moved, recovered or neutralized)."""

    account_id: int
    status: str
    source: str
    old_ipv4: str
    old_ipv6: str


@dataclass(frozen=True)
class Decisions:
    """What the socket shell does for a batch: send ``replies``, purge ``purge``, add ``counts``."""

    replies: tuple[tuple[bytes, Address], ...]
    purge: tuple[str, ...]
    counts: Mapping[str, int]
    rejects: tuple[Reject, ...]
    changes: tuple[Change, ...] = ()
    redis_error: str = ""  # set when the batch was dropped because Redis failed


def screen(datagrams: Sequence[Datagram], limiter: SourceLimiter | None, now: float) -> Screened:
    counts: Counter[str] = Counter()
    rejects: list[Reject] = []
    candidates: list[Candidate] = []
    ids: dict[int, None] = {}
    parse = wire.parse_beat
    for data, addr in datagrams:
        ip, v6 = source_ip(addr)
        if limiter is not None and not limiter.allow(ip, now):
            counts["rate_limited"] += 1
            rejects.append(("rate_limited", ip, -1))
            continue
        try:
            beat = parse(data)
        except wire.WireError as exc:
            counts[exc.reason] += 1
            rejects.append((exc.reason, ip, -1))
            continue
        candidates.append((beat, addr, ip, v6))
        ids[beat.account_id] = None
    return Screened(tuple(candidates), tuple(ids), counts, tuple(rejects))


def authenticate(screened: Screened, accounts: Mapping[int, AccountInfo | str]) -> Authenticated:
    counts: Counter[str] = Counter(screened.counts)
    rejects = list(screened.rejects)
    kept: list[Candidate] = []
    requests: list[BeatRequest] = []
    keys: list[bytes] = []
    verify = wire.verify_beat
    for cand in screened.candidates:
        beat, _addr, ip, v6 = cand
        info = accounts.get(beat.account_id)
        if not isinstance(info, AccountInfo):
            reason = info or "unknown_account"
            counts[reason] += 1
            rejects.append((reason, ip, beat.account_id))
            continue
        if not verify(beat, info.key):
            counts["bad_mac"] += 1
            rejects.append(("bad_mac", ip, beat.account_id))
            continue
        kept.append(cand)
        keys.append(info.key)
        requests.append(
            BeatRequest(
                beat.account_id,
                info.zone,
                info.expiry_ms,
                ipv4="" if v6 else ip,
                ipv6=ip if v6 else "",
                counter=beat.counter,
                offline=beat.offline,
            )
        )
    return Authenticated(tuple(kept), tuple(requests), tuple(keys), counts, tuple(rejects))


def conclude(auth: Authenticated, results: Sequence[BeatResult]) -> Decisions:
    if len(results) != len(auth.requests):
        raise StoreUnavailable(f"{len(results)} results for {len(auth.requests)} beats")
    counts: Counter[str] = Counter(auth.counts)
    rejects = list(auth.rejects)
    replies: list[tuple[bytes, Address]] = []
    purge: list[str] = []
    changes: list[Change] = []
    for (beat, addr, ip, _v6), key, res in zip(auth.candidates, auth.keys, results, strict=True):
        status = res.status
        reason = _RESULT_REASON.get(status, "error")
        counts[reason] += 1
        if reason not in GOOD:
            rejects.append((reason, ip, beat.account_id))
        if res.changed:
            purge.extend(res.names)
            changes.append(Change(beat.account_id, status, ip, res.old_ipv4, res.old_ipv6))
        if beat.flags & wire.FLAG_REPLY:
            reply_status = _REPLY_STATUS.get(status)
            if reply_status is not None:
                replies.append((wire.encode_reply(beat, reply_status, ip, key), addr))
    return Decisions(tuple(replies), tuple(purge), counts, tuple(rejects), tuple(changes))


def dropped(auth: Authenticated | Screened, error: str) -> Decisions:
    """Decisions for a batch whose Redis step failed: every candidate counts as redis_down."""
    counts: Counter[str] = Counter(auth.counts)
    counts["redis_down"] += len(auth.candidates)
    return Decisions((), (), counts, auth.rejects, (), error or "redis error")


def process_batch(
    datagrams: Sequence[Datagram],
    lookup: Callable[[Sequence[int]], Mapping[int, AccountInfo | str]],
    writer: BeatWriter,
    limiter: SourceLimiter | None = None,
    now: float = 0.0,
) -> Decisions:
    """One batch, synchronously: screen, look up (1 round trip), authenticate, write (1 round trip)."""
    screened = screen(datagrams, limiter, now)
    if not screened.candidates:
        return Decisions((), (), screened.counts, screened.rejects)
    try:
        accounts = lookup(screened.ids)
    except StoreUnavailable as exc:
        return dropped(screened, str(exc))
    auth = authenticate(screened, accounts)
    if not auth.requests:
        return Decisions((), (), auth.counts, auth.rejects)
    try:
        return conclude(auth, writer.beats(auth.requests))
    except StoreUnavailable as exc:
        return dropped(auth, str(exc))
