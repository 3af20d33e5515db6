"""The lookup hot path: account fields and liveness for a batch of names, one Redis round trip.

The lookup script (``hbdns/lua/lookup.lua``) reads, for each name, the name index, the account's
hash and which of its per-family ``alive`` keys exist, in one atomic step: the live/neutral decision
is made by Redis on every lookup, per address family, exact at the moment a key expires. Every key
it reads is passed in KEYS, so the caller must name each account's keys, i.e. know its id:
:class:`AccountReader` remembers name -> id from earlier answers, and the script checks each against
the name index in the same step that reads the account. A name met for the first time, or whose id
changed (account removed, name given to another), comes back with its current id and is asked again
at once: one more round trip for that name, never a stale answer. Names without an account are not
remembered, so junk queries do not fill the map.

The call is raw RESP on a connection per thread (:class:`hbdns.resp.BatchConnection`, no pool lock
per call), built from per-name parts encoded once and kept with the id. A dropped connection is
retried once on a new one (the lookup only reads); NOSCRIPT loads the script again
(:meth:`hbdns.scripts.Script.call`).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

import redis

from hbdns import keys, scripts
from hbdns.resp import BatchConnection, ConnectionLost, bulk
from pdns_backend.tracking import Tracker

_EMPTY = b"$0\r\n\r\n"
_Parts = tuple[str, bytes, bytes]  # an account id, the KEYS and the ARGV of its name


def account_keys(account_id: int) -> tuple[str, ...]:
    """The keys the lookup script reads of one account: its hash, then the alive keys of IPv4, IPv6
    and the legacy one of older writers (both families)."""
    return (
        keys.account(account_id),
        keys.alive(account_id, 4),
        keys.alive(account_id, 6),
        keys.alive_legacy(account_id),
    )


KEYS_PER_ACCOUNT = 4


class _ThreadConn(threading.local):
    conn: BatchConnection | None = None


class AccountReader:
    """``fetch(names)``: per name None (no account) or its ``ACCOUNT_FIELDS`` values, the live
    families (1: IPv4, 2: IPv6, 3: both), the account id, and per family the ms it stays live (-1:
    not live, or no expiry), as ``hbdns/lua/lookup.lua`` returns them.

    With a ``tracker`` (:class:`~pdns_backend.tracking.Tracker`, the answer cache's) each connection,
    when it connects and when the invalidation connection changed, checks that the tracker hears of
    the writes on the server it reads (:meth:`Tracker.attach`).

    Thread-safe: each thread has its own connection; the shared name map is a dict whose single
    operations the GIL keeps atomic (a lost update costs one round trip, never a wrong answer).
    """

    PASSES = 3  # calls per lookup at most: an id that keeps changing between them fails it (SERVFAIL)

    def __init__(self, r: redis.Redis, max_names: int = 500_000, tracker: Tracker | None = None) -> None:
        self.r = r
        self.tracker = tracker
        self.script = scripts.LOOKUP
        self.max_names = max_names  # names remembered; the map starts afresh when full
        self._names_key = bulk(keys.names().encode())
        self._local = _ThreadConn()
        self._ids: dict[str, _Parts] = {}  # name -> (id, its KEYS, its ARGV)

    def __len__(self) -> int:
        """Names remembered now."""
        return len(self._ids)

    def connection(self) -> BatchConnection:
        """This thread's connection."""
        conn = self._local.conn
        if conn is None:
            conn = self._local.conn = BatchConnection(self.r)
            if self.tracker is not None:
                conn.on_connect.append(self.tracker.attach)
        return conn

    def fetch(self, names: list[str]) -> list[Any]:
        replies = self._call(names, None)
        for reply in replies:
            if type(reply) is not list:
                return self._resolve(names, replies)
        return replies  # the common case: every name known, with its account

    def _resolve(self, names: list[str], replies: list[Any]) -> list[Any]:
        """Forget names without an account; ask again, with their id, for those that came back
        with one (first sight, or the id changed)."""
        out: list[Any] = [None] * len(names)
        todo = list(range(len(names)))
        learnt: dict[str, _Parts] = {}  # ids this call was told: its next pass uses them, map full or not
        for attempt in range(1, self.PASSES + 1):
            again = []
            for i, reply in zip(todo, replies, strict=True):
                if type(reply) is list:
                    out[i] = reply
                elif reply is None:
                    self._ids.pop(names[i], None)
                else:
                    learnt[names[i]] = self._remember(names[i], str(reply))
                    again.append(i)
            if not again:
                break
            if attempt == self.PASSES:
                raise redis.ResponseError(f"the name index kept changing for {names[again[0]]!r}")
            todo = again
            replies = self._call([names[i] for i in todo], learnt)
        return out

    def _remember(self, name: str, account_id: str) -> _Parts:
        parts = (
            account_id,
            b"".join(bulk(k.encode()) for k in account_keys(int(account_id))),
            bulk(name.encode()) + bulk(account_id.encode()),
        )
        if len(self._ids) >= self.max_names:
            self._ids.clear()
        self._ids[name] = parts
        return parts

    def encode(self, names: list[str], learnt: Mapping[str, _Parts] | None = None) -> bytes:
        """The EVALSHA for ``names``: KEYS names + (acct, alive keys) per name whose id is known, ARGV
        (name, id or '')."""
        ids = self._ids
        keyparts: list[bytes] = []
        argparts: list[bytes] = []
        for name in names:
            known = ids.get(name) if learnt is None else learnt.get(name) or ids.get(name)
            if known is None:
                argparts.append(bulk(name.encode()) + _EMPTY)
            else:
                keyparts.append(known[1])
                argparts.append(known[2])
        nkeys = 1 + KEYS_PER_ACCOUNT * len(keyparts)
        return b"".join(
            [
                b"*%d\r\n" % (3 + nkeys + 2 * len(names)),
                self.script.head,
                bulk(b"%d" % nkeys),
                self._names_key,
                *keyparts,
                *argparts,
            ]
        )

    def _call(self, names: list[str], learnt: Mapping[str, _Parts] | None) -> list[Any]:
        payload = self.encode(names, learnt)
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
