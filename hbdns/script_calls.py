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

from hbdns import cluster_pipeline
from hbdns.connection import is_cluster
from hbdns.scripts import Arg, Script

log = logging.getLogger(__name__)

Call = tuple[Script, Sequence[str], Sequence[Arg]]


def run(r: Any, calls: Sequence[Call]) -> list[Any]:
    """The replies of ``calls``, in order. Standalone: one pipeline (an error reply raises, as a
    pipeline does). Cluster: one pipeline per primary (:mod:`hbdns.cluster_pipeline`); a failed
    primary's replies are exceptions."""
    if not calls:
        return []
    if not is_cluster(r):
        pipe = r.pipeline(transaction=False)
        for script, keys_, args in calls:
            script(pipe, keys_, args)
        return list(pipe.execute())
    slot_pipe = cluster_pipeline.pipeline(r)  # a SlotPipeline here
    for script, keys_, args in calls:
        script(slot_pipe, keys_, args)
    out = slot_pipe.execute(raise_on_error=False)
    failed = sum(isinstance(reply, Exception) for reply in out)
    if failed:
        log.warning("script calls failed on a cluster node", extra={"failed": failed})
    return out
