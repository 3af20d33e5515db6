"""What every benchmark returns, so ``make bench`` can write one report.

A benchmark module ``bench/bench_<area>.py`` has ``run(quick: bool) -> list[Metric]``. Each metric
carries its own same-run reference (redis-benchmark, pdns bind backend...) where one applies.
"""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Metric:
    name: str  # e.g. "beats/s, one listener process"
    unit: str  # e.g. "beats/s", "s", "bytes"
    samples: tuple[float, ...]  # one value per repeated run
    reference_name: str = ""  # e.g. "redis-benchmark, same write pattern"
    reference_samples: tuple[float, ...] = ()
    goal: str = ""  # e.g. ">= 50000 and >= 0.35 x reference"
    met: bool | None = None  # whether the goal held (None: no goal)
    notes: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def median(self) -> float:
        return statistics.median(self.samples) if self.samples else float("nan")

    @property
    def max(self) -> float:
        return max(self.samples) if self.samples else float("nan")

    @property
    def reference_median(self) -> float | None:
        return statistics.median(self.reference_samples) if self.reference_samples else None

    @property
    def ratio(self) -> float | None:
        ref = self.reference_median
        return self.median / ref if ref else None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.update(median=self.median, max=self.max, reference_median=self.reference_median, ratio=self.ratio)
        return d


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(p / 100 * len(ordered) + 0.5) - 1))
    return ordered[k]
