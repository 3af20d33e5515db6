"""The listener's Redis round trips, encoded by hand on :class:`hbdns.resp.BatchConnection`.

Per batch: one EVALSHA of the beat script (:data:`hbdns.scripts.BEAT`), plus one pipelined HMGET
round trip only for accounts the listener's cache lacks. A batch is one ``bytes`` built from
parts encoded once (:mod:`heartbeat_listener.beat_encoding`); on a standalone or Sentinel Redis one
batch may span shards. ``tests/unit/test_listener_redis.py`` pins the encodings to what
:meth:`hbdns.liveness.Liveness.beat_argv` and redis-py would send, so the layout has one owner.
On Redis Cluster the same stages run per primary (:mod:`heartbeat_listener.cluster_io`).

A lost connection (:class:`hbdns.resp.ConnectionLost`) becomes
:class:`~heartbeat_listener.protocol.StoreUnavailable`; the connection is made again on the next
call (the shell backs off in between).
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import redis

from hbdns import keys, scripts
from hbdns.liveness import OK, BeatRequest, BeatResult, Liveness
from hbdns.plans import Plan
from hbdns.resp import BatchConnection, ConnectionLost, bulk
from heartbeat_listener.beat_encoding import BeatEncoder
from heartbeat_listener.held import HeldBeats
from heartbeat_listener.protocol import AccountInfo, StoreUnavailable
from heartbeat_listener.replication import ReplicaWait, reapply

log = logging.getLogger(__name__)


class AccountCodec:
    """The lookup's HMGET hb_key/plan/zone/fp per account, encoded by hand, and its replies read."""

    FIELDS = ("hb_key", "plan", "zone", "fp")

    def __init__(self, plans: Mapping[str, Plan]) -> None:
        self.expiry = {name: p.expiry_ms for name, p in plans.items()}
        self._head = b"*%d\r\n" % (2 + len(self.FIELDS)) + bulk(b"HMGET")
        self._tail = b"".join(bulk(f.encode()) for f in self.FIELDS)
        self._hex: dict[str, bytes] = {}  # hex -> bytes, small cache: keys repeat every beat

    def encode(self, ids: Sequence[int]) -> bytes:
        head, tail, account = self._head, self._tail, keys.account
        return b"".join(head + bulk(account(i).encode()) + tail for i in ids)

    def parse(self, ids: Sequence[int], replies: Sequence[Any]) -> dict[int, AccountInfo | str]:
        """The accounts from the HMGET replies of ``ids`` (a lost reply: StoreUnavailable)."""
        out: dict[int, AccountInfo | str] = {}
        hexcache = self._hex
        for account_id, reply in zip(ids, replies, strict=True):
            if isinstance(reply, ConnectionLost):  # the cluster router's value for a lost reply
                raise StoreUnavailable(str(reply))
            if isinstance(reply, redis.ResponseError):  # e.g. WRONGTYPE: not an account hash
                out[account_id] = "bad_account"
                continue
            if not isinstance(reply, list) or len(reply) != len(self.FIELDS):
                raise StoreUnavailable(f"HMGET answered {reply!r:.100}")
            hb_hex, plan, zone, fp = reply
            if hb_hex is None:
                continue  # unknown account
            key = hexcache.get(hb_hex)
            if key is None:
                try:
                    key = bytes.fromhex(hb_hex)
                except ValueError:
                    out[account_id] = "bad_account"
                    continue
                if len(hexcache) > 500_000:
                    hexcache.clear()
                hexcache[hb_hex] = key
            expiry = self.expiry.get(plan or "")
            if expiry is None or not zone or not key:
                out[account_id] = "bad_account"
                continue
            out[account_id] = AccountInfo(key, expiry, zone, fp or "")
        return out


class RedisAccounts(AccountCodec):
    """The lookup stage: the HMGETs for the distinct ids of a batch, one round trip (only for
    accounts the listener's cache lacks, or whose cached key failed)."""

    def __init__(self, conn: BatchConnection, plans: Mapping[str, Plan]) -> None:
        super().__init__(plans)
        self.conn = conn

    def __call__(self, ids: Sequence[int]) -> dict[int, AccountInfo | str]:
        try:
            replies = self.conn.roundtrip(self.encode(ids), len(ids))
        except ConnectionLost as exc:
            raise StoreUnavailable(str(exc)) from None
        return self.parse(ids, replies)


_UNREAD: Any = object()


class _Ticket:
    """A batch in flight: its beats, its EVALSHA (kept for a rerun after NOSCRIPT) and, once read,
    its reply."""

    __slots__ = ("count", "payload", "reply", "reqs")

    def __init__(self, reqs: Sequence[BeatRequest], payload: bytes) -> None:
        self.reqs = reqs
        self.count = len(reqs)  # beats
        self.payload = payload
        self.reply: Any = _UNREAD


class RedisBeats:
    """The write stage: one EVALSHA of the shared beat script per batch, one round trip.

    The script checks and applies each beat in turn (replay check + state change), the batch as one
    atomic step. :meth:`submit` sends a batch and :meth:`collect` reads its results, so the shell can
    verify the next batch meanwhile; :meth:`beats` does both. The script is loaded on every
    (re)connect. A NOSCRIPT reply (the script cache was flushed, or Redis failed over to a replica
    without it) means the batch did not run: :meth:`collect` reads the replies of the batches sent
    after it, loads the script and runs again, in their order, this batch and those of them that
    got NOSCRIPT too, so no beat is lost. Only if the script is gone again at once do that
    batch's beats come back as status ``noscript`` (counted as redis_down).

    Durability across a failover (:mod:`heartbeat_listener.held`): the beats of a batch in flight
    or unsent when the connection was lost are held, and with ``wait_replicas`` > 0 so are those
    that recorded a transition, until a WAIT says that many replicas have them
    (:class:`~heartbeat_listener.replication.ReplicaWait`, on a connection of its own). Held beats
    run first on the next connection; the transitions they record there again (the old primary's
    were lost) have their names purged through ``purge``.
    """

    def __init__(
        self,
        conn: BatchConnection,
        liveness: Liveness,
        source: str = "beat",
        *,
        wait_replicas: int = 0,
        wait_timeout: float = 0.1,
        purge: Callable[[Iterable[str]], None] | None = None,
        held: HeldBeats | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.conn = conn
        self.liveness = liveness
        self.script = scripts.BEAT
        self.purge = purge
        self.held = held if held is not None else HeldBeats(clock=clock)
        self.wait = ReplicaWait(conn, self.held, wait_replicas, wait_timeout, clock) if wait_replicas else None
        conn.on_connect.append(lambda c: c.roundtrip(self.script.load_command, 1))  # Redis may have restarted
        conn.on_connect.append(self._on_connect)
        self._pending: deque[_Ticket] = deque()  # sent, reply not read yet, in order
        self._open: list[_Ticket] = []  # submitted, not collected yet
        self.reapplied = 0  # held beats applied again after a reconnect
        self.rerecorded = 0  # of those, how many recorded their transition again (it had been lost)
        self.encoder = BeatEncoder(liveness, source)

    def encode(self, reqs: Sequence[BeatRequest], ages: Sequence[int] | None = None) -> bytes:
        """The EVALSHA command for a batch (:meth:`BeatEncoder.encode`)."""
        return self.encoder.encode(reqs, ages)

    def submit(self, reqs: Sequence[BeatRequest]) -> _Ticket:
        """Send a batch; the ticket is for :meth:`collect`, in the order of submission."""
        payload = self.encode(reqs)
        try:
            self.conn.send(payload, 1)
        except ConnectionLost as exc:
            self._lost(reqs)
            raise StoreUnavailable(str(exc)) from None
        ticket = _Ticket(reqs, payload)
        self._pending.append(ticket)
        self._open.append(ticket)
        return ticket

    def hold(self, reqs: Sequence[BeatRequest]) -> None:
        """Keep authenticated beats that cannot be sent now (the shell is pausing before it tries
        Redis again): they run first on the next connection, with their age."""
        self.held.add(reqs)

    def collect(self, ticket: _Ticket) -> list[BeatResult]:
        try:
            if ticket.reply is _UNREAD:
                self._read(ticket)
            reply = ticket.reply
            if scripts.is_noscript(reply):
                reply = self._rerun(ticket)
        except ConnectionLost as exc:
            self._lost(())
            raise StoreUnavailable(str(exc)) from None
        if ticket in self._open:
            self._open.remove(ticket)
        if isinstance(reply, redis.ResponseError):
            # the script failed (or is gone again): nothing of this batch was applied
            status = "noscript" if scripts.is_noscript(reply) else "error"
            return [BeatResult(status, False, "", "", ())] * ticket.count
        if type(reply) is not list or len(reply) != ticket.count:
            self._lost(ticket.reqs)
            raise StoreUnavailable(f"beat script answered {reply!r:.200}")
        parse = self.liveness.beat_result
        # the script answers a bare 'ok' for an accepted beat that changed nothing: the shared OK
        results = [OK if r == "ok" else parse(r) for r in reply]
        wait = self.wait
        if wait is not None:
            if reply.count("ok") != len(reply):
                self.held.add(
                    req for req, res in zip(ticket.reqs, results, strict=True) if res is not OK and res.changed
                )
            wait.confirm()
            wait.send()
        return results

    def confirm(self, block: bool = False) -> None:
        """Take the answer of the WAIT in flight (``block``: and settle every held beat now)."""
        if self.wait is not None:
            self.wait.confirm(block)

    def _lost(self, reqs: Sequence[BeatRequest]) -> None:
        """The connection failed: hold ``reqs`` and every beat in flight, and close it (so that what
        is in flight and what is pending stay the same: nothing unread is left on a connection)."""
        self._forget_inflight()
        self.held.add(reqs)  # after the batches in flight: they are older
        self.conn.close()

    def _forget_inflight(self) -> None:
        """Hold every beat not collected yet; nothing is in flight any more."""
        self.held.add(req for t in self._open for req in t.reqs)
        self._open.clear()
        self._pending.clear()
        if self.wait is not None:
            self.wait.reset()

    def _read(self, ticket: _Ticket) -> None:
        """Read replies in submission order up to ``ticket``'s."""
        if ticket not in self._pending:  # sent on a connection that is gone
            raise ConnectionLost("the batch's connection was lost")
        while self._pending:
            first = self._pending.popleft()
            first.reply = self.conn.read(1)[0]
            if first is ticket:
                return
        raise ConnectionLost("the batch's connection was lost")

    def _rerun(self, ticket: _Ticket) -> Any:
        """NOSCRIPT for ``ticket``: every batch still in flight was sent before the script is loaded
        again, so read their replies first, then load the script and run ``ticket`` and those of them
        that got NOSCRIPT too once more, in submission order (one round trip)."""
        later = list(self._pending)
        if later:
            self._read(later[-1])
        again = [ticket, *(t for t in later if scripts.is_noscript(t.reply))]
        for t, reply in zip(again, self.script.rerun(self.conn, [t.payload for t in again]), strict=True):
            t.reply = reply
        return ticket.reply

    def _on_connect(self, conn: BatchConnection) -> None:
        if self._pending or self._open:  # the last connection was closed under us
            self._forget_inflight()
        self._reapply(conn)

    def _reapply(self, conn: BatchConnection) -> None:
        if not self.held:
            return
        done = reapply(conn, self.held, self.encode, self.liveness.beat_result, self.wait)
        self.reapplied += done.beats
        self.rerecorded += done.rerecorded
        if done.names and self.purge is not None:
            self.purge(done.names)
        log.warning(
            "held beats applied again on a new connection",
            extra={"beats": done.beats, "transitions_recorded_again": done.rerecorded, "redis": conn.address},
        )

    def counters(self) -> dict[str, float]:
        """The durability counters, for the metrics endpoint."""
        return {
            **self.held.counters(self.reapplied, self.rerecorded),
            "hbdns_heartbeat_wait_timeouts_total": self.wait.timeouts if self.wait is not None else 0,
            "hbdns_heartbeat_redis_connects_total": self.conn.connects,
        }

    def beats(self, reqs: Sequence[BeatRequest]) -> list[BeatResult]:
        if not reqs:
            return []
        return self.collect(self.submit(reqs))
