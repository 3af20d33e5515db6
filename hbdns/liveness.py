"""State transitions, each one atomic Lua script on Redis, shared by every writer.
The scripts themselves are in ``hbdns/lua/`` (:mod:`hbdns.scripts`); this module is their Python side.

- :meth:`Liveness.beat` is what a heartbeat or a dyndns2 update does: replay check (counter strictly
  greater than the last accepted one, within the skew window of Redis' clock), refresh the ``alive``
  key and the deadline in one step, change the address, record ``recovered``/``ip_changed``, bump
  the zone's SOA serial. An ``offline`` beat neutralizes at once.
- :meth:`Liveness.sweep` finds accounts whose deadline passed (Redis ``TIME`` is the one clock) and
  neutralizes them; :meth:`Liveness.neutralize_if_due` is the same idempotent step for one account
  (used when a keyspace ``expired`` hint arrives early). The deadline is removed in the same script
  that records the transition, so two sweepers never record one transition twice.

Every transition is appended to the ``events`` stream (for the notifier) and to the account's
capped log (for ``hbdns account log``). The backend never reads ``state``: it answers from the
``alive`` key, which Redis expires exactly, so DNS flips even if no sweeper runs.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import redis

from hbdns import keys, scripts

# The beat script's call layout (see hbdns/lua/beat.lua): per beat 3 KEYS (acct alive log) and 7
# ARGV (id ipv4 ipv6 counter ttl_ms offline fp); per batch the deadlines and events keys, the
# batch's zones once each, and 5 ARGV + one per zone.
BEAT_KEYS_PER_BEAT = 3
BEAT_ARGS_PER_BEAT = 7


@dataclass(frozen=True)
class BeatResult:
    """Outcome of one beat or update. ``status``: ok, offline, replay, stale, gone, or rekey (the
    account's key, plan or zone changed since the caller read them: nothing was applied)."""

    status: str
    changed: bool  # the DNS answer changed (address or live/neutral): purge caches
    old_ipv4: str
    old_ipv6: str
    names: tuple[str, ...]  # the account's names, for purges

    @property
    def accepted(self) -> bool:
        return self.status in ("ok", "offline")


OK = BeatResult("ok", False, "", "", ())  # the script's bare 'ok': accepted, DNS answer unchanged
REKEY = BeatResult("rekey", False, "", "", ())


class BeatRequest(NamedTuple):
    """One beat or update for the beat script.

    A NamedTuple rather than a frozen dataclass: the listener makes one per beat, and a frozen
    dataclass's ``__init__`` costs several times a tuple's (``object.__setattr__`` per field).
    """

    account_id: int
    zone: str
    expiry_ms: int
    ipv4: str = ""
    ipv6: str = ""
    counter: int | None = None  # None: no replay check (dyndns2 updates)
    offline: bool = False
    source: str = "beat"
    fp: str = ""  # the config fingerprint the caller authenticated with; "" = not checked


@dataclass(frozen=True)
class Neutralized:
    account_id: int
    names: tuple[str, ...]


def _names(fqdn: str, aliases: str) -> tuple[str, ...]:
    if not fqdn:
        return ()
    try:
        extra = json.loads(aliases or "[]")
    except ValueError:
        extra = []
    return (fqdn, *extra)


def _s(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


class Liveness:
    """The transition scripts bound to one Redis client (works on pipelines too)."""

    def __init__(
        self,
        r: redis.Redis,
        *,
        max_skew_ms: int = 300_000,
        events_maxlen: int = 100_000,
        log_size: int = 200,
    ) -> None:
        self.r = r
        self.max_skew_ms = max_skew_ms
        self.events_maxlen = events_maxlen
        self.log_size = log_size

    @staticmethod
    def _account_keys(account_id: int, zone: str) -> list[str]:
        return [
            keys.account(account_id),
            keys.alive(account_id),
            keys.deadlines(),
            keys.events(),
            keys.account_log(account_id),
            keys.zone(zone),
        ]

    def beat_argv(self, reqs: Sequence[BeatRequest], source: str = "beat") -> tuple[list[str], list[str]]:
        """KEYS and ARGV of the beat script for a batch from one ``source`` (the requests' own
        ``source`` is not read here: :meth:`beats` splits a mixed batch): the one place that spells
        the script's call layout. Each zone of the batch is passed once, in order of appearance."""
        zones = list(dict.fromkeys(req.zone for req in reqs))
        keys_ = [keys.deadlines(), keys.events(), *(keys.zone(z) for z in zones)]
        args = [str(self.max_skew_ms), str(self.events_maxlen), str(self.log_size), source, str(len(zones)), *zones]
        for req in reqs:
            keys_ += [keys.account(req.account_id), keys.alive(req.account_id), keys.account_log(req.account_id)]
            args += [
                str(req.account_id),
                req.ipv4,
                req.ipv6,
                "" if req.counter is None else str(req.counter),
                str(int(req.expiry_ms)),
                "1" if req.offline else "0",
                req.fp,
            ]
        return keys_, args

    @staticmethod
    def beat_result(raw: Any) -> BeatResult:
        """Decode one beat's part of the script's reply (public for writers that send EVALSHA themselves)."""
        if isinstance(raw, (str, bytes)):
            return OK if _s(raw) == "ok" else REKEY
        status, changed, old4, old6, fqdn, aliases = (_s(x) for x in raw)
        return BeatResult(status, changed == "1", old4, old6, _names(fqdn, aliases))

    def beat(self, req: BeatRequest) -> BeatResult:
        return self.beats([req])[0]

    def beats(self, reqs: Iterable[BeatRequest], chunk: int = 500) -> list[BeatResult]:
        """Many beats, one script call (one round trip, one atomic step) per ``chunk`` of them that
        share a source, in order."""
        reqs = list(reqs)
        out: list[BeatResult] = []
        i = 0
        while i < len(reqs):
            source = reqs[i].source
            j = i + 1
            while j < len(reqs) and j - i < chunk and reqs[j].source == source:
                j += 1
            keys_, args = self.beat_argv(reqs[i:j], source)
            out += [self.beat_result(raw) for raw in scripts.BEAT(self.r, keys_, args)]
            i = j
        return out

    def due(self, limit: int = 1000) -> list[int]:
        return [int(_s(x)) for x in scripts.DUE(self.r, [keys.deadlines()], [limit])]

    def neutralize_if_due(self, account_ids: Iterable[int]) -> list[Neutralized]:
        """Neutralize those of ``account_ids`` whose deadline passed; idempotent and race-free."""
        ids = list(account_ids)
        if not ids:
            return []
        pipe = self.r.pipeline(transaction=False)
        for account_id in ids:
            pipe.hget(keys.account(account_id), "zone")
        zones = [_s(z) if z is not None else "" for z in pipe.execute()]
        pipe = self.r.pipeline(transaction=False)
        for account_id, zone in zip(ids, zones, strict=True):
            scripts.NEUTRALIZE(
                pipe,
                self._account_keys(account_id, zone),
                [str(account_id), str(self.events_maxlen), str(self.log_size)],
            )
        out = []
        for account_id, raw in zip(ids, pipe.execute(), strict=True):
            status, fqdn, aliases = (_s(x) for x in raw)
            if status == "neutralized":
                out.append(Neutralized(account_id, _names(fqdn, aliases)))
        return out

    def sweep(self, limit: int = 1000) -> list[Neutralized]:
        """One sweep: neutralize up to ``limit`` accounts whose deadline has passed."""
        return self.neutralize_if_due(self.due(limit))

    def record(
        self,
        account_id: int,
        zone: str,
        fqdn: str,
        kind: str,
        extra: dict[str, str] | None = None,
        *,
        bump_serial: bool = True,
        client: Any = None,
    ) -> Any:
        """Append an admin transition (``created``, ``removed``) in the same format as the scripts'."""
        args: list[str] = [str(account_id), fqdn, kind, "1" if bump_serial else "0"]
        args += [str(self.events_maxlen), str(self.log_size)]
        for k, v in (extra or {}).items():
            args += [k, v]
        return scripts.RECORD(client or self.r, [keys.events(), keys.account_log(account_id), keys.zone(zone)], args)
