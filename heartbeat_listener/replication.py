"""Are the held beats on a replica yet? The beat writer's WAIT, and its re-apply on a new connection.

:class:`ReplicaWait` confirms held beats (:mod:`heartbeat_listener.held`) with ``WAIT replicas
timeout_ms``. A WAIT holds its connection until the replicas answer; on the beat connection it would
hold the batches behind it, so it goes on a second connection, after a ``PUBLISH`` there: a PUBLISH
is the cheapest write Redis replicates, so that connection's WAIT covers everything the primary did
before it, the beat batches included. One WAIT at a time, at most every ``WAIT_EVERY``; its answer
is taken when it has come. A WAIT that times out (no replica, or a slow one) leaves the beats held
and none is sent for ``WAIT_PAUSE``.

:func:`reapply` runs the held beats first on a new beat connection (to whichever server is primary
now), then one WAIT for those whose transition it recorded again (the old primary's was lost).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from hbdns.liveness import OK, BeatRequest, BeatResult
from hbdns.resp import BatchConnection, ConnectionLost, encode_command
from heartbeat_listener.held import HeldBeats

# A pub/sub channel nobody listens to: PUBLISH to it is the write that the WAIT after it covers.
WAIT_CHANNEL = "hbdns:replication-mark"


class ReplicaWait:
    """WAITs for the beats held in ``held``, on a connection made like ``beats`` (its twin)."""

    WAIT_EVERY = 0.05  # seconds between two WAITs at least: many batches' transitions, one WAIT
    WAIT_PAUSE = 1.0  # seconds without WAIT after one timed out

    def __init__(
        self,
        beats: BatchConnection,
        held: HeldBeats,
        replicas: int,
        timeout: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.beats = beats
        self.held = held
        self.replicas = replicas
        self.clock = clock
        self.command = encode_command("WAIT", str(replicas), str(max(1, int(timeout * 1000))))
        self._mark_and_wait = encode_command("PUBLISH", WAIT_CHANNEL, "") + self.command
        self._conn = beats.twin()  # connected only when a WAIT is sent
        self._covered: dict[int, BeatRequest] | None = None  # what the WAIT in flight confirms
        self._next = 0.0  # no WAIT before this (clock)
        self.timeouts = 0

    def reset(self) -> None:
        """The beat connection is gone: the WAIT in flight was about a server that may be gone too."""
        self._covered = None
        self._conn.close()

    def send(self) -> None:
        """A WAIT for the beats held now, unless one is in flight, one went out less than
        ``WAIT_EVERY`` ago, or one timed out less than ``WAIT_PAUSE`` ago."""
        now = self.clock()
        if self._covered is not None or now < self._next or not self.held:
            return
        self._next = now + self.WAIT_EVERY
        try:
            self._conn.send(self._mark_and_wait, 2)
        except ConnectionLost:
            return  # the beats stay held; another try after WAIT_EVERY
        if self._conn.address != self.beats.address:  # mid-failover, Sentinel sent it elsewhere
            self._conn.close()
            return
        self._covered = self.held.snapshot()

    def confirm(self, block: bool = False) -> None:
        """Take the WAIT's answer if it has come. With ``block``: wait for it, then send one for
        whatever is still held and wait for that too (for a caller that wants them settled now)."""
        self._answer(block)
        if block and self.held:
            self._next = 0.0
            self.send()
            self._answer(block=True)

    def _answer(self, block: bool) -> None:
        conn = self._conn
        try:
            while self._covered is not None and (block or conn.ready()):
                reply = conn.read(1)[0]
                if conn.inflight:
                    continue  # the PUBLISH's answer; the WAIT's comes next
                covered, self._covered = self._covered, None
                if isinstance(reply, int) and reply >= self.replicas:
                    self.held.release(covered)
                else:  # timed out (or refused): the beats stay held
                    self.timeouts += 1
                    self._next = self.clock() + self.WAIT_PAUSE
        except ConnectionLost:
            self._covered = None


class Reapplied(NamedTuple):
    beats: int  # held beats applied again
    rerecorded: int  # of them, how many recorded their transition again (it had been lost)
    names: list[str]  # the names whose answers that changed


def reapply(
    conn: BatchConnection,
    held: HeldBeats,
    encode: Callable[[Sequence[BeatRequest], Sequence[int]], bytes],
    parse: Callable[[Any], BeatResult],
    wait: ReplicaWait | None,
    chunk: int = 256,
) -> Reapplied:
    """The held beats, oldest first, each with its age, in script calls of ``chunk`` beats, on a new
    connection before anything else goes over it. Those the server already had (a replay, no news)
    or refuses are forgotten; those that recorded a transition again stay held until a WAIT
    confirms them (at once when ``wait`` is None: there is nothing to wait for)."""
    aged = held.aged()
    reqs = [req for req, _ in aged]
    ages = [age for _, age in aged]
    done, rerecorded = 0, 0
    names: list[str] = []
    applied: dict[int, BeatRequest] = {}
    for i in range(0, len(reqs), chunk):
        part = reqs[i : i + chunk]
        reply = conn.roundtrip(encode(part, ages[i : i + chunk]), 1)[0]
        if type(reply) is not list or len(reply) != len(part):
            continue  # not applied: they stay held for the next connection
        settled = {}
        for req, raw in zip(part, reply, strict=True):
            res = OK if raw == "ok" else parse(raw)
            if res.changed:
                rerecorded += 1
                names.extend(res.names)
                applied[req.account_id] = req
            else:
                settled[req.account_id] = req
        held.release(settled)
        done += len(part)
    if applied and wait is not None:
        acked = conn.roundtrip(wait.command, 1)[0]
        if isinstance(acked, int) and acked >= wait.replicas:
            held.release(applied)
    elif applied:
        held.release(applied)
    return Reapplied(done, rerecorded, names)
