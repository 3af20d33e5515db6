"""What the CLI prints: human tables by default, ``--json`` for scripts; and how it refuses input.

A refusal (:class:`Refused`, or a validation or store error) exits 2 with one line on stderr and
writes nothing; an unreachable Redis exits 1.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

EXIT_REFUSED = 2
EXIT_UNAVAILABLE = 1


class Refused(Exception):
    """Input the CLI refuses before touching Redis."""


def ts(ms_or_s: float, *, ms: bool = False) -> str:
    if not ms_or_s:
        return "-"
    seconds = ms_or_s / 1000 if ms else ms_or_s
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def duration(ms: int) -> str:
    s = max(0, ms // 1000)
    if s < 120:
        return f"{s}s"
    if s < 7200:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"


def table(rows: list[dict[str, Any]], columns: Sequence[str]) -> str:
    if not rows:
        return "(none)"
    cells = [[str(r.get(c, "")) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip()]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() for row in cells]
    return "\n".join(lines)


def emit(args: argparse.Namespace, data: Any, text: str) -> None:
    print(json.dumps(data, indent=2, sort_keys=True) if args.json else text)
