"""A clock that tests move by hand (``clock.now += 1.0``): pass it where code takes ``clock=``."""

from __future__ import annotations


class ManualClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now
