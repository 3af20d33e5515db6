"""Stages 1 and 2: screen datagrams (shape), then authenticate them (MACs, constant time) and admit them.

Nothing is limited before a MAC has verified: junk from an address costs its own few microseconds
and never the beats of the customer it claims to come from. In order, per datagram:

1. :func:`screen`: length, version, flags (:func:`hbdns_client.wire.parse_beat`);
2. :func:`authenticate`: the account from the process's
   :class:`~heartbeat_listener.accounts.AccountCache` and one HMAC. An account not in it, or whose
   MAC fails with the cached key (the key may have been rotated), goes to ``retry`` and is checked
   once more against a fresh lookup (one Redis round trip for the batch), if
   :class:`~heartbeat_listener.preauth.PreAuth` lets it: unknown ids, ids above the id sequence and
   lookups past the global budget are dropped without one, and a bad MAC re-reads an account at
   most about once a second (:class:`~heartbeat_listener.recent.RecentBeats`);
3. then, for an authentic beat only: replays and copies the listener already knows the verdict of
   are dropped (:meth:`RecentBeats.admit`), and the per-account and per-source limits are charged.

A bad packet never raises here; it is counted under its reason and listed in ``rejects``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from hbdns_client import wire

from hbdns.liveness import BeatRequest
from heartbeat_listener.accounts import AccountCache, AccountInfo
from heartbeat_listener.batch import Authenticated, Candidate, Datagram, Reject, Screened
from heartbeat_listener.decide import DEFAULT_WINDOW_MS
from heartbeat_listener.preauth import PreAuth
from heartbeat_listener.recent import RecentBeats
from heartbeat_listener.sources import SourceLimiter, source_ip


@dataclass(frozen=True)
class Checks:
    """What :func:`authenticate` consults besides the keys (None: that check is off).

    ``now`` (monotonic s) and ``now_ms`` (this host's clock, Unix ms) are the batch's.
    """

    preauth: PreAuth | None = None
    recent: RecentBeats | None = None
    limiter: SourceLimiter | None = None
    window_ms: int = DEFAULT_WINDOW_MS
    now: float = 0.0
    now_ms: int = 0


NO_CHECKS = Checks()


def screen(datagrams: Sequence[Datagram]) -> Screened:
    """Shape check (:func:`hbdns_client.wire.parse_beat`) -> candidates. Nothing is charged here: the
    per-source limit counts authenticated beats only (:func:`authenticate`)."""
    counts: Counter[str] = Counter()
    rejects: list[Reject] = []
    candidates: list[Candidate] = []
    parse, new = wire.parse_beat, tuple.__new__
    for data, addr in datagrams:
        ip = addr[0]
        if ":" not in ip:  # IPv4, the common case: no call
            v6 = False
        else:
            ip, v6 = source_ip(addr)
        try:
            beat = parse(data)
        except wire.WireError as exc:
            counts[exc.reason] += 1
            rejects.append(new(Reject, (exc.reason, ip, -1)))
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
    checks: Checks = NO_CHECKS,
) -> Authenticated:
    """Check MACs with ``accounts``. ``fresh``: they were just read from Redis, so an unknown id or a
    bad MAC is final; otherwise (a cache) such beats go to ``retry`` if ``checks.preauth`` lets them."""
    tally: Counter[str] = Counter(counts or {})
    rejected = list(rejects)
    kept: list[Candidate] = []
    requests: list[BeatRequest] = []
    keys: list[wire.Key] = []
    retry: list[Candidate] = []
    verify, get, new = wire.verify_beat, accounts.get, tuple.__new__
    offline_flag = wire.FLAG_OFFLINE
    preauth, recent, limiter = checks.preauth, checks.recent, checks.limiter
    now, now_ms, window_ms = checks.now, checks.now_ms, checks.window_ms
    asked: dict[int, str] = {}  # this pass: id -> '' (looked up) or why not, decided once per id
    for cand in candidates:
        beat, _addr, ip, v6 = cand
        account_id = beat.account_id
        info = get(account_id)
        if not isinstance(info, AccountInfo):
            if not fresh:
                reason = asked.get(account_id)
                if reason is None:
                    reason = asked[account_id] = preauth.miss(account_id, now) if preauth is not None else ""
                if not reason:
                    retry.append(cand)
                    continue
            else:
                reason = info or "unknown_account"
            tally[reason] += 1
            rejected.append(new(Reject, (reason, ip, account_id)))
            continue
        mac_key = info.mac_key
        if not verify(beat, mac_key):
            if not fresh:
                reason = asked.get(account_id)
                if reason is None:
                    reason = asked[account_id] = _refresh(account_id, preauth, recent, now)
                if not reason:
                    retry.append(cand)
                    continue
            tally["bad_mac"] += 1
            rejected.append(new(Reject, ("bad_mac", ip, account_id)))
            continue
        if recent is not None:
            reason = recent.admit(account_id, beat.counter, info.fp, now, now_ms, window_ms)
            if reason:
                tally[reason] += 1
                rejected.append(new(Reject, (reason, ip, account_id)))
                continue
        if limiter is not None and not limiter.allow(ip, now):
            tally["rate_limited"] += 1
            rejected.append(new(Reject, ("rate_limited", ip, account_id)))
            continue
        kept.append(cand)
        keys.append(mac_key)
        # in BeatRequest's field order (account_id zone expiry_ms ipv4 ipv6 counter offline source fp
        # fams; the tests pin it): tuple.__new__ skips the NamedTuple's Python-level __new__ (batch.py)
        fields = (
            account_id,
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


def _refresh(account_id: int, preauth: PreAuth | None, recent: RecentBeats | None, now: float) -> str:
    """'' when a cached account whose MAC failed is to be read again, else 'bad_mac'."""
    if recent is not None and not recent.may_refresh(account_id, now):
        if preauth is not None:
            preauth.stats["refreshes_refused"] += 1
        return "bad_mac"
    if preauth is not None and not preauth.refresh(now):
        return "bad_mac"
    return ""


def authenticate_all(
    screened: Screened,
    cache: AccountCache | None,
    lookup: Callable[[Sequence[int]], Mapping[int, AccountInfo | str]],
    checks: Checks = NO_CHECKS,
) -> Authenticated:
    """Authenticate with the cache, then the rest with one fresh lookup (which refills the cache).
    Raises :class:`~heartbeat_listener.accounts.StoreUnavailable` from the lookup."""
    counts, rejects = screened.counts, screened.rejects
    if cache is None:
        ids = screened.ids
        accounts = lookup(ids) if ids else {}
        return authenticate(screened.candidates, accounts, counts=counts, rejects=rejects, checks=checks)
    auth = authenticate(screened.candidates, cache, fresh=False, counts=counts, rejects=rejects, checks=checks)
    if not auth.retry:
        return auth
    ids = auth.retry_ids
    before = {i: cache.get(i) for i in ids}  # what a bad MAC was checked with (None: not cached)
    accounts = lookup(ids)
    cache.update(accounts)
    preauth, recent = checks.preauth, checks.recent
    for account_id, old in before.items():
        info = accounts.get(account_id)
        if preauth is not None:
            preauth.found(account_id, "" if isinstance(info, AccountInfo) else info or "unknown_account", checks.now)
        if old is not None and recent is not None:
            recent.refreshed(account_id, changed=not isinstance(info, AccountInfo) or info.fp != old.fp)
    return auth.merge(authenticate(auth.retry, accounts, checks=checks))
