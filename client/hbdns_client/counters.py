"""Beat counters: strictly increasing across restarts, and as close to the server's clock as known.

``next() = max(server clock estimate, floor + 1)``, where the floor is the highest counter that the
server may have accepted: sent by this process and not proven refused, or found in the state file
(an earlier run, or ``send``/``check`` between two beats). The counter is written to the state file
before the beat leaves, so no later counter, in this process or the next, is ever at or below it.

A counter the server answered CLOCK_SKEW for was refused, so it leaves the floor: otherwise a beat
sent with a clock an hour fast would keep every later counter an hour fast. That answer also says
the server's clock T and window W: nothing above T + W can have been accepted before T, so the floor
is capped there too (this covers a counter an earlier process wrote and then died before the answer).
"""

from __future__ import annotations

from hbdns_client.clock import ServerClock
from hbdns_client.state import StateFile

KEEP = 32  # counters of this process that may have been accepted, newest last (older ones fold into the base)


class Counters:
    def __init__(self, clock: ServerClock, state: StateFile | None = None) -> None:
        self.clock = clock
        self.state = state
        self._base = state.read() if state is not None else 0  # floor from outside this process
        self._sent: list[int] = []  # ascending: each next() is above everything before it

    @property
    def floor(self) -> int:
        return max(self._base, self._sent[-1]) if self._sent else self._base

    def next(self) -> int:
        """The counter for the next beat, already stored in the state file."""
        if self.state is not None:
            stored = self.state.read()
            if stored != self.state.written and stored > self._base:  # another command beat meanwhile
                self._base = stored
        counter = max(self.clock.now_ms(), self.floor + 1)
        self._sent.append(counter)
        if len(self._sent) > KEEP:
            self._base = max(self._base, self._sent.pop(0))
        if self.state is not None:
            self.state.write(counter)
        return counter

    def refused(self, counter: int, server_ms: int | None = None, window_ms: int | None = None) -> None:
        """The server answered CLOCK_SKEW to ``counter`` (at its clock ``server_ms``, window ``window_ms``)."""
        before = self.floor
        if counter in self._sent:
            self._sent.remove(counter)
        if server_ms is not None and window_ms is not None and counter > server_ms:
            cap = server_ms + window_ms
            self._sent = [c for c in self._sent if c <= cap]
            self._base = min(self._base, cap)
        if self.state is not None and self.floor != before:
            self.state.write(self.floor)
