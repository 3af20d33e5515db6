"""The client's clocks, and what it believes the server's clock reads (beat counters follow that).

The server accepts a counter only within its skew window of its own clock (default +-300 s). A
machine's wall clock can be off by hours: boards without a real-time clock boot with a stale one, and
NTP later steps it. So the counters do not follow the wall clock once the server has said what time
it is: a CLOCK_SKEW reply carries the server's clock, and from then on the estimate is that reading
plus the monotonic time elapsed since, which neither a wrong wall clock nor NTP's later correction
moves. Until a server has said so, the wall clock is the best guess there is.

Test hook: ``HBDNS_CLIENT_TEST_CLOCK_FILE=PATH`` makes the wall clock read off by the number of
seconds written in PATH (read on every use, so a test can "correct" the clock of a running client).
It only ever makes this client's own clock wrong; docs/client.md lists it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping

TEST_CLOCK_ENV = "HBDNS_CLIENT_TEST_CLOCK_FILE"


class Clock:
    """Wall clock in Unix ms (maybe wrong) and a monotonic clock in seconds (never steps)."""

    def __init__(
        self,
        wall_ns: Callable[[], int] = time.time_ns,
        mono: Callable[[], float] = time.monotonic,
        offset_file: str = "",
    ) -> None:
        self._wall_ns = wall_ns
        self.mono = mono
        self.offset_file = offset_file

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Clock:
        env = os.environ if env is None else env
        return cls(offset_file=env.get(TEST_CLOCK_ENV, ""))

    def wall_ms(self) -> int:
        return self._wall_ns() // 1_000_000 + self._offset_ms()

    def _offset_ms(self) -> int:
        if not self.offset_file:
            return 0
        try:
            with open(self.offset_file) as f:
                return int(float(f.read().strip() or 0) * 1000)
        except (OSError, ValueError):
            return 0


class ServerClock:
    """The server's clock as far as this client knows, in Unix ms."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self._anchor: tuple[int, float] | None = None  # (server ms, our monotonic s at that moment)
        self.window_ms: int | None = None  # the server's skew window, once it said so

    @property
    def synced(self) -> bool:
        """Whether a server has told us its clock (else :meth:`now_ms` is our wall clock)."""
        return self._anchor is not None

    def now_ms(self) -> int:
        if self._anchor is None:
            return self.clock.wall_ms()
        server_ms, at = self._anchor
        return server_ms + int((self.clock.mono() - at) * 1000)

    def sync(self, server_ms: int, at: float, window_ms: int | None = None) -> None:
        """The server read ``server_ms`` at our monotonic time ``at`` (when its answer arrived)."""
        self._anchor = (server_ms, at)
        if window_ms is not None:
            self.window_ms = window_ms

    def wall_offset_s(self) -> float | None:
        """Our wall clock minus the server's (seconds; positive: ours is ahead), once known."""
        if self._anchor is None:
            return None
        return (self.clock.wall_ms() - self.now_ms()) / 1000
