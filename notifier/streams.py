"""One consumer group over every shard's event stream: read, acknowledge, claim, per shard.

The transitions of an account go to its shard's stream (:func:`hbdns.keys.events`), so a reader
of "the events" reads :data:`hbdns.keys.SHARDS` streams, each with the same group name (created on
each). Entries come back as :class:`Entry` (shard, entry id, fields); an event's id is
``<shard>/<entry id>`` (:func:`hbdns.event_streams.event_id`). Both the notifier's consumer
(notifier/consumer.py) and the recovery flush (notifier/flush.py) read through this.

How the new entries are read, without adding latency per event under load:

- Standalone Redis: one ``XREADGROUP ... BLOCK <ms> STREAMS <16 streams> > ...`` wakes up as soon
  as any shard gets an entry. One round trip per batch, as with one stream.
- Redis Cluster (:func:`hbdns.connection.is_cluster`): a command may name keys of one slot only,
  so no single call can wait on all shards. Each read sends a non-blocking ``XREADGROUP`` per
  shard in one pipeline (redis-py's cluster pipeline: one round trip per primary, each command
  sent to its shard's primary directly: redis-py would otherwise ask a node ``COMMAND GETKEYS``
  for every XREADGROUP); only when all are empty does it wait, :data:`CLUSTER_POLL_MS`, and then
  returns (the caller's loop reads again). Under load every read returns data at once and no
  event waits; an event on an idle system waits at most that pause. The pause is a client-side
  sleep, not ``BLOCK`` on one shard: a Redis node with nothing to do ends a short ``BLOCK`` only at
  its next cron tick (``hz`` 10: up to 100 ms late). One blocking reader thread per shard would
  wake at once, but puts 16 threads and connections per group into a process whose loops are
  small step functions. Figures (bench/shard_read_latency.py) are in docs/notifications.md.

A consumer's own unacknowledged entries (a restart under the same name, entries it took over) are
re-read (``0`` instead of ``>``) per shard until that shard has none left.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from typing import Any, NamedTuple

import redis

from hbdns import event_streams, keys
from hbdns.connection import is_cluster

CLUSTER_POLL_MS = 50  # the pause of a per-shard read that found nothing (Cluster)
MIN_PER_STREAM = 16  # entries one read takes from one shard at least


class Entry(NamedTuple):
    shard: int
    entry_id: str
    fields: dict[str, str]  # empty for an entry trimmed from the stream while pending

    @property
    def event_id(self) -> str:
        return event_streams.event_id(self.shard, self.entry_id, self.fields)


def _nogroup(exc: BaseException) -> bool:
    return isinstance(exc, redis.ResponseError) and "NOGROUP" in str(exc)


class ShardStreams:
    """``group``'s reads of every shard stream as consumer ``name``; ``start_id`` is where the
    group starts on a stream that has none yet (``0``: everything, ``$``: new entries only)."""

    def __init__(
        self,
        r: redis.Redis,
        group: str,
        name: str,
        *,
        start_id: str = "0",
        batch: int = 200,
        per_shard: bool | None = None,
    ) -> None:
        self.r: Any = r
        self.group = group
        self.name = name
        self.start_id = start_id
        self.shards = tuple(keys.all_shards())
        self.streams = {s: keys.events(s) for s in self.shards}
        self._shard_of = {v: s for s, v in self.streams.items()}
        # a batch is spread over the shards: about ``batch`` entries per read when all are busy
        self.count = max(MIN_PER_STREAM, -(-batch // len(self.shards)))
        self.per_shard = is_cluster(r) if per_shard is None else per_shard
        self._ready = False
        self._own = set(self.shards)  # shards whose own pending entries are to be re-read (reader thread)
        self._claimed: set[int] = set()  # shards where a takeover (another thread) gave us entries
        self._lock = threading.Lock()
        self.poll_ms = CLUSTER_POLL_MS
        self._routed = is_cluster(r)  # name each command's node (Cluster client only)

    # --- the group ------------------------------------------------------------------------------

    def ensure_group(self) -> None:
        """Create the group on every shard stream that lacks it (and the stream if missing)."""
        pipe = self.r.pipeline(transaction=False)
        for stream in self.streams.values():
            pipe.xgroup_create(stream, self.group, id=self.start_id, mkstream=True)
        for reply in pipe.execute(raise_on_error=False):
            if isinstance(reply, Exception) and "BUSYGROUP" not in str(reply):
                raise reply
        self._ready = True

    def lost(self) -> None:
        """A stream or its group is gone (Redis without persistence restarted): create them again
        on the next read and re-read everything of ours."""
        self._ready = False
        self.mark_own(self.shards)

    def mark_own(self, shards: Iterable[int]) -> None:
        """We hold unacknowledged entries in ``shards`` (taken over, or read and not acknowledged
        before a connection error): the next read returns them first. Any thread."""
        with self._lock:
            self._claimed.update(shards)

    # --- reading --------------------------------------------------------------------------------

    def read(self, block_ms: int) -> list[Entry]:
        """Our own unacknowledged entries if there are any, else new ones (waiting up to
        ``block_ms``; 0: not at all)."""
        if not self._ready:
            self.ensure_group()
        with self._lock:
            self._own |= self._claimed
            self._claimed.clear()
        try:
            if self._own:
                own = sorted(self._own)
                entries = self._poll(own, "0")
                counts = {s: 0 for s in own}
                for e in entries:
                    counts[e.shard] += 1
                self._own = {s for s, n in counts.items() if n >= self.count}  # a full read: maybe more
                if entries:
                    return entries
            if not self.per_shard:
                return self._call({s: ">" for s in self.shards}, block_ms if block_ms > 0 else None)
            entries = self._poll(self.shards, ">")
            if entries or block_ms <= 0:
                return entries
            time.sleep(min(block_ms, self.poll_ms) / 1000)
            return self._poll(self.shards, ">")
        except redis.ResponseError as exc:
            if _nogroup(exc):
                self.lost()
                return []
            raise

    def _poll(self, shards: Iterable[int], start: str) -> list[Entry]:
        """A non-blocking read of ``shards`` at ``start``: one call on a standalone Redis, one per
        shard (pipelined) on a Cluster."""
        shard_list = list(shards)
        if not self.per_shard:
            return self._call({s: start for s in shard_list}, None)
        pipe = self.r.pipeline(transaction=False)
        for s in shard_list:
            stream = self.streams[s]
            args = ("XREADGROUP", "GROUP", self.group, self.name, "COUNT", self.count, "STREAMS", stream, start)
            if self._routed:
                pipe.execute_command(*args, target_nodes=self.r.get_node_from_key(stream))
            else:
                pipe.execute_command(*args)
        out: list[Entry] = []
        for reply in pipe.execute(raise_on_error=False):
            if isinstance(reply, Exception):
                raise reply
            out += self._entries(reply)
        return out

    def _call(self, starts: dict[int, str], block_ms: int | None) -> list[Entry]:
        reply = self.r.xreadgroup(
            self.group, self.name, {self.streams[s]: v for s, v in starts.items()}, count=self.count, block=block_ms
        )
        return self._entries(reply)

    def _entries(self, reply: Any) -> list[Entry]:
        if isinstance(reply, dict):  # RESP3
            reply = list(reply.items())
        out: list[Entry] = []
        for stream, items in reply or []:
            shard = self._shard_of[stream.decode() if isinstance(stream, bytes) else str(stream)]
            for entry_id, fields in items:
                out.append(Entry(shard, _text(entry_id), {_text(k): _text(v) for k, v in (fields or {}).items()}))
        return out

    # --- acknowledging --------------------------------------------------------------------------

    def ack(self, pipe: Any, entries: Iterable[Entry]) -> None:
        """XACK ``entries`` in ``pipe``, one command per shard stream."""
        by_shard: dict[int, list[str]] = {}
        for e in entries:
            by_shard.setdefault(e.shard, []).append(e.entry_id)
        for shard, ids in sorted(by_shard.items()):
            pipe.xack(self.streams[shard], self.group, *ids)

    # --- taking over ----------------------------------------------------------------------------

    def autoclaim(self, min_idle_ms: int) -> list[Entry]:
        """Take the entries idle at least ``min_idle_ms`` in every shard (whoever held them): they
        are ours now, returned and re-read by the next :meth:`read` until acknowledged."""
        out: list[Entry] = []
        try:
            for shard in self.shards:
                cursor = "0-0"
                while True:
                    # not JUSTID: redis-py drops the cursor from that reply
                    reply = self.r.xautoclaim(
                        self.streams[shard], self.group, self.name, min_idle_ms, start_id=cursor, count=self.count
                    )
                    cursor = _text(reply[0])
                    out += [
                        Entry(shard, _text(i), {_text(k): _text(v) for k, v in (f or {}).items()}) for i, f in reply[1]
                    ]
                    if cursor == "0-0":
                        break
        except redis.ResponseError as exc:
            if _nogroup(exc):
                self.lost()
                return out
            raise
        self.mark_own({e.shard for e in out})
        return out

    def consumers(self) -> dict[int, list[dict[str, Any]]]:
        """Each shard's consumers of the group (XINFO CONSUMERS, pipelined)."""
        pipe = self.r.pipeline(transaction=False)
        for stream in self.streams.values():
            pipe.xinfo_consumers(stream, self.group)
        out: dict[int, list[dict[str, Any]]] = {}
        for shard, reply in zip(self.shards, pipe.execute(raise_on_error=False), strict=True):
            if isinstance(reply, Exception):
                if _nogroup(reply):
                    self.lost()
                    continue
                raise reply
            out[shard] = list(reply)
        return out

    def claim_from(self, dead: frozenset[str], min_idle_ms: int) -> int:
        """Take over what the consumers named ``dead`` hold, in every shard; how many entries."""
        taken: dict[int, int] = {}
        for shard, consumers in self.consumers().items():
            for c in consumers:
                if _text(c["name"]) in dead and int(c["pending"]) > 0:
                    taken[shard] = taken.get(shard, 0) + self._claim(shard, _text(c["name"]), min_idle_ms)
        self.mark_own(s for s, n in taken.items() if n)
        return sum(taken.values())

    def _claim(self, shard: int, consumer: str, min_idle_ms: int) -> int:
        stream, taken = self.streams[shard], 0
        while True:
            pending = self.r.xpending_range(
                stream, self.group, min="-", max="+", count=self.count, consumername=consumer
            )
            ids: list[Any] = [p["message_id"] for p in pending]
            if not ids:
                return taken
            got = self.r.xclaim(stream, self.group, self.name, min_idle_ms, ids, justid=True)
            taken += len(got)
            if len(got) < len(ids):  # someone else is taking this consumer's entries too
                return taken

    def tidy(self, stale_ms: int) -> int:
        """Remove other consumers with nothing pending, idle ``stale_ms``, from every shard's group."""
        pipe = self.r.pipeline(transaction=False)
        n = 0
        for shard, consumers in self.consumers().items():
            for c in consumers:
                if _text(c["name"]) != self.name and int(c["pending"]) == 0 and int(c["idle"]) > stale_ms:
                    pipe.xgroup_delconsumer(self.streams[shard], self.group, _text(c["name"]))
                    n += 1
        if n:
            pipe.execute()
        return n


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
