"""Zone configuration held in-process: every zone's parsed view, at most ``max_age`` seconds old.

Zone configuration (SOA with its serial, NS, static records, neutral addresses) changes rarely and
pdns asks for the apex on every query, so the backend keeps it for at most ``zone_max_age`` (1 s)
instead of reading it per lookup. The account part of an answer is never held here.

Each zone's empty non-terminals (:mod:`hbdns.ents`) are held here too: those above static records
from the parsed view, those above account names from the zone's index, which is read again only
when its revision changed, so a lookup never pays a round trip for them.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import redis

from hbdns import ents, keys, zone_serial
from hbdns.logs import RateLimitedLog
from pdns_backend import answers

log = logging.getLogger(__name__)


STEP = 4  # items per zone in read_zones' flat list


def read_zones(r: redis.Redis) -> list[Any]:
    """Every listed zone as a flat ``[apex, ZONE_FIELDS values, account at apex (0/1), index revision, ...]``,
    the ``serial`` value being the zone's SOA serial (:mod:`hbdns.zone_serial`: the hash's own plus
    every shard's count, read in the same pipeline with one HMGET per shard for all zones).

    Two round trips (the zone list, then one pipeline over it), once per ``max_age``: a zone removed
    in between reads as a gone hash (skipped), one added in between is seen at the next reload."""
    apexes = sorted(str(z) for z in r.smembers(keys.zones()))
    if not apexes:
        return []
    pipe = r.pipeline(transaction=False)
    for apex in apexes:
        pipe.hmget(keys.zone(apex), list(answers.ZONE_FIELDS))
        pipe.hexists(keys.names(), apex)
        pipe.hget(keys.zone_ents(apex), ents.REV_FIELD)
    for shard in keys.all_shards():
        pipe.hmget(keys.serials(shard), apexes)
    replies = pipe.execute()
    counts = replies[3 * len(apexes) :]
    flat: list[Any] = []
    for n, apex in enumerate(apexes):
        serial = zone_serial.sum_serial([replies[3 * n][0], *(c[n] for c in counts)])
        raw = with_serial(replies[3 * n], serial)
        flat += [apex, raw, 1 if replies[3 * n + 1] else 0, replies[3 * n + 2] or ""]
    return flat


def with_serial(raw: list[Any], serial: int) -> list[Any]:
    """A zone hash's ZONE_FIELDS values with ``serial`` (the SOA serial) in place of its own; a gone
    hash (all None) stays gone."""
    if all(v is None for v in raw) or (raw[0] is None and serial == 0):
        return raw
    return [str(serial), *raw[1:]]


def read_ents(r: redis.Redis, apexes: list[str]) -> dict[str, frozenset[str]]:
    """The non-terminal index of each zone in ``apexes``, one pipeline."""
    pipe = r.pipeline(transaction=False)
    for apex in apexes:
        pipe.hgetall(keys.zone_ents(apex))
    return {apex: ents.parse(raw) for apex, raw in zip(apexes, pipe.execute(), strict=True)}


def static_ents(view: answers.ZoneView) -> frozenset[str]:
    """The names between the zone's static records and its apex."""
    return frozenset(ents.counts(view.static, view.apex))


@dataclass(frozen=True)
class ZoneEntry:
    view: answers.ZoneView | None  # None: the zone's hash could not be parsed (its names SERVFAIL)
    serial: int
    apex_account: bool  # an account owns the apex name itself: apex lookups must ask Redis too
    ents: frozenset[str] = frozenset()  # names that exist with nothing at them (NODATA, not NXDOMAIN)
    rev: int = 0  # changes with anything answers are made of but the serial (the answer cache's check)


class ZoneCache:
    """Every zone's parsed configuration, at most ``max_age`` seconds old.

    A reload reads all zones; a zone whose hash did not change keeps its parsed view. The thread
    that finds the cache stale reloads it while the others wait (once per ``max_age``).
    :attr:`apexes_rev` changes when the set of zones does, each entry's ``rev`` when anything but
    its serial does (the serial moves with every account change), so the answer cache
    (:mod:`pdns_backend.answer_cache`) keeps answers of names below the apex across those.
    """

    def __init__(
        self,
        load: Callable[[], list[Any]],
        max_age: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        load_ents: Callable[[list[str]], dict[str, frozenset[str]]] | None = None,
    ):
        self._errors = RateLimitedLog(log, 60.0)
        self._load = load
        self._load_ents = load_ents
        self._ents: dict[str, tuple[str, frozenset[str]]] = {}  # apex -> (revision, index)
        self.max_age = max_age
        self._clock = clock
        self._lock = threading.Lock()
        self._zones: dict[str, ZoneEntry] = {}
        self._raw: dict[str, tuple[str | None, ...]] = {}
        self._loaded = float("-inf")
        self._revs: dict[str, tuple[Any, int]] = {}  # apex -> (what its rev stands for, rev)
        self._next_rev = 0
        self.apexes_rev = 0
        self._snap: tuple[dict[str, ZoneEntry], int] = ({}, 0)

    def snapshot(self) -> tuple[dict[str, ZoneEntry], int]:
        """(zones, apexes_rev) of one reload, together (:meth:`get` first)."""
        self.get()
        return self._snap

    def get(self) -> dict[str, ZoneEntry]:
        if self._clock() - self._loaded < self.max_age:
            return self._zones
        with self._lock:
            if self._clock() - self._loaded >= self.max_age:
                self.store(self._load())
            return self._zones

    def _account_ents(self, flat: list[Any]) -> dict[str, frozenset[str]]:
        """Each zone's non-terminal index, read again only for zones whose revision changed."""
        revs = {flat[i]: str(flat[i + 3]) for i in range(0, len(flat), STEP)}
        stale = sorted(a for a, rev in revs.items() if self._ents.get(a, ("-", frozenset()))[0] != rev)
        if stale and self._load_ents is not None:
            fresh = self._load_ents(stale)
            for apex in stale:
                self._ents[apex] = (revs[apex], fresh.get(apex, frozenset()))
        self._ents = {a: self._ents[a] for a in revs if a in self._ents}
        return {a: v[1] for a, v in self._ents.items()}

    def store(self, flat: list[Any]) -> dict[str, ZoneEntry]:
        """Install a fresh reload (:func:`read_zones`' flat list); returns the new zone map."""
        now = self._clock()
        zones: dict[str, ZoneEntry] = {}
        raws: dict[str, tuple[str | None, ...]] = {}
        account_ents = self._account_ents(flat)
        for i in range(0, len(flat), STEP):
            apex, raw, apex_account = flat[i], tuple(flat[i + 1]), int(flat[i + 2]) == 1
            index = account_ents.get(apex, frozenset())
            rev = self._rev(apex, (raw[1:], apex_account, index))  # raw[0]: the serial
            old = self._zones.get(apex)
            if old is not None and self._raw.get(apex) == raw:
                if old.view is not None and (old.ents != index | static_ents(old.view) or old.rev != rev):
                    old = replace(old, ents=index | static_ents(old.view), rev=rev)
                zones[apex], raws[apex] = old, raw
                continue
            try:
                view = answers.parse_zone(apex, raw)
            except Exception as exc:  # one bad zone must not take the others down
                self._errors.log(logging.ERROR, f"zone:{apex}", "zone data unusable", zone=apex, error=repr(exc))
                zones[apex], raws[apex] = ZoneEntry(None, 0, apex_account, rev=rev), raw
                continue
            if view is None:  # listed but its hash is gone (being removed)
                continue
            zones[apex], raws[apex] = ZoneEntry(view, view.serial, apex_account, index | static_ents(view), rev), raw
        if zones.keys() != self._zones.keys():
            self.apexes_rev += 1
        self._revs = {a: self._revs[a] for a in zones if a in self._revs}
        self._zones, self._raw, self._loaded = zones, raws, now
        self._snap = (zones, self.apexes_rev)
        return zones

    def _rev(self, apex: str, shape: Any) -> int:
        prev = self._revs.get(apex)
        if prev is not None and prev[0] == shape:
            return prev[1]
        self._next_rev += 1
        self._revs[apex] = (shape, self._next_rev)
        return self._next_rev


def find_apex(name: str, zones: Mapping[str, Any]) -> str | None:
    """The longest apex that ``name`` is in (or equals), else None."""
    while True:
        if name in zones:
            return name
        dot = name.find(".")
        if dot < 0:
            return None
        name = name[dot + 1 :]
