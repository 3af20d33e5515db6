"""Trimming the ``events`` stream without dropping an event some consumer has not read (issue 20).

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
WARN_SHARE = 0.5  # past this share of the hard cap the stream's length is logged as a warning


class TrimResult(NamedTuple):
    removed: int = 0  # entries every group had acknowledged
    capped: int = 0  # entries removed at the hard cap
    unread: int = 0  # of those, entries some group had not acknowledged
    length: int = 0  # the stream's length afterwards


class EventTrimmer:
    """The trim step bound to one Redis client; any number of sweepers may run it at once."""

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
        """Trim what may go now; returns what was removed (summed over the script calls)."""
        removed = capped = unread = length = 0
        for _ in range(MAX_ROUNDS):
            args = [self.keep, self.cap, self.chunk, int(self.clock() * 1000)]
            raw = scripts.EVENTS_TRIM(self.r, [keys.events(), keys.events_trim()], args)
            r, c, u, length = (int(x) for x in raw)
            removed, capped, unread = removed + r, capped + c, unread + u
            if r < self.chunk and c < self.chunk:
                break
        if unread:
            self._alarms.log(
                logging.ERROR,
                "unread",
                "events stream at its hard cap: events removed before every consumer group read them",
                dropped_unread=unread,
                removed_at_cap=capped,
                hard_cap=self.cap,
                length=length,
            )
        elif capped:
            self._alarms.log(logging.WARNING, "capped", "events stream at its hard cap", removed_at_cap=capped)
        elif length > WARN_SHARE * self.cap:
            self._alarms.log(
                logging.WARNING,
                "long",
                "events stream is long: a consumer group lags (see hbdns status)",
                length=length,
                hard_cap=self.cap,
            )
        return TrimResult(removed, capped, unread, length)


def stream_status(r: redis.Redis) -> dict[str, Any]:
    """The stream's length, each group's lag and pending count, and what trimming removed (for ``hbdns status``)."""
    stream = keys.events()
    length = int(r.xlen(stream))
    groups: list[dict[str, Any]] = []
    if length or r.exists(stream):
        for g in r.xinfo_groups(stream):
            lag = g.get("lag")
            groups.append(
                {
                    "name": str(g["name"]),
                    "pending": int(g["pending"]),
                    "lag": None if lag is None else int(lag),
                    "last_delivered": str(g["last-delivered-id"]),
                }
            )
    stats = {str(k): v for k, v in r.hgetall(keys.events_trim()).items()}
    return {
        "length": length,
        "groups": groups,
        "removed": int(stats.get("removed", 0)),
        "capped": int(stats.get("capped", 0)),
        "unread": int(stats.get("unread", 0)),
        "unread_by_group": {k.partition(":")[2]: int(v) for k, v in stats.items() if k.startswith("unread:")},
        "last_cap_ms": int(stats.get("last_cap_ms", 0)),
        "last_unread_ms": int(stats.get("last_unread_ms", 0)),
    }
