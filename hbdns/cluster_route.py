"""Slot-aware routing of raw RESP batches over a Redis Cluster, for the two hot paths.

The heartbeat listener and the DNS backend send their own command bytes on a
:class:`hbdns.resp.BatchConnection` (see :mod:`hbdns.resp` for why). On a cluster each command
must reach the primary that owns its keys' slot, so :class:`ClusterRouter` keeps the slot map
(asked with ``CLUSTER SHARDS``, ``CLUSTER SLOTS`` on a server without it) and one
``BatchConnection`` per primary. ``redis.cluster.RedisCluster`` does the same for the ordinary
paths, but through the per-command layers the hot paths avoid.

What the cluster may answer instead of a reply, and what :meth:`ClusterRouter.execute` does:

- ``MOVED slot host:port`` (the slot has a new owner: a migration, a failover): the map is
  patched and asked again, the command is sent to the new owner. It had not run.
- ``ASK slot host:port`` (the slot is being migrated and the key is already on the target):
  ``ASKING`` + the command to that node, for this command only; the map stays.
- ``TRYAGAIN`` (a multi-key command during a migration), ``CLUSTERDOWN`` (a slot without a
  primary, e.g. before a replica is promoted): a short pause, the map asked again, sent again.
- a connection that fails before the command is sent: the map is asked again, sent again;
  one that fails after (the reply is lost, the command may have run): a :class:`ConnectionLost`
  reply, unless the caller says its commands are idempotent.

Retries are bounded (:data:`ATTEMPTS` rounds, about 0.3 s of pauses in all): a cluster failover
takes longer than a hot path's batch may wait, so what cannot be placed comes back as a
:class:`ClusterUnavailable` reply (a ``ConnectionLost``: the caller keeps the work and tries later,
as it does when its single Redis is away). On a non-cluster URL callers keep their one
``BatchConnection``; only ``redis+cluster://`` URLs come here.
"""

from __future__ import annotations

import time
from binascii import crc_hqx
from collections.abc import Callable, Sequence
from typing import Any

import redis
from redis.exceptions import AskError, ClusterDownError, MovedError, TryAgainError

from hbdns import connection
from hbdns.resp import BatchConnection, ConnectionLost, encode_command

SLOTS = 16384
ATTEMPTS = 5
BACKOFF = 0.02  # first pause, doubled each round: 20 + 40 + 80 + 160 ms
ASKING = encode_command("ASKING")

Addr = tuple[str, int]
Target = int | str | bytes  # a slot, or a key whose slot it is


class ClusterUnavailable(ConnectionLost):
    """The command could not be placed on a primary within the retries; it did not run."""


def slot(key: str | bytes) -> int:
    """The cluster slot of ``key``: CRC16 (XMODEM) of its hash tag, the part between the first
    ``{`` and the next ``}`` when that is not empty, else of the whole key, mod 16384."""
    raw = key.encode() if isinstance(key, str) else key
    start = raw.find(b"{")
    if start >= 0:
        end = raw.find(b"}", start + 1)
        if end > start + 1:
            raw = raw[start + 1 : end]
    return crc_hqx(raw, 0) % SLOTS


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _fields(entry: Any) -> dict[str, Any]:
    """A RESP3 map or a RESP2 flat list of name/value pairs as a dict."""
    if isinstance(entry, dict):
        return {_text(k): v for k, v in entry.items()}
    items = list(entry)
    return {_text(items[i]): items[i + 1] for i in range(0, len(items) - 1, 2)}


def parse_shards(reply: Any, asked: Addr, tls: bool = False) -> dict[int, Addr]:
    """slot -> primary from a ``CLUSTER SHARDS`` reply (``asked``: the node that answered, whose
    host stands for an endpoint it does not know, ``?`` or empty)."""
    owners: dict[int, Addr] = {}
    for shard in reply:
        fields = _fields(shard)
        primary = next((_fields(n) for n in fields["nodes"] if _text(_fields(n)["role"]) == "master"), None)
        if primary is None:
            continue
        host = _text(primary.get("endpoint") or "")
        port = int(primary.get("tls-port") or 0) if tls else 0
        addr = (asked[0] if host in ("", "?") else host, port or int(primary["port"]))
        bounds = [int(b) for b in fields["slots"]]
        for first, last in zip(bounds[::2], bounds[1::2], strict=True):
            owners.update(dict.fromkeys(range(first, last + 1), addr))
    return owners


def parse_slots(reply: Any, asked: Addr) -> dict[int, Addr]:
    """slot -> primary from a ``CLUSTER SLOTS`` reply."""
    owners: dict[int, Addr] = {}
    for first, last, node, *_replicas in reply:
        host = _text(node[0] or "")
        addr = (asked[0] if host in ("", "?") else host, int(node[1]))
        owners.update(dict.fromkeys(range(int(first), int(last) + 1), addr))
    return owners


class ClusterRouter:
    """The slot map of a cluster and a :class:`BatchConnection` to each of its primaries.

    ``on_connect`` hooks (e.g. a SCRIPT LOAD: each primary has its own script cache) run on every
    (re)connect of every node's connection. The map is first asked for when it is first needed.
    Not thread-safe: one router per loop, as one BatchConnection is.
    """

    def __init__(
        self,
        seeds: Sequence[Addr],
        node_kwargs: dict[str, Any],
        *,
        tls: bool = False,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not seeds:
            raise ValueError("a cluster router needs at least one node address")
        self.seeds = tuple(seeds)
        self.node_kwargs = dict(node_kwargs)
        self.tls = tls
        self.sleep = sleep
        self.on_connect: list[Callable[[BatchConnection], object]] = []
        self._owner: list[Addr | None] = [None] * SLOTS
        self._conns: dict[Addr, BatchConnection] = {}
        self._unanswered: set[Addr] = set()  # asked for the map last time and failed: asked last
        self.refreshes = 0  # slot maps asked for so far

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> ClusterRouter:
        """A router for a ``redis+cluster://`` URL (``kwargs``: client options, as for connect)."""
        target = connection.parse_cluster(url)
        opts = dict(connection.DEFAULTS, **kwargs)
        return cls(target.nodes, connection.cluster_node_kwargs(target, opts), tls=target.ssl)

    # --- the map

    def _client(self, addr: Addr) -> redis.Redis:
        return redis.Redis(host=addr[0], port=addr[1], **self.node_kwargs)

    def refresh(self) -> None:
        """Ask the primaries known, then the seeds, for the slot map; the first that answers
        wins. ConnectionLost when none does."""
        known = list(dict.fromkeys([*self._conns, *self.seeds]))
        candidates = [a for a in known if a not in self._unanswered] + [a for a in known if a in self._unanswered]
        failures = []
        for addr in candidates:
            probe = BatchConnection(self._client(addr))
            try:
                reply = probe.roundtrip(encode_command("CLUSTER", "SHARDS"), 1)[0]
                if isinstance(reply, redis.ResponseError):  # before Redis 7
                    owners = parse_slots(probe.roundtrip(encode_command("CLUSTER", "SLOTS"), 1)[0], addr)
                else:
                    owners = parse_shards(reply, addr, self.tls)
            except (ConnectionLost, TypeError, KeyError, ValueError) as exc:
                failures.append(f"{addr[0]}:{addr[1]}: {exc}")
                self._unanswered.add(addr)  # a dead primary must not cost its timeout every time
                continue
            finally:
                probe.close()
            self._unanswered.discard(addr)
            self._owner = [owners.get(s) for s in range(SLOTS)]
            self.refreshes += 1
            self._drop_idle(set(owners.values()))
            return
        raise ConnectionLost("no cluster node gave its slot map: " + "; ".join(failures))

    def _drop_idle(self, primaries: set[Addr]) -> None:
        for addr in [a for a, c in self._conns.items() if a not in primaries and not c.inflight]:
            self._conns.pop(addr).close()

    def owner(self, target: Target) -> Addr:
        """(host, port) of the primary serving ``target`` (a slot or a key) as the map says."""
        s = target if isinstance(target, int) else slot(target)
        if self._owner[s] is None:
            self.refresh()
        addr = self._owner[s]
        if addr is None:
            raise ClusterUnavailable(f"slot {s} has no primary in the cluster's slot map")
        return addr

    def _conn(self, addr: Addr) -> BatchConnection:
        conn = self._conns.get(addr)
        if conn is None:
            conn = self._conns[addr] = BatchConnection(self._client(addr))
            conn.on_connect = self.on_connect  # shared: a hook added later reaches every node
        return conn

    def connection(self, target: Target) -> BatchConnection:
        """The connection to the primary owning ``target`` (a slot or a key), for a caller that
        pipelines on one node itself: it gets MOVED, ASK, TRYAGAIN and CLUSTERDOWN as error values
        and calls :meth:`refresh` (or sends through :meth:`execute`, which handles them)."""
        return self._conn(self.owner(target))

    def connections(self) -> list[BatchConnection]:
        """One connection per primary in the map (e.g. a loop over every node)."""
        if all(a is None for a in self._owner):
            self.refresh()
        return [self._conn(a) for a in dict.fromkeys(a for a in self._owner if a is not None)]

    def close(self) -> None:
        for conn in self._conns.values():
            conn.close()
        self._conns.clear()

    # --- batches

    def execute(self, commands: Sequence[tuple[Target, bytes]], *, idempotent: bool = False) -> list[Any]:
        """Send each ``(slot or key, one encoded command)`` to its primary, every node's share in
        one write, all nodes before any reply is read; the replies in the order of ``commands``.

        Error replies are values (as :meth:`BatchConnection.read` gives them), and so are a lost
        connection's (:class:`ConnectionLost`: the command may have run; retried instead when
        ``idempotent``) and a command that could not be placed (:class:`ClusterUnavailable`)."""
        batch = _Batch(commands, idempotent)
        pending = list(range(len(commands)))
        for attempt in range(ATTEMPTS):
            if attempt:
                if any(not isinstance(batch.last[i], (MovedError, AskError)) for i in pending):
                    self.sleep(BACKOFF * 2 ** (attempt - 1))
                if any(not _is_ask(batch.last[i]) for i in pending):
                    try:
                        self.refresh()
                    except ConnectionLost as exc:
                        batch.last.update(dict.fromkeys(pending, exc))
                        continue
            pending = self._round(batch, pending)
            if not pending:
                break
        for i in pending:
            why = batch.last[i]
            if i in batch.maybe_ran:
                batch.replies[i] = ConnectionLost(f"reply lost (the command may have run): {type(why).__name__}: {why}")
            else:
                batch.replies[i] = ClusterUnavailable(f"not placed on a primary: {type(why).__name__}: {why}")
        return batch.replies

    def _round(self, batch: _Batch, pending: list[int]) -> list[int]:
        """One send of every pending command; the indexes to send again."""
        groups: dict[Addr, list[int]] = {}
        again: list[int] = []
        for i in pending:
            try:
                groups.setdefault(batch.asking.get(i) or self.owner(batch.slots[i]), []).append(i)
            except ConnectionLost as exc:
                batch.last[i] = exc
                again.append(i)
        sent: list[tuple[BatchConnection, list[int], int]] = []
        for addr, idxs in groups.items():
            conn = self._conn(addr)
            asking = batch.asking
            payload = b"".join((ASKING + batch.commands[i][1]) if i in asking else batch.commands[i][1] for i in idxs)
            count = len(idxs) + sum(1 for i in idxs if i in asking)
            try:
                conn.send(payload, count)
            except ConnectionLost as exc:  # nothing went out: safe to send again
                batch.last.update(dict.fromkeys(idxs, exc))
                again.extend(idxs)
                continue
            sent.append((conn, idxs, count))
        for conn, idxs, count in sent:
            try:
                out = conn.read(count)
            except ConnectionLost as exc:
                for i in idxs:
                    batch.last[i] = exc
                    if batch.idempotent:
                        batch.maybe_ran.add(i)
                        again.append(i)
                    else:
                        batch.replies[i] = exc
                continue
            again.extend(self._sort_replies(batch, idxs, out))
        return sorted(again)

    def _sort_replies(self, batch: _Batch, idxs: list[int], out: list[Any]) -> list[int]:
        """Keep the real replies; follow redirections; the indexes to send again."""
        again = []
        it = iter(out)
        for i in idxs:
            if batch.asking.pop(i, None) is not None:
                next(it)  # ASKING's +OK
            reply = next(it)
            if isinstance(reply, MovedError):
                self._owner[reply.slot_id] = (reply.host, reply.port)
            elif isinstance(reply, AskError):
                batch.asking[i] = (reply.host, reply.port)
            elif not isinstance(reply, (TryAgainError, ClusterDownError)):
                batch.replies[i] = reply
                continue
            batch.last[i] = reply
            again.append(i)
        return again


def _is_ask(reply: Exception) -> bool:
    return isinstance(reply, AskError) and not isinstance(reply, MovedError)  # redis-py: MOVED is an ASK


class _Batch:
    """What one :meth:`ClusterRouter.execute` call knows about its commands."""

    def __init__(self, commands: Sequence[tuple[Target, bytes]], idempotent: bool) -> None:
        self.commands = commands
        self.idempotent = idempotent
        self.slots = [t if isinstance(t, int) else slot(t) for t, _ in commands]
        self.replies: list[Any] = [None] * len(commands)
        self.asking: dict[int, Addr] = {}  # index -> node of an ASK redirection, for the next send
        self.last: dict[int, Exception] = {}  # index -> why it is to be sent again
        self.maybe_ran: set[int] = set()  # sent, reply lost
