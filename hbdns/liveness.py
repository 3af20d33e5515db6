"""State transitions, each one atomic Lua script on Redis, shared by every writer.
The scripts themselves are in ``hbdns/lua/`` (:mod:`hbdns.scripts`); this module is their Python side.

Liveness is per address family: a beat over IPv4 keeps the A record live, one over IPv6 the AAAA
record, a dyndns2 update the families it names; each family has its own ``alive`` key and deadline.

- :meth:`Liveness.beat` is what a heartbeat or a dyndns2 update does: replay check (counter strictly
  greater than the last accepted one, within the skew window of Redis' clock), refresh the family's
  ``alive`` key and deadline in one step, change the address, record ``recovered`` (the first family
  back) / ``family_back`` (another one) / ``ip_changed``, bump the zone's SOA serial. An ``offline``
  beat neutralizes every family at once.
- :meth:`Liveness.sweep` finds families whose deadline passed (Redis ``TIME`` is the one clock) and
  records them ``family_lost``, or ``neutralized`` when no family is left, unless the deadline's
  window overlaps an outage of our own ingest (the listeners mark every shard's ``keys.ingest``): such a
  deadline is held until ingest has been healthy for one whole window of the account's plan;
  :meth:`Liveness.neutralize_if_due` is the same idempotent step (used when a keyspace ``expired``
  hint arrives early). The deadline is removed in the same script that records the transition, so
  two sweepers never record one transition twice.

Every transition is appended to the ``events`` stream (for the notifier) and to the account's
capped log (for ``hbdns account log``). The backend never reads ``state``: it answers from the
``alive`` keys, which Redis expires exactly, so DNS flips even if no sweeper runs.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import redis

from hbdns import keys, script_calls, scripts
from hbdns.connection import is_cluster

# The beat script's call layout (see hbdns/lua/beat.lua): a shard table of 5 KEYS per shard of the
# batch (deadlines events stats ingest serials), then per beat 5 KEYS (acct alive4 alive6
# alive_legacy log) and 10 ARGV (id ipv4 ipv6 counter ttl_ms offline fp fams age_ms shard_row); per
# batch 6 ARGV (skew maxlen logcap source, the shard and zone counts) and the batch's zone names.
BEAT_KEYS_PER_SHARD = 5
BEAT_KEYS_PER_BEAT = 5
BEAT_ARGS_PER_BEAT = 10


def beat_keys(account_id: int) -> tuple[str, ...]:
    """The beat script's KEYS of one beat, in order (the listener encodes them once per account)."""
    return (
        keys.account(account_id),
        keys.alive(account_id, 4),
        keys.alive(account_id, 6),
        keys.alive_legacy(account_id),
        keys.account_log(account_id),
    )


def beat_shard_keys(shard: int) -> tuple[str, ...]:
    """The beat script's shard table row of one shard, in order (encoded once per shard)."""
    return (keys.deadlines(shard), keys.events(shard), keys.stats(shard), keys.ingest(shard), keys.serials(shard))


def by_shard(reqs: Sequence[BeatRequest]) -> dict[int, list[int]]:
    """Positions of ``reqs`` per shard of their accounts, shards in order of first appearance (on
    Redis Cluster each shard's beats go in calls of their own: one slot per call)."""
    out: dict[int, list[int]] = {}
    for i, req in enumerate(reqs):
        out.setdefault(keys.shard_of(req.account_id), []).append(i)
    return out


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
    fams: str = ""  # families kept alive ("4", "6", "46"); "" = those of the addresses sent


@dataclass(frozen=True)
class Neutralized:
    """A family (or the account) the sweeper found gone: ``lost`` while another family stays
    live, else the account was neutralized."""

    account_id: int
    names: tuple[str, ...]
    family: int = 0  # 4 or 6; 0: the legacy deadline of both families
    lost: bool = False


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
        windows: Mapping[str, int] | None = None,
    ) -> None:
        self.r = r
        self.max_skew_ms = max_skew_ms
        self.events_maxlen = events_maxlen
        self.log_size = log_size
        # plan name -> its window (ms): how long ingest must have been healthy before a deadline held
        # back by an ingest outage is acted on; a plan not listed gets the longest one
        self.windows = dict(windows or {})
        self.longest_window = max(self.windows.values(), default=0)
        self.held = 0  # deadlines held back so far because their window overlaps an ingest outage

    @staticmethod
    def _neutralize_keys(account_id: int) -> list[str]:
        """The neutralize script's KEYS: the account's and its shard's (one slot)."""
        shard = keys.shard_of(account_id)
        return [
            keys.account(account_id),
            keys.alive(account_id, 4),
            keys.alive(account_id, 6),
            keys.alive_legacy(account_id),
            keys.deadlines(shard),
            keys.events(shard),
            keys.account_log(account_id),
            keys.serials(shard),
            keys.stats(shard),
            keys.ingest(shard),
        ]

    def beat_argv(
        self, reqs: Sequence[BeatRequest], source: str = "beat", ages: Sequence[int] | None = None
    ) -> tuple[list[str], list[str]]:
        """KEYS and ARGV of the beat script for a batch from one ``source`` (the requests' own
        ``source`` is not read here: :meth:`beats` splits a mixed batch): the one place that spells
        the script's call layout. The shard table holds each shard of the batch once, and each zone
        is passed once, both in order of appearance. ``ages``: per beat, how many ms ago it was
        received (None: all just now)."""
        rows: dict[int, int] = {}
        for req in reqs:
            rows.setdefault(keys.shard_of(req.account_id), len(rows) + 1)
        zones = list(dict.fromkeys(req.zone for req in reqs))
        keys_ = [k for shard in rows for k in beat_shard_keys(shard)]
        args = [str(self.max_skew_ms), str(self.events_maxlen), str(self.log_size), source]
        args += [str(len(rows)), str(len(zones)), *zones]
        for i, req in enumerate(reqs):
            keys_ += beat_keys(req.account_id)
            args += [
                str(req.account_id),
                req.ipv4,
                req.ipv6,
                "" if req.counter is None else str(req.counter),
                str(int(req.expiry_ms)),
                "1" if req.offline else "0",
                req.fp,
                req.fams,
                str(ages[i]) if ages is not None and ages[i] > 0 else "",
                str(rows[keys.shard_of(req.account_id)]),
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
        share a source, in order. On Redis Cluster a call holds the beats of one shard (one slot):
        the beats of each shard stay in order, those of different shards are applied per shard."""
        reqs = list(reqs)
        if not is_cluster(self.r):
            return self._beats(reqs, chunk)
        out: list[BeatResult] = [REKEY] * len(reqs)
        for positions in by_shard(reqs).values():
            for i, res in zip(positions, self._beats([reqs[i] for i in positions], chunk), strict=True):
                out[i] = res
        return out

    def _beats(self, reqs: list[BeatRequest], chunk: int) -> list[BeatResult]:
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

    def due(self, limit: int = 1000, shards: Iterable[int] | None = None) -> list[tuple[int, int]]:
        """Due deadline members as (account id, family; 0 for a legacy one), oldest first within
        each shard: up to ``limit`` of each of ``shards`` (default every shard), shard after shard.
        One script call per shard (its deadlines are one slot), pipelined."""
        todo = list(keys.all_shards() if shards is None else shards)
        calls = [(scripts.DUE, [keys.deadlines(shard)], [limit]) for shard in todo]
        out = []
        for shard, found in zip(todo, script_calls.run(self.r, calls), strict=True):
            if isinstance(found, Exception):
                continue  # a cluster node failed (script_calls logs it): its shards come next time
            for raw in found:
                try:
                    out.append(keys.parse_deadline_member(_s(raw)))
                except ValueError:
                    self.r.zrem(keys.deadlines(shard), raw)  # not ours: it would block the sweep for good
        return out

    def neutralize_if_due(self, members: Iterable[tuple[int, int] | int]) -> list[Neutralized]:
        """Neutralize those deadline members (account id, family) whose deadline passed; a bare id
        stands for both families. Idempotent and race-free. Members of any shards: each script call
        touches its account's shard only."""
        todo: list[tuple[int, int]] = []
        for m in members:
            if isinstance(m, int):
                todo += [(m, 4), (m, 6), (m, 0)]
            else:
                todo.append(m)
        todo = list(dict.fromkeys(todo))
        if not todo:
            return []
        pipe = self.r.pipeline(transaction=False)
        for account_id, _ in todo:
            pipe.hmget(keys.account(account_id), "zone", "plan")
        found = [(_s(z) if z is not None else "", _s(p) if p is not None else "") for z, p in pipe.execute()]
        calls: list[script_calls.Call] = []
        for (account_id, family), (zone, plan) in zip(todo, found, strict=True):
            window = self.windows.get(plan, self.longest_window)
            args = [str(account_id), str(family or ""), str(self.events_maxlen), str(self.log_size), str(window), zone]
            calls.append((scripts.NEUTRALIZE, self._neutralize_keys(account_id), args))
        out = []
        for (account_id, family), raw in zip(todo, script_calls.run(self.r, calls), strict=True):
            if isinstance(raw, Exception):
                continue  # a cluster node failed (logged): the deadline stays, the next sweep retries
            status, fqdn, aliases = (_s(x) for x in raw)
            if status == "held":
                self.held += 1
            elif status in ("neutralized", "lost"):
                out.append(Neutralized(account_id, _names(fqdn, aliases), family, status == "lost"))
        return out

    def sweep(self, limit: int = 1000) -> list[Neutralized]:
        """One sweep: neutralize up to ``limit`` due deadlines of each shard."""
        return self.neutralize_if_due(self.due(limit))

    def record_call(
        self,
        account_id: int,
        zone: str,
        fqdn: str,
        kind: str,
        extra: dict[str, str] | None = None,
        *,
        bump_serial: bool = True,
    ) -> tuple[list[str], list[str]]:
        """KEYS and ARGV of the record script (hbdns/lua/record.lua) for one admin transition: the
        account's shard's keys only (one slot), the zone apex in ARGV for the serial count."""
        shard = keys.shard_of(account_id)
        args: list[str] = [str(account_id), fqdn, kind, "1" if bump_serial else "0"]
        args += [str(self.events_maxlen), str(self.log_size), zone]
        for k, v in (extra or {}).items():
            args += [k, v]
        keys_ = [
            keys.events(shard),
            keys.account_log(account_id),
            keys.serials(shard),
            keys.stats(shard),
            keys.account(account_id),
        ]
        return keys_, args

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
        keys_, args = self.record_call(account_id, zone, fqdn, kind, extra, bump_serial=bump_serial)
        return scripts.RECORD(client or self.r, keys_, args)
