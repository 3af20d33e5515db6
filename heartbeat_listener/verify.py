"""Stages 1 and 2: screen datagrams (rate limit, shape), then authenticate them (MACs, constant time).

Authentication runs first against the process's :class:`~heartbeat_listener.accounts.AccountCache`;
beats of accounts not in it, or whose MAC fails with the cached key (the key may have been rotated),
go to ``retry`` and are authenticated once more against a fresh lookup (one Redis round trip, only
for those). A bad packet never raises here; it is counted under its reason and listed in
``rejects``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence

from hbdns_client import wire

from hbdns.liveness import BeatRequest
from heartbeat_listener.accounts import AccountCache, AccountInfo
from heartbeat_listener.batch import Authenticated, Candidate, Datagram, Reject, Screened
from heartbeat_listener.sources import SourceLimiter, source_ip


def screen(datagrams: Sequence[Datagram], limiter: SourceLimiter | None, now: float) -> Screened:
    """Per-source rate limit and shape check (:func:`hbdns_client.wire.parse_beat`) -> candidates."""
    counts: Counter[str] = Counter()
    rejects: list[Reject] = []
    candidates: list[Candidate] = []
    parse, new = wire.parse_beat, tuple.__new__
    allow = limiter.allow if limiter is not None else None
    for data, addr in datagrams:
        ip = addr[0]
        if ":" not in ip:  # IPv4, the common case: no call
            v6 = False
        else:
            ip, v6 = source_ip(addr)
        if allow is not None and not allow(ip, now):
            counts["rate_limited"] += 1
            rejects.append(Reject(reason="rate_limited", source=ip, account_id=-1))
            continue
        try:
            beat = parse(data)
        except wire.WireError as exc:
            counts[exc.reason] += 1
            rejects.append(Reject(reason=exc.reason, source=ip, account_id=-1))
            continue
        candidates.append(new(Candidate, (beat, addr, ip, v6)))
    return Screened(candidates=tuple(candidates), counts=counts, rejects=tuple(rejects))


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
    verify, get, new = wire.verify_beat, accounts.get, tuple.__new__
    offline_flag = wire.FLAG_OFFLINE
    for cand in candidates:
        beat, _addr, ip, v6 = cand
        info = get(beat.account_id)
        if not isinstance(info, AccountInfo):
            if not fresh:
                retry.append(cand)
                continue
            reason = info or "unknown_account"
            tally[reason] += 1
            rejected.append(Reject(reason=reason, source=ip, account_id=beat.account_id))
            continue
        mac_key = info.mac_key
        if not verify(beat, mac_key):
            if not fresh:
                retry.append(cand)
                continue
            tally["bad_mac"] += 1
            rejected.append(Reject(reason="bad_mac", source=ip, account_id=beat.account_id))
            continue
        kept.append(cand)
        keys.append(mac_key)
        # in BeatRequest's field order (account_id zone expiry_ms ipv4 ipv6 counter offline source fp
        # fams; the tests pin it): tuple.__new__ skips the NamedTuple's Python-level __new__ (batch.py)
        fields = (
            beat.account_id,
            info.zone,
            info.expiry_ms,
            "" if v6 else ip,
            ip if v6 else "",
            beat.counter,
            beat.flags & offline_flag != 0,
            "beat",
            info.fp,
            "",  # the family is the address's
        )
        requests.append(new(BeatRequest, fields))
    return Authenticated(
        candidates=tuple(kept),
        requests=tuple(requests),
        keys=tuple(keys),
        counts=tally,
        rejects=tuple(rejected),
        cached=(not fresh,) * len(kept),
        retry=tuple(retry),
    )


def authenticate_all(
    screened: Screened,
    cache: AccountCache | None,
    lookup: Callable[[Sequence[int]], Mapping[int, AccountInfo | str]],
) -> Authenticated:
    """Authenticate with the cache, then the rest with one fresh lookup (which refills the cache).
    Raises :class:`~heartbeat_listener.accounts.StoreUnavailable` from the lookup."""
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
