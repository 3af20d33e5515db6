"""Many script calls in as few round trips as the Redis deployment allows, replies in order.

On a standalone Redis (or through Sentinel) the calls go in one pipeline. redis-py's cluster
pipeline refuses EVALSHA ("blocked when running redis in cluster mode"), so on a Redis Cluster the
calls are grouped by the primary that owns each call's slot (its first key: every key of a call is
in one slot) and sent in one ordinary pipeline per primary, which loads its scripts on that node
before it runs (hbdns/scripts.py). A primary that fails (gone, failed over, slots moved) fails only
its own calls: their replies are the exception, the other primaries' calls have run, and the
cluster's slot map is read again for the next call; the callers' steps are idempotent and retry.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import redis

from hbdns.connection import is_cluster
from hbdns.scripts import Arg, Script

log = logging.getLogger(__name__)

Call = tuple[Script, Sequence[str], Sequence[Arg]]


def run(r: Any, calls: Sequence[Call]) -> list[Any]:
    """The replies of ``calls``, in order. Standalone: one pipeline (an error reply raises, as a
    pipeline does). Cluster: one pipeline per primary; a failed primary's replies are exceptions."""
    if not calls:
        return []
    if not is_cluster(r):
        pipe = r.pipeline(transaction=False)
        for script, keys_, args in calls:
            script(pipe, keys_, args)
        return list(pipe.execute())
    return _per_primary(r, calls)


def _per_primary(r: Any, calls: Sequence[Call]) -> list[Any]:
    groups: dict[str, tuple[Any, list[int]]] = {}
    for n, (_, keys_, _) in enumerate(calls):
        if not keys_:
            raise ValueError("a script call on a cluster needs a key to route by")
        node = r.get_node_from_key(keys_[0])
        groups.setdefault(node.name, (node, []))[1].append(n)
    out: list[Any] = [None] * len(calls)
    failed = 0
    for node, idx in groups.values():
        pipe = r.get_redis_connection(node).pipeline(transaction=False)
        for n in idx:
            script, keys_, args = calls[n]
            script(pipe, keys_, args)
        try:
            replies = pipe.execute(raise_on_error=False)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            replies = [exc] * len(idx)
        for n, reply in zip(idx, replies, strict=True):
            out[n] = reply
            failed += isinstance(reply, Exception)
    if failed:
        log.warning("script calls failed on a cluster node; reading the slot map again", extra={"failed": failed})
        try:
            r.nodes_manager.initialize()
        except redis.RedisError as exc:
            log.warning("cannot read the cluster's slot map", extra={"error": str(exc)})
    return out
