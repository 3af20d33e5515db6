"""Raw RESP pipelining on a connection redis-py opened, for the two hot paths.

The heartbeat listener (a batch of beats per script call) and the DNS backend (a batch of lookups
per script call) each make tens of thousands of Redis calls a second. Building each command through
``Redis.execute_command`` (the pool, retry and observability layers, and redis-py's packer) costs
more Python per call than the rest of their work, so the caller builds the command bytes itself,
once per batch, from parts it encoded once (:func:`encode_command`, :func:`bulk`). The bytes go out
and the replies come back through redis-py's public connection API (``send_packed_command``,
``read_response``: hiredis parses them), so AUTH, SELECT, TLS and timeouts from the URL, and
clients whose connections are not sockets (fakeredis), all work unchanged.

Any connection error or timeout becomes :class:`ConnectionLost` (a ``redis.ConnectionError``); the
connection is dropped and made again on the next send, one attempt per send (the caller decides when
to try again, instead of redis-py's retry backoff holding its loop). Error replies are values, not
exceptions, except READONLY: the server was demoted to a replica (a failover), so it is a lost
connection too. With a Sentinel client (:func:`hbdns.connection.connect`) every new connection asks
Sentinel for the current primary, so the next send reaches the new one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry


class ConnectionLost(redis.ConnectionError):
    """The raw connection failed; replies in flight are lost."""


def bulk(value: bytes) -> bytes:
    return b"$%d\r\n%b\r\n" % (len(value), value)


def encode_command(*args: str | bytes) -> bytes:
    """RESP array of bulk strings (what redis-py's packer produces)."""
    parts = [b"*%d\r\n" % len(args)]
    for a in args:
        parts.append(bulk(a.encode() if isinstance(a, str) else a))
    return b"".join(parts)


class BatchConnection:
    """One Redis connection used as a raw pipeline: send many commands, read as many replies.

    Sends and reads are decoupled so a batch can be in flight while the caller works on the next
    one; replies come back in order. Error replies are returned as values (``redis.ResponseError``,
    e.g. ``redis.exceptions.NoScriptError``), not raised: one bad command must not hide the others.
    ``on_connect`` hooks run on every (re)connect, before anything else is sent (e.g. a SCRIPT LOAD).
    """

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        pool = getattr(client, "connection_pool", None)
        if pool is None:  # a RedisCluster has a pool per node
            raise TypeError("a cluster client has no single connection: use hbdns.cluster_route.ClusterRouter")
        kwargs = dict(pool.connection_kwargs, retry=Retry(NoBackoff(), 0))
        cls = pool.connection_class
        self._factory = lambda: cls(**kwargs)
        self.on_connect: list[Callable[[BatchConnection], object]] = []
        self._conn: Any = None
        self.inflight = 0  # replies sent for and not yet read
        self.connects = 0  # connections made so far

    @property
    def address(self) -> str:
        """Where the current connection goes (for logs), "" when not connected."""
        conn = self._conn
        if conn is None:
            return ""
        return getattr(conn, "path", "") or f"{getattr(conn, 'host', '')}:{getattr(conn, 'port', '')}"

    @property
    def endpoint(self) -> tuple[str, int]:
        """(host, port) of the current TCP connection, for opening another to the same server."""
        conn = self._conn
        if conn is None or not getattr(conn, "host", None):
            raise ConnectionLost("not connected over TCP")
        return str(conn.host), int(conn.port)

    @property
    def connected(self) -> bool:
        return self._conn is not None

    def _connect(self) -> None:
        conn = self._factory()
        conn.connect()
        self._conn = conn
        self.inflight = 0
        self.connects += 1
        for hook in self.on_connect:
            hook(self)

    def twin(self) -> BatchConnection:
        """Another connection made the same way (with Sentinel: to wherever it says the primary is)."""
        return BatchConnection(self.client)

    def ready(self) -> bool:
        """Whether a reply in flight can be read without waiting."""
        if self._conn is None or not self.inflight:
            return False
        try:
            return bool(self._conn.can_read(timeout=0))
        except (redis.RedisError, OSError, ValueError) as exc:
            self.close()
            raise ConnectionLost(f"{type(exc).__name__}: {exc}") from None

    def close(self) -> None:
        conn, self._conn, self.inflight = self._conn, None, 0
        if conn is not None:
            try:
                conn.disconnect()
            except Exception:
                pass

    def send(self, payload: bytes, count: int) -> None:
        """Send ``payload`` (``count`` commands); connects first if needed."""
        try:
            if self._conn is None:
                self._connect()
            # no health-check PING: it would be read as the reply of a command in flight
            self._conn.send_packed_command((payload,), check_health=False)
            self.inflight += count
        except (redis.RedisError, OSError, ValueError) as exc:
            self.close()
            raise ConnectionLost(f"{type(exc).__name__}: {exc}") from None

    def read(self, count: int) -> list[Any]:
        """The next ``count`` replies, in order."""
        if self._conn is None or count > self.inflight:
            raise ConnectionLost("connection lost before the replies were read")
        out: list[Any] = []
        read = self._conn.read_response
        try:
            while len(out) < count:
                try:
                    out.append(read())
                except redis.exceptions.ReadOnlyError:
                    raise  # demoted to a replica: the connection is of no use for writes any more
                except redis.ResponseError as exc:  # an error reply, already consumed: a value
                    out.append(exc)
        except redis.exceptions.ReadOnlyError as exc:
            self.close()
            raise ConnectionLost(f"READONLY (the server is a replica now): {exc}") from None
        except (redis.RedisError, OSError, ValueError) as exc:
            self.close()
            raise ConnectionLost(f"{type(exc).__name__}: {exc}") from None
        self.inflight -= count
        return out

    def roundtrip(self, payload: bytes, count: int) -> list[Any]:
        self.send(payload, count)
        return self.read(count)
