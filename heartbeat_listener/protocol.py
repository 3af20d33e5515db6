"""The listener's protocol logic, pure: datagrams in, decisions out. No sockets, no Redis client here.

A batch goes through three stages, so the socket shell can overlap Redis round trips with work on the
next batch, and tests can call each stage (or :func:`process_batch`, which chains them) directly:

1. :func:`screen`: per-source rate limit, shape check (:func:`hbdns_client.wire.parse_beat`) -> candidate beats;
2. :func:`authenticate`: with the accounts' keys/plans/zones, check MACs (constant time) -> the
   :class:`~hbdns.liveness.BeatRequest` list for the beat script (replay check and state change happen
   there, atomically, so two listener processes can't both accept one beat). It runs first against
   the process's :class:`AccountCache`; beats of accounts not in it, or whose MAC fails with the
   cached key (the key may have been rotated), go to ``retry`` and are authenticated once more
   against a fresh lookup (one Redis round trip, only for those);
3. :func:`conclude`: with the script results -> replies (only to authenticated beats that asked and were
   accepted, or were stale: then the status says CLOCK_SKEW), names to purge, counts by reason. A
   beat the script refused as ``rekey`` (authenticated with a cached key/plan that changed since) is
   evicted from the cache and handed back for one more pass with fresh data.

The cache is what keeps the per-beat cost at one Redis script step: every beat carries the config
fingerprint (``fp``) it was authenticated with, and the script compares it with the stored one in the
same atomic step that applies the beat, so a stale cache entry can delay a beat by one pass but can
never make the listener accept a beat the current key would refuse.

A bad packet never raises here; it is counted under its reason and listed in ``rejects`` for
rate-limited logging (never with key material).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from hbdns_client import wire

from hbdns.liveness import OK, BeatRequest, BeatResult

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
    "key_changed",
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
    "rekey": "key_changed",  # key/plan changed between a fresh lookup and the script (twice in a row)
    "noscript": "redis_down",  # the script was flushed from Redis: this beat did not run
}


class StoreUnavailable(Exception):
    """Redis could not be reached or answered garbage: the batch is dropped and counted as redis_down."""


class AccountInfo:
    """What the listener needs of an account to accept its beats. ``fp`` is the stored config
    fingerprint (:func:`hbdns.model.config_fingerprint`); without one the entry is not cached.

    A small slotted value rather than a frozen dataclass: it is read on every beat, and it carries
    the key's precomputed HMAC states (``mac_key``), made once when the entry is made.
    """

    __slots__ = ("expiry_ms", "fp", "key", "mac_key", "zone")

    def __init__(self, key: bytes, expiry_ms: int, zone: str, fp: str = "") -> None:
        self.key = key
        self.expiry_ms = expiry_ms
        self.zone = zone
        self.fp = fp
        self.mac_key = wire.MacKey(key)

    def _values(self) -> tuple[bytes, int, str, str]:
        return (self.key, self.expiry_ms, self.zone, self.fp)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, AccountInfo) and self._values() == other._values()

    def __hash__(self) -> int:
        return hash(self._values())

    def __repr__(self) -> str:
        return f"AccountInfo(expiry_ms={self.expiry_ms}, zone={self.zone!r}, fp={self.fp!r})"  # never the key


class AccountCache:
    """Account id -> :class:`AccountInfo`, bounded (it starts afresh when full; refills cost one
    lookup per account). Only entries with a fingerprint are kept: the beat script checks it."""

    def __init__(self, max_entries: int = 2_000_000) -> None:
        self.max_entries = max_entries
        self._d: dict[int, AccountInfo] = {}

    def __len__(self) -> int:
        return len(self._d)

    def get(self, account_id: int) -> AccountInfo | None:
        return self._d.get(account_id)

    def update(self, accounts: Mapping[int, AccountInfo | str]) -> None:
        for account_id, info in accounts.items():
            if isinstance(info, AccountInfo) and info.fp:
                if len(self._d) >= self.max_entries:
                    self._d.clear()
                self._d[account_id] = info
            else:
                self._d.pop(account_id, None)

    def evict(self, account_ids: Sequence[int]) -> None:
        for account_id in account_ids:
            self._d.pop(account_id, None)


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
    counts: Mapping[str, int]
    rejects: tuple[Reject, ...]

    @property
    def ids(self) -> tuple[int, ...]:
        """Distinct account ids, first-seen order."""
        return tuple(dict.fromkeys(c[0].account_id for c in self.candidates))


@dataclass(frozen=True)
class Authenticated:
    candidates: tuple[Candidate, ...]  # index-aligned with requests, keys and cached
    requests: tuple[BeatRequest, ...]
    keys: tuple[wire.Key, ...] = field(repr=False)
    counts: Mapping[str, int]
    rejects: tuple[Reject, ...]
    cached: tuple[bool, ...] = ()  # authenticated with a cache entry (a 'rekey' then earns a retry)
    retry: tuple[Candidate, ...] = ()  # not decided with the cache: authenticate again after a lookup

    @property
    def retry_ids(self) -> tuple[int, ...]:
        return tuple(dict.fromkeys(c[0].account_id for c in self.retry))

    def merge(self, other: Authenticated) -> Authenticated:
        """This pass's beats followed by ``other``'s (the fresh pass over ``retry``)."""
        counts: Counter[str] = Counter(self.counts)
        counts.update(other.counts)
        return Authenticated(
            self.candidates + other.candidates,
            self.requests + other.requests,
            self.keys + other.keys,
            counts,
            self.rejects + other.rejects,
            self.cached + other.cached,
            other.retry,
        )


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
    """What the socket shell does for a batch: send ``replies``, purge ``purge``, add ``counts``;
    ``evict`` ids from the account cache and run ``requeue`` again (beats refused as ``rekey``)."""

    replies: tuple[tuple[bytes, Address], ...]
    purge: tuple[str, ...]
    counts: Mapping[str, int]
    rejects: tuple[Reject, ...]
    changes: tuple[Change, ...] = ()
    redis_error: str = ""  # set when the batch was dropped because Redis failed
    evict: tuple[int, ...] = ()
    requeue: tuple[Candidate, ...] = ()


def screen(datagrams: Sequence[Datagram], limiter: SourceLimiter | None, now: float) -> Screened:
    counts: Counter[str] = Counter()
    rejects: list[Reject] = []
    candidates: list[Candidate] = []
    parse = wire.parse_beat
    allow = limiter.allow if limiter is not None else None
    for data, addr in datagrams:
        host = addr[0]
        ip, v6 = (host, False) if ":" not in host else source_ip(addr)
        if allow is not None and not allow(ip, now):
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
    return Screened(tuple(candidates), counts, tuple(rejects))


def authenticate(
    candidates: Sequence[Candidate],
    accounts: Mapping[int, AccountInfo | str] | AccountCache,
    *,
    fresh: bool = True,
    counts: Mapping[str, int] | None = None,
    rejects: Sequence[Reject] = (),
) -> Authenticated:
    """Check MACs with ``accounts``. ``fresh``: they were just read from Redis, so an unknown id or a
    bad MAC is final; otherwise (a cache) such beats go to ``retry``."""
    tally: Counter[str] = Counter(counts or {})
    rejected = list(rejects)
    kept: list[Candidate] = []
    requests: list[BeatRequest] = []
    keys: list[wire.Key] = []
    retry: list[Candidate] = []
    verify = wire.verify_beat
    get = accounts.get
    for cand in candidates:
        beat, _addr, ip, v6 = cand
        info = get(beat.account_id)
        if not isinstance(info, AccountInfo):
            if not fresh:
                retry.append(cand)
                continue
            reason = info or "unknown_account"
            tally[reason] += 1
            rejected.append((reason, ip, beat.account_id))
            continue
        mac_key = info.mac_key
        if not verify(beat, mac_key):
            if not fresh:
                retry.append(cand)
                continue
            tally["bad_mac"] += 1
            rejected.append(("bad_mac", ip, beat.account_id))
            continue
        kept.append(cand)
        keys.append(mac_key)
        requests.append(
            BeatRequest(
                beat.account_id,
                info.zone,
                info.expiry_ms,
                "" if v6 else ip,
                ip if v6 else "",
                beat.counter,
                beat.flags & wire.FLAG_OFFLINE != 0,
                "beat",
                info.fp,
            )
        )
    return Authenticated(
        tuple(kept), tuple(requests), tuple(keys), tally, tuple(rejected), (not fresh,) * len(kept), tuple(retry)
    )


def conclude(auth: Authenticated, results: Sequence[BeatResult]) -> Decisions:
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
    for cand, key, res, from_cache in zip(auth.candidates, auth.keys, results, cached, strict=True):
        beat, addr, ip, _v6 = cand
        if res is OK:  # the common case, kept short: accepted, nothing changed
            accepted += 1
            if beat.flags & want_reply:
                replies.append((encode_reply(beat, status_ok, ip, key), addr))
            continue
        status = res.status
        if status in ("rekey", "gone"):
            evict.append(beat.account_id)
            if status == "rekey" and from_cache:
                requeue.append(cand)
                continue
        reason = _RESULT_REASON.get(status, "error")
        counts[reason] += 1
        if reason not in GOOD:
            rejects.append((reason, ip, beat.account_id))
        if res.changed:
            purge.extend(res.names)
            changes.append(Change(beat.account_id, status, ip, res.old_ipv4, res.old_ipv6))
        if beat.flags & want_reply:
            reply_status = _REPLY_STATUS.get(status)
            if reply_status is not None:
                replies.append((encode_reply(beat, reply_status, ip, key), addr))
    if accepted:
        counts["accepted"] += accepted
    return Decisions(
        tuple(replies), tuple(purge), counts, tuple(rejects), tuple(changes), "", tuple(evict), tuple(requeue)
    )


def dropped(auth: Authenticated | Screened, error: str) -> Decisions:
    """Decisions for a batch whose Redis step failed: every candidate counts as redis_down."""
    counts: Counter[str] = Counter(auth.counts)
    counts["redis_down"] += len(auth.candidates)
    return Decisions((), (), counts, auth.rejects, (), error or "redis error")


def authenticate_all(
    screened: Screened,
    cache: AccountCache | None,
    lookup: Callable[[Sequence[int]], Mapping[int, AccountInfo | str]],
) -> Authenticated:
    """Authenticate with the cache, then the rest with one fresh lookup (which refills the cache).
    Raises :class:`StoreUnavailable` from the lookup."""
    counts, rejects = screened.counts, screened.rejects
    if cache is None:
        ids = screened.ids
        return authenticate(screened.candidates, lookup(ids) if ids else {}, counts=counts, rejects=rejects)
    auth = authenticate(screened.candidates, cache, fresh=False, counts=counts, rejects=rejects)
    if not auth.retry:
        return auth
    accounts = lookup(auth.retry_ids)
    cache.update(accounts)
    return auth.merge(authenticate(auth.retry, accounts))


def process_batch(
    datagrams: Sequence[Datagram],
    lookup: Callable[[Sequence[int]], Mapping[int, AccountInfo | str]],
    writer: BeatWriter,
    limiter: SourceLimiter | None = None,
    now: float = 0.0,
    cache: AccountCache | None = None,
) -> Decisions:
    """One batch, synchronously: screen, authenticate (a lookup round trip for what the cache lacks),
    write (1 round trip). Beats handed back as ``requeue`` are not retried here."""
    screened = screen(datagrams, limiter, now)
    if not screened.candidates:
        return Decisions((), (), screened.counts, screened.rejects)
    try:
        auth = authenticate_all(screened, cache, lookup)
    except StoreUnavailable as exc:
        return dropped(screened, str(exc))
    if not auth.requests:
        return Decisions((), (), auth.counts, auth.rejects)
    try:
        decisions = conclude(auth, writer.beats(auth.requests))
    except StoreUnavailable as exc:
        return dropped(auth, str(exc))
    if cache is not None:
        cache.evict(decisions.evict)
    return decisions
