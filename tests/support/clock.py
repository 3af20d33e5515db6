"""The one test clock: a callable that returns ``now``, which the test moves by hand."""

from __future__ import annotations

import time


class Clock:
    """Injected where code takes ``clock=time.time``; ``Clock()`` starts at the real time."""

    def __init__(self, now: float | None = None) -> None:
        self.now = time.time() if now is None else now

    def __call__(self) -> float:
        return self.now
