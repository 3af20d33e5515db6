"""The records one batch of datagrams becomes on its way through the listener's pure stages.

The per-batch summaries (:class:`Screened`, :class:`Authenticated`, :class:`Decisions`) are frozen
dataclasses built with keywords: once per batch, that costs nothing. What is made per datagram
(:class:`Candidate`, and :class:`~hbdns.liveness.BeatRequest` per beat) is a NamedTuple, read by
field name everywhere; the hot loop builds those two from a tuple in field order (``tuple.__new__``),
because a NamedTuple's generated ``__new__`` is a Python function and calling it, with keywords
above all, cost more per beat than anything in the loop but the MAC (docs/protocol.md, "The
listener"). Their field order is pinned by the unit tests.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from hbdns_client import wire

from hbdns.liveness import BeatRequest

Address = tuple[Any, ...]  # what recvfrom returns: (host, port) or (host, port, flowinfo, scope_id)
Datagram = tuple[bytes, Address]

# Every reason a datagram ends up under; "accepted"/"offline" are the good ones.
RESULTS = (
    "accepted",
    "offline",
    "short",
    "long",
    "version",
    "flags",
    "rate_limited",  # per source address, authenticated beats only
    "account_rate_limited",  # per account, authenticated beats only
    "preauth_budget",  # an account not cached, not looked up: the global lookup budget was spent
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


class Candidate(NamedTuple):
    """A datagram that has the shape of a beat (its MAC not checked yet)."""

    beat: wire.Beat
    addr: Address  # where it came from (the reply goes there)
    ip: str  # the source address as stored in DNS
    v6: bool  # came over IPv6 (IPv4-mapped counts as IPv4)


class Reject(NamedTuple):
    """A datagram dropped, for the rate-limited log (never with key material)."""

    reason: str
    source: str
    account_id: int  # -1 when the datagram had no readable account id


@dataclass(frozen=True)
class Screened:
    """Stage 1's result: candidates, and what was dropped before any account was looked at."""

    candidates: tuple[Candidate, ...] = ()
    counts: Mapping[str, int] = field(default_factory=dict)
    rejects: tuple[Reject, ...] = ()

    @property
    def ids(self) -> tuple[int, ...]:
        """Distinct account ids, first-seen order."""
        return tuple(dict.fromkeys(c.beat.account_id for c in self.candidates))


@dataclass(frozen=True)
class Authenticated:
    """Stage 2's result: the beats whose MAC verified, as requests for the beat script."""

    candidates: tuple[Candidate, ...] = ()  # index-aligned with requests, keys and cached
    requests: tuple[BeatRequest, ...] = ()
    keys: tuple[wire.Key, ...] = field(default=(), repr=False)
    counts: Mapping[str, int] = field(default_factory=dict)
    rejects: tuple[Reject, ...] = ()
    cached: tuple[bool, ...] = ()  # authenticated with a cache entry (a 'rekey' then earns a retry)
    retry: tuple[Candidate, ...] = ()  # not decided with the cache: authenticate again after a lookup

    @property
    def retry_ids(self) -> tuple[int, ...]:
        return tuple(dict.fromkeys(c.beat.account_id for c in self.retry))

    def merge(self, other: Authenticated) -> Authenticated:
        """This pass's beats followed by ``other``'s (the fresh pass over ``retry``)."""
        counts: Counter[str] = Counter(self.counts)
        counts.update(other.counts)
        return Authenticated(
            candidates=self.candidates + other.candidates,
            requests=self.requests + other.requests,
            keys=self.keys + other.keys,
            counts=counts,
            rejects=self.rejects + other.rejects,
            cached=self.cached + other.cached,
            retry=other.retry,
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

    replies: tuple[tuple[bytes, Address], ...] = ()
    purge: tuple[str, ...] = ()
    counts: Mapping[str, int] = field(default_factory=dict)
    rejects: tuple[Reject, ...] = ()
    changes: tuple[Change, ...] = ()
    redis_error: str = ""  # set when the batch was dropped because Redis failed
    evict: tuple[int, ...] = ()
    requeue: tuple[Candidate, ...] = ()
