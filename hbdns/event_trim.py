"""Trimming the ``events`` streams without dropping an event some consumer has not read (issue 20).

Writers append with a plain ``XADD`` (no ``MAXLEN``): a cap at write time trims whatever the
consumer groups have read, so a notifier down for a while, or 100,000 transitions at once, lost
events silently. Instead the sweeper's ``trim`` loop runs :meth:`EventTrimmer.step` every
``HBDNS_EVENTS_TRIM_INTERVAL`` seconds (``hbdns/lua/events_trim.lua``, atomic per call):

- it reads every consumer group on the stream, whatever its name (the notifier's, the MTA flush's),
  and the oldest id any of them still needs: its oldest pending (delivered, not acknowledged) entry,
  else the one after its last delivered entry. With no group at all every entry is needed (the first
  notifier reads the stream from its start);
- entries older than that are removed, oldest first, while the stream is longer than
  ``HBDNS_EVENTS_MAXLEN`` (so the newest ones stay for readers by id: ``hbdns notify retry`` of an
  old dead letter builds its message from its event);
- only past ``HBDNS_EVENTS_HARD_CAP`` entries (memory for a notifier down for days) are the oldest
  removed whatever the groups have read. Each removed entry some group had not acknowledged is
  counted (``keys.events_trim``: ``unread``, ``unread:<group>``), logged as an error and shown by
  ``hbdns status``: an operator alarm, never silent.

Each shard has its own stream (``keys.events(shard)``) and counters, in one slot: a script call
trims one shard. ``HBDNS_EVENTS_MAXLEN`` and ``HBDNS_EVENTS_HARD_CAP`` are for all streams
together (the hard cap is a memory bound), so each shard keeps its share (:func:`per_shard`;
accounts spread evenly over shards, so do their transitions). Status and metrics sum the shards.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import redis

from hbdns import keys, scripts
from hbdns.logs import RateLimitedLog

log = logging.getLogger(__name__)

CHUNK = 10_000  # entries one script call may remove (bounds how long it holds Redis)
MAX_ROUNDS = 100  # script calls per step at most (a first run over a long stream continues next step)
WARN_SHARE = 0.5  # past this share of its hard cap a shard's stream length is logged as a warning


def per_shard(total: int) -> int:
    """One shard's share of a length setting for all streams (rounded up, at least 1)."""
    return max(1, -(-total // keys.SHARDS))


class TrimResult(NamedTuple):
    removed: int = 0  # entries every group had acknowledged
    capped: int = 0  # entries removed at the hard cap
    unread: int = 0  # of those, entries some group had not acknowledged
    length: int = 0  # the stream's length afterwards


class EventTrimmer:
    """The trim step bound to one Redis client; any number of sweepers may run it at once. ``keep``
    and ``cap`` are per shard's stream (:func:`per_shard` of the settings)."""

    def __init__(
        self,
        r: redis.Redis,
        *,
        keep: int,
        cap: int,
        chunk: int = CHUNK,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if cap < keep:
            raise ValueError("the hard cap must not be below the length kept")
        self.r = r
        self.keep = keep
        self.cap = cap
        self.chunk = chunk
        self.clock = clock
        self._alarms = RateLimitedLog(log, 10.0)

    def step(self) -> TrimResult:
        """Trim what may go now in every shard's stream; returns what was removed, summed over the
        shards (``length``: their total length afterwards)."""
        total, longest = TrimResult(), 0
        for shard in keys.all_shards():
            res = self.shard_step(shard)
            total = TrimResult(*(a + b for a, b in zip(total, res, strict=True)))
            longest = max(longest, res.length)
        self._alarm(total, longest)
        return total

    def shard_step(self, shard: int) -> TrimResult:
        """Trim one shard's stream (its counters in ``keys.events_trim(shard)``, the same slot)."""
        removed = capped = unread = length = 0
        for _ in range(MAX_ROUNDS):
            args = [self.keep, self.cap, self.chunk, int(self.clock() * 1000)]
            raw = scripts.EVENTS_TRIM(self.r, [keys.events(shard), keys.events_trim(shard)], args)
            r, c, u, length = (int(x) for x in raw)
            removed, capped, unread = removed + r, capped + c, unread + u
            if r < self.chunk and c < self.chunk:
                break
        return TrimResult(removed, capped, unread, length)

    def _alarm(self, res: TrimResult, longest: int) -> None:
        if res.unread:
            self._alarms.log(
                logging.ERROR,
                "unread",
                "events stream at its hard cap: events removed before every consumer group read them",
                dropped_unread=res.unread,
                removed_at_cap=res.capped,
                hard_cap_per_shard=self.cap,
                length=res.length,
            )
        elif res.capped:
            self._alarms.log(logging.WARNING, "capped", "events stream at its hard cap", removed_at_cap=res.capped)
        elif longest > WARN_SHARE * self.cap:
            self._alarms.log(
                logging.WARNING,
                "long",
                "events stream is long: a consumer group lags (see hbdns status)",
                length=res.length,
                longest_shard=longest,
                hard_cap_per_shard=self.cap,
            )


def shard_statuses(r: redis.Redis) -> list[dict[str, Any]]:
    """Each shard's stream: its length, each group's lag, pending count and last delivered id, and
    what trimming it removed; two pipelined round trips for all shards."""
    pipe = r.pipeline(transaction=False)
    for shard in keys.all_shards():
        pipe.xlen(keys.events(shard))
        pipe.exists(keys.events(shard))
        pipe.hgetall(keys.events_trim(shard))
    flat = pipe.execute()
    there = [shard for shard in keys.all_shards() if flat[3 * shard + 1]]
    pipe = r.pipeline(transaction=False)
    for shard in there:
        pipe.xinfo_groups(keys.events(shard))
    infos = dict(zip(there, pipe.execute() if there else [], strict=True))
    out = []
    for shard in keys.all_shards():
        groups = []
        for g in infos.get(shard, []):
            lag = g.get("lag")
            groups.append(
                {
                    "name": str(g["name"]),
                    "pending": int(g["pending"]),
                    "lag": None if lag is None else int(lag),
                    "last_delivered": str(g["last-delivered-id"]),
                }
            )
        stats = {str(k): v for k, v in flat[3 * shard + 2].items()}
        out.append(
            {
                "shard": shard,
                "length": int(flat[3 * shard]),
                "groups": groups,
                "removed": int(stats.get("removed", 0)),
                "capped": int(stats.get("capped", 0)),
                "unread": int(stats.get("unread", 0)),
                "unread_by_group": {k.partition(":")[2]: int(v) for k, v in stats.items() if k.startswith("unread:")},
                "last_cap_ms": int(stats.get("last_cap_ms", 0)),
                "last_unread_ms": int(stats.get("last_unread_ms", 0)),
            }
        )
    return out


def stream_status(r: redis.Redis) -> dict[str, Any]:
    """The streams of every shard summed (for ``hbdns status`` and the metrics): total length, each
    group's lag (None while some shard's is unknown) and pending count, what trimming removed; the
    per-shard figures under ``shards``."""
    shards = shard_statuses(r)
    groups: dict[str, dict[str, Any]] = {}
    unread_by_group: dict[str, int] = {}
    for st in shards:
        for g in st["groups"]:
            agg = groups.setdefault(g["name"], {"name": g["name"], "pending": 0, "lag": 0})
            agg["pending"] += g["pending"]
            agg["lag"] = None if agg["lag"] is None or g["lag"] is None else agg["lag"] + g["lag"]
        for name, n in st["unread_by_group"].items():
            unread_by_group[name] = unread_by_group.get(name, 0) + n
    return {
        "length": sum(st["length"] for st in shards),
        "groups": [groups[name] for name in sorted(groups)],
        "removed": sum(st["removed"] for st in shards),
        "capped": sum(st["capped"] for st in shards),
        "unread": sum(st["unread"] for st in shards),
        "unread_by_group": unread_by_group,
        "last_cap_ms": max(st["last_cap_ms"] for st in shards),
        "last_unread_ms": max(st["last_unread_ms"] for st in shards),
        "shards": shards,
    }
