"""A zone's SOA serial in the sharded schema: its hash's ``serial`` plus every shard's count.

The transition scripts of a shard count the changes they make to a zone's answers in that shard's
:func:`hbdns.keys.serials` (one slot, so no script touches another shard); admin changes bump the
zone hash's own ``serial``. The SOA serial is the sum, modulo 2**32 (RFC 1982 arithmetic keeps it
"newer" across the wrap as long as fewer than 2**31 changes happen between two reads).
"""

from __future__ import annotations

from typing import Any

from hbdns import keys

MOD = 2**32


def read(r: Any, apex: str) -> int:
    """The zone's current SOA serial; one pipelined round trip (per node on Cluster)."""
    return sum_serial(fetch(r, [apex])[apex])


def fetch(r: Any, apexes: list[str]) -> dict[str, list[Any]]:
    """For each apex the raw parts (zone ``serial``, then each shard's count), read in one pipeline."""
    pipe = r.pipeline(transaction=False)
    for apex in apexes:
        pipe.hget(keys.zone(apex), "serial")
        for shard in keys.all_shards():
            pipe.hget(keys.serials(shard), apex)
    flat = pipe.execute()
    width = 1 + keys.SHARDS
    return {apex: flat[i * width : (i + 1) * width] for i, apex in enumerate(apexes)}


def sum_serial(parts: list[Any]) -> int:
    """The serial from its parts (absent parts count 0)."""
    return sum(int(p or 0) for p in parts) % MOD
