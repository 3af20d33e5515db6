"""The lookup hot path: account fields and liveness for a batch of names, one Redis round trip.

Names are found in two steps (the sharded schema, :mod:`hbdns.keys`): the global name index
(:func:`hbdns.keys.names`) says which account, hence which shard, holds a name (the discovery); the
lookup script (``hbdns/lua/lookup.lua``) then confirms the name in that shard's own index
(:func:`hbdns.keys.shard_names`) in the same atomic step that reads the account's hash and which of
its per-family ``alive`` keys exist, so the live/neutral decision is made by Redis on every lookup,
exact at the moment a key expires, and a name moved or removed meanwhile is never answered from a
stale id. Every key the script reads is passed in KEYS (and on Redis Cluster all of one call are in
one shard's slot).

:class:`AccountReader` remembers name -> id from earlier answers, so the discovery (one ``HMGET``
of the global index) is a round trip only for names not seen before, or whose shard no longer
confirms them (account removed, name given to another account). A name whose shard names another
of its accounts is asked again with that id at once. Names without an account are not remembered,
so junk queries do not fill the map.

The calls are raw RESP (:class:`hbdns.resp.BatchConnection`, no pool lock per call), built from
per-name parts encoded once and kept with the id:

- standalone Redis or Sentinel: one connection per thread, one script call for the whole batch,
  whatever shards its names are in. A dropped connection is retried once on a new one (the lookup
  only reads); NOSCRIPT loads the script again (:meth:`hbdns.scripts.Script.call`).
- Redis Cluster (:func:`hbdns.connection.is_cluster`): one script call per shard, the calls of the
  primaries' shards sent on each primary's connection together, then read (:mod:`pdns_backend.routes`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

import redis

from hbdns import keys, scripts
from hbdns.resp import BatchConnection, ConnectionLost, bulk, encode_command
from pdns_backend.routes import Parts, Router, ShardCalls
from pdns_backend.tracking import Tracker


def account_keys(account_id: int) -> tuple[str, ...]:
    """The keys the lookup script reads of one account: its hash, then the alive keys of IPv4, IPv6
    and the legacy one of older writers (both families)."""
    return (
        keys.account(account_id),
        keys.alive(account_id, 4),
        keys.alive(account_id, 6),
        keys.alive_legacy(account_id),
    )


KEYS_PER_NAME = 5  # the shard's name index, then account_keys


class _ThreadConn(threading.local):
    conn: BatchConnection | None = None
    calls: ShardCalls | None = None


class AccountReader:
    """``fetch(names)``: per name None (no account) or its ``ACCOUNT_FIELDS`` values, the live
    families (1: IPv4, 2: IPv6, 3: both), the account id, and per family the ms it stays live (-1:
    not live, or no expiry), as ``hbdns/lua/lookup.lua`` returns them.

    ``router``: on Redis Cluster, makes this thread's :class:`~pdns_backend.routes.Router` (one
    connection per primary); None: one connection per thread to ``r``'s server.

    With a ``tracker`` (:class:`~pdns_backend.tracking.Tracker`, the answer cache's) each connection,
    when it connects and when the invalidation connection changed, checks that the tracker hears of
    the writes on the server it reads (:meth:`Tracker.attach`).

    Thread-safe: each thread has its own connections; the shared name map is a dict whose single
    operations the GIL keeps atomic (a lost update costs one round trip, never a wrong answer).
    """

    PASSES = 3  # script calls per lookup at most: an id that keeps changing between them fails it (SERVFAIL)

    def __init__(
        self,
        r: redis.Redis,
        max_names: int = 500_000,
        tracker: Tracker | None = None,
        router: Callable[[], Router] | None = None,
    ) -> None:
        self.r = r
        self.tracker = tracker
        self.router = router
        self.script = scripts.LOOKUP
        self.max_names = max_names  # names remembered; the map starts afresh when full
        self._names_key = keys.names()
        self._local = _ThreadConn()
        self._ids: dict[str, Parts] = {}  # name -> (id, shard, its KEYS, its ARGV)

    def __len__(self) -> int:
        """Names remembered now."""
        return len(self._ids)

    def forget(self) -> None:
        """Drop every remembered name: the next lookup of each pays the discovery again."""
        self._ids.clear()

    def connection(self) -> BatchConnection:
        """This thread's connection (standalone and Sentinel)."""
        conn = self._local.conn
        if conn is None:
            conn = self._local.conn = BatchConnection(self.r)
            if self.tracker is not None:
                conn.on_connect.append(self.tracker.attach)
        return conn

    def connections(self) -> tuple[BatchConnection, ...]:
        """The connections this thread's last fetch read from (the answer cache keeps what they
        read only while every one of them is tracked)."""
        if self.router is None:
            return (self.connection(),)
        calls = self._local.calls
        return calls.used if calls is not None else ()

    def fetch(self, names: list[str]) -> list[Any]:
        if self.router is not None:
            self._shard_calls().begin()
        ids = self._ids
        parts = [ids.get(n) for n in names]
        if None not in parts:
            replies = self._confirm(names, parts)  # type: ignore[arg-type]
            for reply in replies:
                if type(reply) is not list:
                    sent = dict(zip(names, parts, strict=True))
                    return self._resolve(names, sent, dict(zip(names, replies, strict=True)))  # type: ignore[arg-type]
            return replies  # the common case: every name known, with its account
        return self._resolve(names, {n: p for n, p in zip(names, parts, strict=True) if p is not None}, None)

    def _resolve(self, names: list[str], cand: dict[str, Parts], replies: dict[str, Any] | None) -> list[Any]:
        """Find the names not known (or no longer confirmed) in the global index, confirm them, and
        ask again with the id a shard names instead; at most :attr:`PASSES` script calls. ``cand``:
        the ids known at the start (those ``replies`` answered, when given)."""
        found: dict[str, Any] = {}
        fresh: set[str] = set()  # names whose id the global index gave in this call
        unknown = [n for n in dict.fromkeys(names) if n not in cand]
        if unknown:
            self._discover(unknown, cand, fresh)
        passes = 1 if replies is not None else 0
        while True:
            if replies is None:
                ask = [n for n in cand if n not in found]
                if not ask:
                    break
                if passes == self.PASSES:
                    raise redis.ResponseError(f"the name index kept changing for {ask[0]!r}")
                passes += 1
                replies = dict(zip(ask, self._confirm(ask, [cand[n] for n in ask]), strict=True))
            again: list[str] = []
            for n, reply in replies.items():
                if n not in cand or n in found:
                    continue
                if type(reply) is list:
                    found[n] = reply
                elif reply is None:  # the shard does not hold it
                    del cand[n]
                    if n in fresh:  # the index's own id is refuted: no account (a write in progress)
                        self._ids.pop(n, None)
                    else:
                        again.append(n)
                else:  # another account of the same shard holds it
                    cand[n] = self._remember(n, str(reply))
            if again:
                self._discover(again, cand, fresh)
            replies = None
        return [found.get(n) for n in names]

    def _remember(self, name: str, account_id: str) -> Parts:
        aid = int(account_id)
        shard = keys.shard_of(aid)
        parts = (
            account_id,
            shard,
            bulk(keys.shard_names(shard).encode()) + b"".join(bulk(k.encode()) for k in account_keys(aid)),
            bulk(name.encode()) + bulk(account_id.encode()),
        )
        if len(self._ids) >= self.max_names:
            self._ids.clear()
        self._ids[name] = parts
        return parts

    # --- Redis ------------------------------------------------------------------------------------

    def _discover(self, names: list[str], cand: dict[str, Parts], fresh: set[str]) -> None:
        """The global index's id for each of ``names`` (one HMGET), into ``cand``; names it does not
        hold have no account."""
        ids = self._hmget(names)
        if type(ids) is not list or len(ids) != len(names):
            raise redis.ResponseError(f"HMGET of the name index answered {ids!r:.200}")
        for n, account_id in zip(names, ids, strict=True):
            if account_id is None:
                self._ids.pop(n, None)
            else:
                cand[n] = self._remember(n, str(account_id))
                fresh.add(n)

    def _hmget(self, names: list[str]) -> Any:
        payload = encode_command("HMGET", self._names_key, *names)
        if self.router is not None:
            return self._shard_calls().single(self._names_key, payload)
        conn = self.connection()
        try:
            if self.tracker is not None:
                self.tracker.ensure(conn)
            reply = conn.roundtrip(payload, 1)[0]
        except ConnectionLost:  # e.g. Redis restarted: once more on a new connection
            reply = conn.roundtrip(payload, 1)[0]
        if isinstance(reply, redis.ResponseError):
            raise reply
        return reply

    def encode(self, items: Sequence[Parts]) -> bytes:
        """The EVALSHA for candidates ``items``: KEYS (shard index, acct, alive keys) and ARGV
        (name, id) per candidate."""
        n = len(items)
        return b"".join(
            [
                b"*%d\r\n" % (3 + (KEYS_PER_NAME + 2) * n),
                self.script.head,
                bulk(b"%d" % (KEYS_PER_NAME * n)),
                *[p[2] for p in items],
                *[p[3] for p in items],
            ]
        )

    def _confirm(self, names: Sequence[str], parts: Sequence[Parts]) -> list[Any]:
        """The script's reply for each candidate, in order."""
        if self.router is not None:
            return self._shard_calls().confirm(parts)
        payload = self.encode(parts)
        conn = self.connection()
        try:
            if self.tracker is not None:
                self.tracker.ensure(conn)  # on a connection that may have died with its server
            reply = self.script.call(conn, payload)
        except ConnectionLost:  # e.g. Redis restarted: once more on a new connection
            reply = self.script.call(conn, payload)
        if isinstance(reply, redis.ResponseError):
            raise reply
        if type(reply) is not list or len(reply) != len(names):
            conn.close()
            raise redis.ResponseError(f"lookup script answered {reply!r:.200}")
        return reply

    def _shard_calls(self) -> ShardCalls:
        calls = self._local.calls
        if calls is None:
            assert self.router is not None
            calls = self._local.calls = ShardCalls(self.router(), self.script, self.encode, self.tracker)
        return calls
