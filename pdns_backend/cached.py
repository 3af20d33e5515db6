"""Lookups answered through the answer cache (:mod:`pdns_backend.answer_cache`), for both transports.

A batch first reads the invalidations that have arrived (:meth:`Tracker.drain`, one non-blocking
poll), then serves what the cache holds and is still true, and asks Redis for the rest in one round
trip (:meth:`Backend.lookup_reads`). What Redis answered goes into the cache only if nothing changed
meanwhile (:attr:`Tracker.epoch` unchanged: an invalidation handled while the read was in flight
may have been for it) and the connection it was read on is tracked.

Read-your-writes: a lookup that starts after a writer got Redis' reply to a key write sees it. Redis
queues the invalidation while it runs the write and sends it, in the same pass of its event loop
and before any later command is read, to the invalidation connection; the drain at the start of
the batch reads it from this process' socket buffer. Measured on 7.0.15: the notice of a key write
was already readable when the writer had the reply in 300 of 300 tries (raw sockets, a zero-timeout
poll), 5,000 of 5,000 in-process and 13,000 of 13,000 through pdns
(``tests/e2e/test_answer_cache.py``); a writer also purges pdns in between. The exception is a
``FLUSHALL``/``FLUSHDB``, whose notice left after the reply in 267 of 300 tries: a flush drops the
cache when its notice arrives, milliseconds later (flushes are for tests and disasters, not writers).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from pdns_backend.answer_cache import AnswerCache, Entry, Key
from pdns_backend.answers import normalise, result_json
from pdns_backend.metrics import result_kind
from pdns_backend.tracking import Tracker
from pdns_backend.zones import ZoneEntry

if TYPE_CHECKING:
    from pdns_backend.backend import Backend, BackendError, Read


_NO_ZONE = ZoneEntry(None, 0, False)  # in place of the zone in a kept Read (see CachedLookups._expired)


class CachedLookups:
    """:meth:`bodies`: the cached form of :meth:`Backend.lookup_bodies`."""

    def __init__(self, backend: Backend, cache: AnswerCache, tracker: Tracker) -> None:
        self.backend = backend
        self.cache = cache
        self.tracker = tracker

    def bodies(self, queries: Sequence[tuple[str, str]]) -> list[bytes | BackendError]:
        backend, cache, tracker = self.backend, self.cache, self.tracker
        started = time.perf_counter()
        try:
            zones, apexes = backend.zones.snapshot()
        except Exception as exc:
            backend.count(["error"] * len(queries), started)
            return [backend.zone_failure(exc)] * len(queries)
        out: list[Any] = [None] * len(queries)
        kinds: list[str] = [""] * len(queries)
        todo: list[int] = []
        wanted: list[Key] = []
        with tracker.lock:
            tracker.drain()
            epoch = tracker.epoch
            now = time.monotonic()
            for i, (qname, qtype) in enumerate(queries):
                key = (normalise(qname), qtype)
                wanted.append(key)
                e = cache.get(key)
                if e is not None:
                    z = zones.get(e.apex)
                    if (
                        z is not None
                        and z.rev == e.zone_rev
                        and e.apexes == apexes
                        and (e.serial < 0 or z.serial == e.serial)
                    ):
                        if now >= e.deadline:
                            e = self._expired(key, e, now, z)
                        out[i] = e.body
                        kinds[i] = e.kind
                        continue
                    cache.discard(key)
                todo.append(i)
            cache.stats.hits += len(queries) - len(todo)
            cache.stats.misses += len(todo)
        if not todo:
            backend.count(kinds, started)
            return out
        t0 = time.monotonic()  # before the read: a deadline from its PTTL errs early, never late
        results = backend.lookup_reads([queries[i] for i in todo], zones)
        readers = backend.accounts.connections()
        with tracker.lock:
            keep = tracker.epoch == epoch
            tracked = keep and all(tracker.tracked(reader) for reader in readers)
            for i, (result, read, kind) in zip(todo, results, strict=True):
                kinds[i] = kind
                if isinstance(result, BaseException):
                    out[i] = result
                    continue
                out[i] = data = _body(result)
                if not keep or read is None or (not tracked and _asked(read)):
                    continue
                deadlines = tuple(
                    t0 + ttl / 1000 if ttl >= 0 and read.live & (1 << bit) else math.inf
                    for bit, ttl in enumerate(read.ttls)
                )
                cache.put(wanted[i], _entry(data, read, apexes, deadlines, kind))
        backend.count(kinds, started)
        return out

    def _expired(self, key: Key, e: Entry, now: float, zone: ZoneEntry) -> Entry:
        """The entry after its deadline: the answer with the liveness bits whose time is up taken
        away (what the lookup script would read now), cached until the next deadline. ``zone`` is
        the current entry of the same revision (entries keep no zone of their own: a serial bump
        makes a new one every reload, and old ones must not pile up in the cache)."""
        read, deadlines = e.redo
        read = read._replace(entry=zone)
        live = read.live
        for bit, deadline in enumerate(deadlines):
            if now >= deadline:
                live &= ~(1 << bit)
        result = self.backend.records(read, live)
        later = tuple(d if live & (1 << bit) else math.inf for bit, d in enumerate(deadlines))
        kind = result_kind(read.account, live, result)
        fresh = _entry(_body(result or False), read._replace(live=live), e.apexes, later, kind)
        self.cache.put(key, fresh)
        self.cache.stats.expiries += 1
        return fresh


def _asked(read: Read) -> bool:
    """Whether the answer was read from Redis (tracked keys), not from the zone alone."""
    return read.q != read.apex or read.entry.apex_account


def _entry(data: bytes, read: Read, apexes: int, deadlines: tuple[float, ...], kind: str) -> Entry:
    return Entry(
        body=data,
        apex=read.apex,
        zone_rev=read.entry.rev,
        serial=read.entry.serial if read.q == read.apex else -1,
        account=read.account_id,
        deadline=min(deadlines, default=math.inf),
        apexes=apexes,
        kind=kind,
        redo=(read._replace(entry=_NO_ZONE), deadlines),
    )


def _body(result: Any) -> bytes:
    return result_json(result).encode()
