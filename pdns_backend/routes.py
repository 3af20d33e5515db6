"""The lookup's calls on Redis Cluster: one script call per shard, batched per primary.

Redis Cluster refuses a script call whose keys are in more than one slot, and each shard's keys are
one slot (``{s:<shard>}``, :mod:`hbdns.keys`). So :class:`ShardCalls` splits a batch of candidates
by shard, asks the router (``hbdns.cluster_route.ClusterRouter``, :class:`Router` here) for the
primary owning each shard's slot, sends every call for a primary on its connection at once, and
then reads them all: one round trip per primary involved, in parallel, rather than per shard.

A connection error, or a MOVED/ASK/TRYAGAIN/CLUSTERDOWN reply (a slot moved: a failover or a
resharding), makes the router read the slot map again and the whole batch is sent once more (the
lookup only reads); the answer cache is dropped then, since the keys it was read from may now be
tracked on another primary. Standalone Redis and Sentinel never come here: they keep their single
connection (:class:`~pdns_backend.accounts.AccountReader`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

import redis

from hbdns import keys, scripts
from hbdns.resp import BatchConnection, ConnectionLost
from pdns_backend.tracking import Tracker

Parts = tuple[str, int, bytes, bytes]  # a name's candidate: account id, shard, its KEYS, its ARGV

_REROUTE = (redis.exceptions.AskError, redis.exceptions.TryAgainError, redis.exceptions.ClusterDownError)


class Router(Protocol):
    """What the lookup needs of ``hbdns.cluster_route.ClusterRouter`` (docs: /work/wt/SHARDS.md)."""

    def connection(self, slot_or_key: int | str) -> BatchConnection: ...

    def refresh(self) -> None: ...


class Rerouted(ConnectionLost):
    """A slot is served elsewhere now (MOVED, ASK, ...), or still after a refresh of the slot map."""


class ShardCalls:
    """One thread's calls through its own router (connections are not shared between threads)."""

    def __init__(
        self,
        router: Router,
        script: scripts.Script,
        encode: Callable[[Sequence[Parts]], bytes],
        tracker: Tracker | None = None,
    ) -> None:
        self.router = router
        self.script = script
        self.encode = encode
        self.tracker = tracker
        self.used: tuple[BatchConnection, ...] = ()  # connections read since begin()

    def begin(self) -> None:
        """A new lookup batch: :attr:`used` starts empty."""
        self.used = ()

    def single(self, key: str, payload: bytes) -> Any:
        """One command on the primary owning ``key``; an error reply raises."""
        return self._twice(lambda: self._single(key, payload))

    def confirm(self, items: Sequence[Parts]) -> list[Any]:
        """The lookup script's reply for each candidate, one call per shard."""
        return self._twice(lambda: self._confirm(items))

    def _twice(self, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except ConnectionLost:
            self._reroute()
            return fn()

    def _reroute(self) -> None:
        self.router.refresh()
        if self.tracker is not None:
            with self.tracker.lock:
                self.tracker.flush()

    def _conn(self, key: str) -> BatchConnection:
        conn = self.router.connection(key)
        if conn not in self.used:
            self.used = (*self.used, conn)
        if self.tracker is not None:
            if self.tracker.attach not in conn.on_connect:
                conn.on_connect.append(self.tracker.attach)
            self.tracker.ensure(conn)
        return conn

    def _single(self, key: str, payload: bytes) -> Any:
        reply = self._conn(key).roundtrip(payload, 1)[0]
        if isinstance(reply, _REROUTE):
            raise Rerouted(str(reply))
        if isinstance(reply, redis.ResponseError):
            raise reply
        return reply

    def _confirm(self, items: Sequence[Parts]) -> list[Any]:
        by_shard: dict[int, list[int]] = {}
        for i, p in enumerate(items):
            by_shard.setdefault(p[1], []).append(i)
        # per primary: its connection and its calls (the candidates' indices, the payload)
        nodes: dict[int, tuple[BatchConnection, list[tuple[list[int], bytes]]]] = {}
        for shard, idx in by_shard.items():
            conn = self._conn(keys.shard_names(shard))
            nodes.setdefault(id(conn), (conn, []))[1].append((idx, self.encode([items[i] for i in idx])))
        out: list[Any] = [None] * len(items)
        try:
            for conn, calls in nodes.values():
                conn.send(b"".join(p for _, p in calls), len(calls))
            for conn, calls in nodes.values():
                replies = conn.read(len(calls))
                if any(scripts.is_noscript(x) for x in replies):
                    replies = self.script.rerun(conn, [p for _, p in calls])
                for (idx, _payload), reply in zip(calls, replies, strict=True):
                    if isinstance(reply, _REROUTE):
                        raise Rerouted(str(reply))
                    if isinstance(reply, redis.ResponseError):
                        raise reply
                    if type(reply) is not list or len(reply) != len(idx):
                        raise redis.ResponseError(f"lookup script answered {reply!r:.200}")
                    for i, x in zip(idx, reply, strict=True):
                        out[i] = x
        except BaseException:
            for conn, _calls in nodes.values():
                if conn.inflight:
                    conn.close()  # replies left unread would be taken for the next call's
            raise
        return out
