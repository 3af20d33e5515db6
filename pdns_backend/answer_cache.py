"""The backend's in-process answer cache: the encoded reply per (name, qtype), kept true by Redis.

pdns' own 1 s caches send every name back to the backend each second; without this cache each of
those lookups cost a Redis round trip (docs/performance.md). An entry is the reply ready to send
(``{"result": ...}`` bytes), so a hit costs the request's parsing and a dict lookup. It stays exact:

- **Writes**: the account keys a lookup read are tracked by Redis (:mod:`pdns_backend.tracking`);
  when Redis reports one changed, the account's entries go (:meth:`AnswerCache.invalidate`). A
  report about any other key (the name index, a flush) drops everything.
- **Expiry**: a live answer carries the moment its ``alive`` key expires (its PTTL, read in the same
  script as the answer, so clocks need not agree) and is not served past it: from then on the entry
  answers what Redis would, the neutral answer made from the same account data
  (:meth:`AnswerCache.get` hands the entry back for that).
- **Zone configuration** stays what it was, at most ``zone_max_age`` old: an entry records the
  zone's revision (:class:`~pdns_backend.zones.ZoneEntry`) and is not served once it changed.
- **Read-your-writes**: pending invalidations are read (one non-blocking poll) before every batch
  is answered from the cache, so a lookup that starts after a writer got Redis' reply sees the
  write (why, and the one exception: :mod:`pdns_backend.cached`).

Bounded: least recently used entries go beyond ``max_entries``. :class:`CacheStats` counts hits,
misses, invalidations, drops and evictions for the metrics.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import asdict, dataclass
from typing import Any, NamedTuple

from hbdns import keys

Key = tuple[str, str]  # (normalised qname, qtype as asked)


class Entry(NamedTuple):
    body: bytes
    apex: str
    zone_rev: int  # ZoneEntry.rev when read
    serial: int  # the zone's serial for an apex answer (it carries the SOA), else -1
    account: int  # account id the answer was read from, else -1
    deadline: float  # monotonic time the answer stops being what Redis would say (inf: never)
    apexes: int  # ZoneCache.apexes_rev when read (a zone added below the apex moves names)
    kind: str = "zone"  # the answer's result for the metrics (pdns_backend.metrics.RESULTS)
    redo: Any = None  # what the answer after ``deadline`` is made from (pdns_backend.backend)


@dataclass
class CacheStats:
    """Counters since start (plain ints: the metrics exporter reads them)."""

    hits: int = 0
    misses: int = 0
    invalidations: int = 0  # entries dropped because Redis reported a key of theirs changed
    flushes: int = 0  # whole-cache drops (a connection lost or made, a flush, the name index)
    evictions: int = 0  # entries dropped for room
    expiries: int = 0  # cached live answers turned neutral at their alive key's expiry

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


class AnswerCache:
    """Entries by key, least recently used first, and the keys of each account's entries."""

    def __init__(self, max_entries: int = 100_000) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be >= 1")
        self.max_entries = max_entries
        self.stats = CacheStats()
        self._entries: OrderedDict[Key, Entry] = OrderedDict()
        self._by_account: dict[int, set[Key]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def get(self, key: Key) -> Entry | None:
        entry = self._entries.get(key)
        if entry is not None:
            self._entries.move_to_end(key)
        return entry

    def put(self, key: Key, entry: Entry) -> None:
        old = self._entries.pop(key, None)
        if old is not None:
            self._unindex(key, old)
        self._entries[key] = entry
        if entry.account >= 0:
            self._by_account.setdefault(entry.account, set()).add(key)
        while len(self._entries) > self.max_entries:
            k, e = self._entries.popitem(last=False)
            self._unindex(k, e)
            self.stats.evictions += 1

    def discard(self, key: Key) -> None:
        old = self._entries.pop(key, None)
        if old is not None:
            self._unindex(key, old)

    def invalidate(self, changed: list[str] | None) -> None:
        """Redis reported ``changed`` keys (None: everything, e.g. FLUSHALL)."""
        if changed is None:
            self.clear()
            return
        for name in changed:
            account = keys.parse_account_key(name)
            if account is None:  # a name index (global or a shard's: every entry read one) or a key we never read
                self.clear()
                return
            for key in self._by_account.pop(account, ()):
                if self._entries.pop(key, None) is not None:
                    self.stats.invalidations += 1

    def clear(self) -> None:
        if self._entries:
            self._entries.clear()
            self._by_account.clear()
        self.stats.flushes += 1

    def _unindex(self, key: Key, entry: Entry) -> None:
        if entry.account >= 0:
            ids = self._by_account.get(entry.account)
            if ids is not None:
                ids.discard(key)
                if not ids:
                    del self._by_account[entry.account]
