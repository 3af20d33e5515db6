"""The one test clock: a callable that returns ``now``, which the test moves by hand
(``clock.now += 1.0``); pass it where code takes ``clock=time.time`` or ``clock=time.monotonic``."""

from __future__ import annotations

import time


class Clock:
    """``Clock()`` starts at the real time, ``Clock(1000.0)`` at a fixed one."""

    def __init__(self, now: float | None = None) -> None:
        self.now = time.time() if now is None else now

    def __call__(self) -> float:
        return self.now
