"""The listener's Redis stages on Redis Cluster: each command to the primary that owns its slot.

On a standalone or Sentinel Redis the listener keeps one connection per stage
(:mod:`heartbeat_listener.redis_io`). On Cluster a router (:class:`hbdns.cluster_route.ClusterRouter`)
places each raw command on its slot's primary, following MOVED and ASK and asking for the slot map
again while a failover settles; every node's share goes out in one write, all nodes before any
reply is read:

- lookups: one HMGET per account, whatever their slots; idempotent, so a lost reply is asked again;
- beats: one EVALSHA per shard of the batch (a shard table of one row: one slot per call), every
  shard's call in one router round; each shard's beats keep their order.

Given up against the single connection: the pipelining depth (the router sends and reads in one
call, so :meth:`ClusterBeats.submit` has the results when it returns) and the WAIT for replicas.
Kept: beats whose reply was lost, or that could not be placed, are held
(:mod:`heartbeat_listener.held`) and run first, with their age, once their shard is tried again;
a shard whose primary is away does not hold up the others (:class:`ClusterBeats`). NOSCRIPT (a
node's script cache flushed, a promoted replica): SCRIPT LOAD on that node and the call again, once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol

import redis

from hbdns import keys, scripts
from hbdns.liveness import OK, BeatRequest, BeatResult, Liveness, by_shard
from hbdns.plans import Plan
from hbdns.resp import BatchConnection
from heartbeat_listener.beat_encoding import BeatEncoder
from heartbeat_listener.held import HeldBeats
from heartbeat_listener.protocol import AccountInfo, StoreUnavailable
from heartbeat_listener.redis_io import AccountCodec

log = logging.getLogger(__name__)

Target = int | str | bytes  # a slot, or a key whose slot it is


class Router(Protocol):
    """What the stages need of :class:`hbdns.cluster_route.ClusterRouter`."""

    on_connect: list[Callable[[BatchConnection], object]]

    def execute(self, commands: Sequence[tuple[Target, bytes]], *, idempotent: bool = False) -> list[Any]: ...

    def close(self) -> None: ...


class ClusterAccounts(AccountCodec):
    """The lookup stage on Cluster: each account's HMGET to its primary, one router round."""

    def __init__(self, router: Router, plans: Mapping[str, Plan]) -> None:
        super().__init__(plans)
        self.router = router

    def __call__(self, ids: Sequence[int]) -> dict[int, AccountInfo | str]:
        commands = [(keys.account(i), self.encode((i,))) for i in ids]
        return self.parse(ids, self.router.execute(commands, idempotent=True))


class _Done:
    """A batch the router has run: its results (the interface of redis_io's tickets)."""

    __slots__ = ("results",)

    def __init__(self, results: list[BeatResult]) -> None:
        self.results = results


def _lost(reply: Any, count: int) -> bool:
    """Whether a shard's reply says its beats may not have been stored (to be held)."""
    if isinstance(reply, redis.ResponseError):
        return False  # an error reply: the script did not run
    return type(reply) is not list or len(reply) != count


UNAVAILABLE = BeatResult("unavailable", False, "", "", ())  # held: its shard's primary is away


class ClusterBeats:
    """The write stage on Cluster, with the interface of :class:`heartbeat_listener.redis_io.RedisBeats`.

    A shard whose call's reply was lost (its primary away: a failover) is left alone for
    ``backoff`` seconds: its beats are held at once meanwhile (status ``unavailable``, counted as
    redis_down) while the other shards' beats go on; then its held beats run first. Only a batch
    whose every call tried lost its reply raises StoreUnavailable (the shell then pauses as a whole:
    the cluster is away)."""

    def __init__(
        self,
        router: Router,
        liveness: Liveness,
        source: str = "beat",
        *,
        purge: Callable[[Iterable[str]], None] | None = None,
        held: HeldBeats | None = None,
        backoff: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.router = router
        self.liveness = liveness
        self.script = scripts.BEAT
        self.encoder = BeatEncoder(liveness, source)
        self.purge = purge
        self.held = held if held is not None else HeldBeats(clock=clock)
        self.backoff = backoff
        self.clock = clock
        router.on_connect.append(lambda c: c.roundtrip(self.script.load_command, 1))  # each node its own cache
        self._down: dict[int, float] = {}  # shard -> no call before this (clock)
        self.reapplied = 0  # held beats applied again
        self.rerecorded = 0  # of those, how many recorded their transition again

    def _run(self, reqs: Sequence[BeatRequest], ages: Sequence[int] | None = None) -> list[tuple[list[int], Any]]:
        """One router round: per shard of ``reqs`` its call; (positions in ``reqs``, reply) per
        shard. A shard whose reply was lost is down for ``backoff``."""
        groups = list(by_shard(reqs).items())
        commands: list[tuple[Target, bytes]] = []
        for shard, positions in groups:
            part_ages = None if ages is None else [ages[i] for i in positions]
            commands.append((keys.deadlines(shard), self.encoder.encode([reqs[i] for i in positions], part_ages)))
        replies = self.router.execute(commands)
        redo = [j for j, reply in enumerate(replies) if scripts.is_noscript(reply)]
        if redo:  # the call did not run: load the script on those nodes, then once more
            self.router.execute([(commands[j][0], self.script.load_command) for j in redo], idempotent=True)
            for j, reply in zip(redo, self.router.execute([commands[j] for j in redo]), strict=True):
                replies[j] = reply
        now = self.clock()
        for (shard, positions), reply in zip(groups, replies, strict=True):
            if _lost(reply, len(positions)):
                self._down[shard] = now + self.backoff
            else:
                self._down.pop(shard, None)
        return [(positions, reply) for (_, positions), reply in zip(groups, replies, strict=True)]

    def _up(self, reqs: Sequence[BeatRequest]) -> tuple[list[int], list[int]]:
        """Positions of ``reqs`` whose shard may be called now, and of those whose shard is down."""
        if not self._down:
            return list(range(len(reqs))), []
        now = self.clock()
        up: list[int] = []
        down: list[int] = []
        for i, req in enumerate(reqs):
            (down if self._down.get(keys.shard_of(req.account_id), 0.0) > now else up).append(i)
        return up, down

    def submit(self, reqs: Sequence[BeatRequest]) -> _Done:
        """Run a batch (held beats first); the beats that may not be stored are held."""
        self._reapply()
        results: list[BeatResult] = [UNAVAILABLE] * len(reqs)
        up, held = self._up(reqs)
        stored, lost = 0, 0
        parse = self.liveness.beat_result
        if up:
            for positions, reply in self._run([reqs[i] for i in up]):
                if _lost(reply, len(positions)):
                    held += [up[i] for i in positions]
                    lost += len(positions)
                elif isinstance(reply, redis.ResponseError):  # nothing of this shard's call was applied
                    failed = BeatResult("noscript" if scripts.is_noscript(reply) else "error", False, "", "", ())
                    for i in positions:
                        results[up[i]] = failed
                else:
                    stored += len(positions)
                    for i, raw in zip(positions, reply, strict=True):
                        results[up[i]] = OK if raw == "ok" else parse(raw)
        if held:
            self.held.add(reqs[i] for i in sorted(held))
            if lost and not stored:
                raise StoreUnavailable(f"{len(held)} beats not stored for sure (their primaries away); held")
        return _Done(results)

    def _reapply(self, chunk: int = 256) -> None:
        """The held beats of shards not down, oldest first, each with its age; those stored are
        forgotten (with their transitions' names purged), the others stay held."""
        if not self.held:
            return
        aged = self.held.aged()
        reqs = [req for req, _ in aged]
        up, _ = self._up(reqs)
        reqs, ages = [reqs[i] for i in up], [aged[i][1] for i in up]
        names: list[str] = []
        parse = self.liveness.beat_result
        for start in range(0, len(reqs), chunk):
            part = reqs[start : start + chunk]
            for positions, reply in self._run(part, ages[start : start + chunk]):
                if _lost(reply, len(positions)) or isinstance(reply, redis.ResponseError):
                    continue  # they stay held (a script error: until too old)
                settled = {}
                for i, raw in zip(positions, reply, strict=True):
                    res = OK if raw == "ok" else parse(raw)
                    if res.changed:
                        self.rerecorded += 1
                        names.extend(res.names)
                    settled[part[i].account_id] = part[i]
                self.reapplied += len(settled)
                self.held.release(settled)
        if names and self.purge is not None:
            self.purge(names)
        if names:
            log.warning("held beats applied again", extra={"transitions_recorded_again": len(names)})

    def collect(self, ticket: _Done) -> list[BeatResult]:
        return ticket.results

    def hold(self, reqs: Sequence[BeatRequest]) -> None:
        """Keep authenticated beats that cannot be sent now: they run first on the next batch."""
        self.held.add(reqs)

    def confirm(self, block: bool = False) -> None:
        """Nothing to confirm: no WAIT on Cluster (see the module's docstring)."""

    def counters(self) -> dict[str, float]:
        """The durability counters, for the metrics endpoint."""
        return self.held.counters(self.reapplied, self.rerecorded)

    def beats(self, reqs: Sequence[BeatRequest]) -> list[BeatResult]:
        if not reqs:
            return []
        return self.collect(self.submit(reqs))
