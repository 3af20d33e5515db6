"""Beats the listener applies again after a reconnect, because Redis may not have kept them.

Redis replicates asynchronously: a beat script the primary ran and answered can be lost when the
primary dies before a replica has it (a Sentinel failover), and so can the last second of writes
after a restart from an ``appendfsync everysec`` AOF, and the batches in flight when a connection
broke. Beats are idempotent under the replay counter (a beat applied twice is a ``replay`` the
second time), so the writer keeps, per account, the newest beat whose outcome it cannot be sure of:

- a beat that recorded a transition, until ``WAIT`` says enough replicas have it;
- every beat of a batch in flight or unsent when the connection was lost.

On the next connection (to whichever server is primary then) they run first, in the order they
were kept, each with its age (how long ago it was kept): the beat script counts it from then, so a
beat that came before its deadline is no outage however late it is written, and a beat kept long
ago keeps its account live only as long as it would have. Bounded: at most ``max_size`` accounts
(the oldest go first, counted in ``dropped``), none older than ``max_age`` seconds (by then a lost
transition has long been re-recorded by the account's next beat, or its counter is out of the
replay window).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping

from hbdns.liveness import BeatRequest


class HeldBeats:
    """Newest kept beat per account, in the order kept (a dict keeps insertion order)."""

    def __init__(self, max_size: int = 100_000, max_age: float = 60.0, clock: Callable[[], float] = time.monotonic):
        self.max_size = max_size
        self.max_age = max_age
        self.clock = clock
        self._beats: dict[int, tuple[BeatRequest, float]] = {}
        self.dropped = 0  # beats that had to go before they were confirmed or applied again

    def __len__(self) -> int:
        return len(self._beats)

    def __bool__(self) -> bool:
        return bool(self._beats)

    def add(self, reqs: Iterable[BeatRequest]) -> None:
        """Keep ``reqs``: per account the newest (by counter, else the later one), moved to the end."""
        beats, now = self._beats, self.clock()
        for req in reqs:
            kept = beats.pop(req.account_id, None)
            if kept is not None and kept[0].counter is not None and (req.counter or 0) < kept[0].counter:
                beats[req.account_id] = kept  # the newer one stays, with its own time
                continue
            beats[req.account_id] = (req, now)
        self._prune(now)

    def _prune(self, now: float) -> None:
        beats = self._beats
        while len(beats) > self.max_size:
            del beats[next(iter(beats))]
            self.dropped += 1
        oldest = now - self.max_age
        while beats:
            first = next(iter(beats))
            if beats[first][1] >= oldest:
                break
            del beats[first]
            self.dropped += 1

    def beats(self) -> list[BeatRequest]:
        """Every kept beat, oldest first."""
        self._prune(self.clock())
        return [req for req, _ in self._beats.values()]

    def aged(self) -> list[tuple[BeatRequest, int]]:
        """Every kept beat with how long ago it was kept (ms), oldest first."""
        now = self.clock()
        self._prune(now)
        return [(req, int((now - at) * 1000)) for req, at in self._beats.values()]

    def counters(self, reapplied: int, rerecorded: int) -> dict[str, float]:
        """The writer's durability counters (metrics): held now, dropped, and of the beats its
        writer ``reapplied``, how many ``rerecorded`` their transition (it had been lost)."""
        return {
            "hbdns_heartbeat_held_beats": len(self),
            "hbdns_heartbeat_held_dropped_total": self.dropped,
            "hbdns_heartbeat_reapplied_total": reapplied,
            "hbdns_heartbeat_rerecorded_total": rerecorded,
        }

    def snapshot(self) -> dict[int, BeatRequest]:
        """What a ``WAIT`` sent now covers: the beats kept so far."""
        return {account_id: req for account_id, (req, _) in self._beats.items()}

    def release(self, covered: Mapping[int, BeatRequest]) -> int:
        """Forget the beats of ``covered`` that were not replaced since; returns how many went."""
        beats = self._beats
        gone = 0
        for account_id, req in covered.items():
            kept = beats.get(account_id)
            if kept is not None and kept[0] is req:
                del beats[account_id]
                gone += 1
        return gone
