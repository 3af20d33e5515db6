"""The ingest mark: "beats can be stored now", written to Redis with Redis' clock.

Our own outages must not become customers' outages (issue 14). A beat that could not be stored
because Redis was down, or because no listener ran, is not a missed beat. So every listener, while
it can store beats (not pausing after a Redis failure), runs ``hbdns/lua/ingest_mark.lua`` every
:data:`MARK_EVERY` seconds. A silence of more than :data:`GAP_MS` since the last mark of any
listener is an ingest outage, recorded when marks resume (or seen as going on by the sweeper); the
sweeper then holds back the deadlines whose window overlaps it until ingest has been healthy for one
whole window, and the beat script records no outage for them (lib.lua ``ingest_hold``).

Every script that reads the marks touches one shard (one Redis Cluster slot), so each shard has its
copy (``keys.ingest(s)``) and a mark is one script call per shard: pipelined on a standalone Redis
(one round trip), one call each on Cluster (redis-py routes each to its primary).

The gap is wider than the mark's period by a margin for a listener briefly descheduled on a busy
host: a gap seen where there was none only delays an outage's record by one window, never
invents one.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import redis

from hbdns import keys, scripts
from hbdns.connection import is_cluster
from hbdns.logs import RateLimitedLog

log = logging.getLogger(__name__)

MARK_EVERY = 0.5  # seconds between two marks of one listener
GAP_MS = 2000  # a longer silence of every listener is an ingest outage (stored with each mark)


class IngestMark:
    """Marks every shard's ``keys.ingest(s)`` every :data:`MARK_EVERY` s while ``storing()`` says
    beats get stored."""

    def __init__(
        self,
        client: redis.Redis,
        storing: Callable[[], bool],
        *,
        keep_ms: int,
        every: float = MARK_EVERY,
        gap_ms: int = GAP_MS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.storing = storing
        self.keep_ms = keep_ms  # gaps are kept this long after they ended: the longest plan window
        self.every = every
        self.gap_ms = gap_ms
        self.clock = clock
        self.marks = 0
        self._next = 0.0
        self._log = RateLimitedLog(log, 10.0)

    def step(self) -> bool:
        """One mark if it is time and beats get stored; returns whether one was written."""
        now = self.clock()
        if now < self._next or not self.storing():
            return False
        self._next = now + self.every
        try:
            self._mark()
        except redis.RedisError as exc:
            self._log.log(logging.WARNING, "mark", "ingest mark failed", error=str(exc))
            return False
        self.marks += 1
        return True

    def _mark(self) -> None:
        args = [self.gap_ms, self.keep_ms]
        if is_cluster(self.client):
            for shard in keys.all_shards():
                scripts.INGEST_MARK(self.client, [keys.ingest(shard)], args)
            return
        pipe = self.client.pipeline(transaction=False)
        for shard in keys.all_shards():
            scripts.INGEST_MARK(pipe, [keys.ingest(shard)], args)
        pipe.execute()
