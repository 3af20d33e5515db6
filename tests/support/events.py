"""Reading the transition streams of every shard, for tests and benchmarks.

Since the schema was sharded (issue 16) each shard has a stream of its own (``keys.events(s)``);
a test that wants "the events" reads all of them, merged in entry-id order (Redis' clock in ms, so
exact per account, whose events are all in one shard, and close to the order they happened across
accounts).
"""

from __future__ import annotations

from typing import Any

import redis

from hbdns import keys

Entry = tuple[int, str, dict[str, str]]  # shard, stream entry id, fields


def _order(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def marks(r: Any) -> dict[int, str]:
    """The last entry id of every shard's stream ("0-0" for an empty or missing one)."""
    out = {}
    for shard in keys.all_shards():
        try:
            out[shard] = str(r.xinfo_stream(keys.events(shard))["last-generated-id"])
        except redis.ResponseError:
            out[shard] = "0-0"
    return out


def entries(r: Any, since: dict[int, str] | None = None) -> list[Entry]:
    """Every shard's entries (after ``since``'s marks, when given), merged in entry-id order."""
    out: list[Entry] = []
    for shard in keys.all_shards():
        start = "-" if not since or since.get(shard, "0-0") == "0-0" else f"({since[shard]}"
        out.extend((shard, str(i), f) for i, f in r.xrange(keys.events(shard), min=start))
    out.sort(key=lambda e: _order(e[1]))
    return out


def fields(r: Any, since: dict[int, str] | None = None) -> list[dict[str, str]]:
    """The entries' fields only, in order."""
    return [f for _, _, f in entries(r, since)]


def length(r: Any) -> int:
    """How many entries all streams hold."""
    return sum(int(r.xlen(keys.events(shard))) for shard in keys.all_shards())


def groups(r: Any, group: str) -> list[dict[str, Any]]:
    """``group``'s XINFO GROUPS entry on every shard stream that has it."""
    out = []
    for shard in keys.all_shards():
        try:
            infos = r.xinfo_groups(keys.events(shard))
        except redis.ResponseError:
            continue
        out.extend(g for g in infos if g["name"] == group)
    return out


def settled(r: Any, group: str) -> bool:
    """``group`` exists on every shard stream and has read and acknowledged everything there."""
    gs = groups(r, group)
    return len(gs) == keys.SHARDS and all(g["pending"] == 0 and g["lag"] == 0 for g in gs)


def consumers(r: Any, group: str) -> list[dict[str, Any]]:
    """The consumers of ``group`` over every shard stream (one entry per shard they are known on)."""
    out = []
    for shard in keys.all_shards():
        try:
            out.extend(r.xinfo_consumers(keys.events(shard), group))
        except redis.ResponseError:
            continue
    return out
