"""Redis client tracking for the answer cache: Redis itself says when a cached answer went stale.

One invalidation connection per Redis server the lookups read from (on Redis Cluster: per primary,
since tracking and its invalidations are per node) runs ``CLIENT TRACKING ON
REDIRECT <its own id> BCAST PREFIX ...`` over the prefixes of every key the lookup script reads
(:func:`hbdns.keys.lookup_prefixes`) and subscribes to ``__redis__:invalidate`` (RESP2; Redis >= 6.
redis-py's own client-side cache needs 7.4 and RESP3, Debian 12 has 7.0). From then on Redis sends
it the name of every such key that is written, deleted or expired there, and None for a flush or a
full resynchronisation of a replica. Broadcast rather than per-read tracking because Redis forgets
what a connection read when that connection closes: a reading connection lost unnoticed would
leave its answers cached with nobody told of their changes. A replica reports the writes it
applies from its primary (checked on 7.0.15), so a backend reading a replica is kept true there.

The invalidation connection is opened to the reader's own address (with Sentinel, the server the
reader was given, a replica picked by round robin included), and each reading connection, when it
connects, checks that it is on the same server with a ``PUBLISH`` to a channel only that
invalidation connection listens on (:func:`hbdns.keys.backend_probe`): exactly one subscriber
must get it. Only then are its answers cached (:meth:`Tracker.tracked`).

The whole cache is dropped (:attr:`Tracker.on_change` with None) whenever a reading connection
(re)connects (another server, perhaps after a failover, or the same one restarted) and whenever
an invalidation connection is found closed, which :meth:`Tracker.drain` notices before the next
answer is served (a closed socket reads as end of file). :attr:`Tracker.epoch` counts every change
and drop: an answer read while it moved is not cached, since the invalidation for it may already
have been handled.
"""

from __future__ import annotations

import logging
import secrets
import select
import threading
import time
from collections.abc import Callable
from typing import Any

import redis

from hbdns import keys
from hbdns.logs import RateLimitedLog
from hbdns.resp import BatchConnection, encode_command

log = logging.getLogger(__name__)

INVALIDATE = "__redis__:invalidate"
RETRY_AFTER = 5.0  # seconds before a connection whose tracking could not be set up tries again


class _Sub:
    """One invalidation connection: its redis-py connection, client id and probe channel, and a
    poll object on its socket: :meth:`Tracker.drain` reads until redis-py's buffer is empty, so
    between drains a readable socket is the only sign of news (a poll is a fraction of the cost of
    redis-py's ``can_read``, on the path of every batch)."""

    __slots__ = ("channel", "client_id", "conn", "poll", "serial")

    def __init__(self, conn: Any, client_id: int, channel: str, serial: int) -> None:
        self.conn = conn
        self.client_id = client_id
        self.channel = channel
        self.serial = serial
        self.poll = select.poll()
        self.poll.register(conn._sock, select.POLLIN | select.POLLERR | select.POLLHUP)


class Tracker:
    """The invalidation connections of one backend process and the readers registered with them.

    ``on_change(keys)`` gets the names of keys Redis reports changed, or None: drop everything. It
    is called with :attr:`lock` held; callers that read or fill the cache hold it too.
    """

    def __init__(self, on_change: Callable[[list[str] | None], None]) -> None:
        self.on_change = on_change
        self.lock = threading.RLock()
        self.epoch = 0
        self.connects = 0  # invalidation connections opened so far
        self._serial = 0
        self._subs: dict[str, _Sub] = {}  # reader address -> its server's invalidation connection
        self._readers: dict[int, tuple[int, int]] = {}  # id(reader) -> (its connects, sub serial)
        self._failed: dict[int, tuple[int, float]] = {}  # id(reader) -> (its connects, when)
        self._errors = RateLimitedLog(log, 60.0)

    # --- readers ------------------------------------------------------------------------------------

    def tracked(self, reader: BatchConnection) -> bool:
        """Whether what ``reader`` reads now is tracked by a live invalidation connection."""
        reg = self._readers.get(id(reader))
        if reg is None or reg[0] != reader.connects:
            return False
        sub = self._subs.get(reader.address)
        return sub is not None and sub.serial == reg[1]

    def ensure(self, reader: BatchConnection) -> None:
        """Register a connected ``reader`` again if its invalidation connection was replaced."""
        if reader.connected and not self.tracked(reader):
            failed = self._failed.get(id(reader))
            if failed is None or failed[0] != reader.connects or time.monotonic() - failed[1] >= RETRY_AFTER:
                self.attach(reader)

    def attach(self, reader: BatchConnection) -> None:
        """``reader``'s ``on_connect`` hook: find (or open) its server's invalidation connection and
        check it is that server's; everything cached so far is dropped (a new connection, perhaps
        to a new server)."""
        with self.lock:
            self._readers.pop(id(reader), None)
            self.flush()
            for _attempt in range(2):
                sub = self._sub_for(reader)
                if sub is None:
                    break
                reached = reader.roundtrip(encode_command("PUBLISH", sub.channel, "probe"), 1)[0]
                if reached == 1:
                    self._readers[id(reader)] = (reader.connects, sub.serial)
                    self._failed.pop(id(reader), None)
                    return
                # another server (a failover between the two connects): open one to the reader's
                self._drop(reader.address, f"the probe reached {reached!r} subscribers, not 1")
            self._failed[id(reader)] = (reader.connects, time.monotonic())
            self._errors.log(logging.WARNING, "attach", "answer cache off for a connection: no tracking")

    # --- invalidation connections -------------------------------------------------------------------

    def drain(self) -> None:
        """Handle every invalidation that has arrived, without waiting; drop the cache if an
        invalidation connection is gone. One non-blocking poll per connection."""
        with self.lock:
            for address, sub in list(self._subs.items()):
                self._drain(address, sub)

    def flush(self) -> None:
        self.epoch += 1
        self.on_change(None)

    def close(self) -> None:
        with self.lock:
            for address in list(self._subs):
                self._drop(address, "closing")

    def _drain(self, address: str, sub: _Sub) -> None:
        if not sub.poll.poll(0):
            return
        try:
            while sub.conn.can_read(timeout=0):
                self._handle(sub, sub.conn.read_response())
        except (redis.RedisError, OSError, ValueError) as exc:
            self._drop(address, f"{type(exc).__name__}: {exc}")

    def _handle(self, sub: _Sub, msg: Any) -> None:
        if type(msg) is not list or len(msg) != 3 or _text(msg[0]) != "message" or _text(msg[1]) != INVALIDATE:
            return  # subscribe confirmations, probes
        self.epoch += 1
        data = msg[2]
        self.on_change(None if data is None else [_text(k) for k in data])  # None: FLUSHDB/FLUSHALL

    def _sub_for(self, reader: BatchConnection) -> _Sub | None:
        address = reader.address
        sub = self._subs.get(address)
        if sub is not None:
            self._drain(address, sub)  # notices a connection closed meanwhile
            sub = self._subs.get(address)
        if sub is None:
            try:
                sub = self._open(reader)
            except (redis.RedisError, OSError, ValueError) as exc:
                self._errors.log(logging.WARNING, "open", "invalidation connection failed", error=repr(exc))
                return None
            self._subs[address] = sub
        return sub

    def _open(self, reader: BatchConnection) -> _Sub:
        pool = reader.client.connection_pool  # made as the reader's (on Cluster: its primary's client)
        kwargs = dict(pool.connection_kwargs)
        if "connection_pool" in kwargs:  # Sentinel: pin to the server the reader was given
            kwargs.pop("connection_pool")
            plain = pool.connection_class
            cls: Any = redis.SSLConnection if issubclass(plain, redis.SSLConnection) else redis.Connection
            host, port = reader.endpoint
            kwargs.update(host=host, port=port)
        else:
            cls = pool.connection_class
        kwargs["protocol"] = 2  # invalidations as pub/sub messages (RESP3 would push them)
        conn = cls(**kwargs)
        try:
            conn.connect()
            channel = keys.backend_probe(secrets.token_hex(8))
            conn.send_packed_command(
                [encode_command("CLIENT", "SETNAME", "hbdns-backend-invalidations") + encode_command("CLIENT", "ID")],
                check_health=False,
            )
            conn.read_response()
            client_id = int(conn.read_response())
            prefixes = [arg for prefix in keys.lookup_prefixes() for arg in ("PREFIX", prefix)]
            tracking = encode_command("CLIENT", "TRACKING", "ON", "REDIRECT", str(client_id), "BCAST", *prefixes)
            conn.send_packed_command([tracking + encode_command("SUBSCRIBE", INVALIDATE, channel)], check_health=False)
            on = conn.read_response()  # an error reply raises (ResponseError): no cache on this server
            if _text(on) != "OK":
                raise redis.ResponseError(f"CLIENT TRACKING answered {on!r}")
            conn.read_response()
            conn.read_response()  # the two subscribe confirmations
        except BaseException:
            conn.disconnect()
            raise
        self._serial += 1
        self.connects += 1
        return _Sub(conn, client_id, channel, self._serial)

    def _drop(self, address: str, reason: str) -> None:
        sub = self._subs.pop(address, None)
        if sub is not None:
            try:
                sub.conn.disconnect()
            except Exception:
                pass
            log.warning("invalidation connection lost: answer cache dropped", extra={"reason": reason})
        self.flush()


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
