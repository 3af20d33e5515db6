"""Rate limits of the update API: GCRA buckets in Redis, so every process enforces one limit.

The buckets are :mod:`hbdns.ratelimit`'s (shared with the admin API): one script per bucket on
Redis ``TIME``. Updates count per account. Failed logins (:class:`FailedLogins`) count in three
buckets, all checked *before* the slow password hash and charged only when it failed:

- per (source, account): one router with a wrong password stops itself, and nobody else;
- per source over all accounts, a much higher ceiling: password spraying from one address;
- per account over all sources: brute force from many addresses.

A source from which an account's update was accepted is *known* for that account (the newest
:data:`KNOWN_PER_ACCOUNT`, for ``HBDNS_UPDATE_KNOWN_SOURCE_TTL``) and passes both ceilings (never its
own pair bucket): a sprayer behind a shared CGNAT address, or a botnet guessing one account, cannot
lock out customers whose routers already updated from where they are. Each bucket is one key, and
the few calls of a check are pipelined: one round trip, and Redis Cluster safe.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass

from hbdns import keys
from hbdns.ratelimit import Limit, RateLimiter

__all__ = ["KNOWN_PER_ACCOUNT", "FailedLogins", "Limit", "LoginLimits", "LoginSubject", "RateLimiter", "Refusal"]

KNOWN_PER_ACCOUNT = 8  # dynamic addresses change daily: a week of them, plus a second site


@dataclass(frozen=True)
class LoginSubject:
    """Who a login attempt is counted against."""

    source: str  # the source address, IPv6 per /64 (:func:`update_api.parsing.source_subject`)
    account: str  # the account id, or a digest of a name that is no account (same buckets either way)

    @classmethod
    def of(cls, source: str, account_id: int | None, username: str) -> LoginSubject:
        if account_id is not None:
            return cls(source=source, account=str(account_id))
        digest = hashlib.sha256(username.strip().lower().encode("utf-8", "replace")).hexdigest()[:16]
        return cls(source=source, account=f"?{digest}")


@dataclass(frozen=True)
class Refusal:
    """A login refused before the password check: which bucket, and for how long."""

    scope: str  # "pair", "source" or "account"
    wait: float  # seconds


@dataclass(frozen=True)
class LoginLimits:
    pair: Limit
    source: Limit
    account: Limit
    known_ttl_s: int


class FailedLogins:
    """The three failed-login buckets and the known sources that pass the two ceilings."""

    def __init__(self, limiter: RateLimiter, limits: LoginLimits) -> None:
        self.limiter = limiter
        self.limits = limits

    def _buckets(self, who: LoginSubject) -> dict[str, tuple[str, Limit]]:
        return {
            "pair": (keys.ratelimit("authfail-pair", f"{who.account}|{who.source}"), self.limits.pair),
            "source": (keys.ratelimit("authfail-source", who.source), self.limits.source),
            "account": (keys.ratelimit("authfail-account", who.account), self.limits.account),
        }

    def refused(self, who: LoginSubject) -> Refusal | None:
        """Whether to refuse this attempt without checking the password (nothing is counted)."""
        pipe = self.limiter.r.pipeline(transaction=False)
        for key, limit in self._buckets(who).values():
            self.limiter.queue(pipe, key, limit, take=False)
        pipe.zscore(keys.ratelimit("known", who.account), who.source)
        pair_ms, source_ms, account_ms, known = pipe.execute()
        if int(pair_ms):
            return Refusal(scope="pair", wait=int(pair_ms) / 1000.0)
        if known is not None and float(known) >= time.time() - self.limits.known_ttl_s:
            return None
        wait_ms, scope = max((int(source_ms), "source"), (int(account_ms), "account"))
        return Refusal(scope=scope, wait=wait_ms / 1000.0) if wait_ms else None

    def failed(self, who: LoginSubject) -> None:
        """Count a failed password check in every bucket (a full bucket stays full)."""
        pipe = self.limiter.r.pipeline(transaction=False)
        for key, limit in self._buckets(who).values():
            self.limiter.queue(pipe, key, limit, take=True)
        pipe.execute()

    def accepted(self, who: LoginSubject) -> None:
        """Remember the source of an accepted update as known for the account."""
        key = keys.ratelimit("known", who.account)
        pipe = self.limiter.r.pipeline(transaction=False)
        pipe.zadd(key, {who.source: time.time()})
        pipe.zremrangebyrank(key, 0, -(KNOWN_PER_ACCOUNT + 1))
        pipe.expire(key, self.limits.known_ttl_s)
        pipe.execute()
