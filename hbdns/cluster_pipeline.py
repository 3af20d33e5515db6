"""Pipelines of commands and script calls that also run on a Redis Cluster, replies in order.

The notifier queues its Lua scripts (hbdns/lua/notify_*.lua) in pipelines together with plain
commands (a sent marker's script, the outage thread's script and the queue's in one round trip);
the sweeper's script calls go the same way (hbdns/script_calls.py). redis-py's cluster pipeline
refuses EVALSHA, so :func:`pipeline` gives, on a Redis Cluster, a :class:`SlotPipeline`: it takes
the same calls, and on :meth:`~SlotPipeline.execute` sends them in one ordinary pipeline per
primary (each call routed by its first key: every key of one call is in one slot), where redis-py
loads the scripts the node lacks before they run, and a failed node's calls reply with its error
while the slot map is read again. Replies come back in the order of the calls. On a standalone
Redis (or through Sentinel) it is the ordinary pipeline. Not transactional either way: no caller
needs more than each call's own atomicity.
"""

from __future__ import annotations

from typing import Any

import redis

from hbdns import scripts
from hbdns.connection import is_cluster

_BY_SHA = {s.sha: s for s in scripts.ALL}


def pipeline(r: Any) -> Any:
    """A non-transactional pipeline of ``r`` that script calls may be queued on."""
    return SlotPipeline(r) if is_cluster(r) else r.pipeline(transaction=False)


class SlotPipeline:
    """Calls queued for a Redis Cluster, sent per primary (see the module docstring)."""

    def __init__(self, r: Any) -> None:
        self.r = r
        self._calls: list[tuple[str, str, tuple[Any, ...], dict[str, Any]]] = []  # route key, name, args, kw

    def evalsha(self, sha: str, numkeys: int, *keys_and_args: Any) -> SlotPipeline:
        """A script call (what :class:`hbdns.scripts.Script` queues); routed by its first key."""
        if not numkeys:
            raise ValueError("a script call on a cluster needs a key to route by")
        self._calls.append((str(keys_and_args[0]), "evalsha", (sha, numkeys, *keys_and_args), {}))
        return self

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)

        def queue(*args: Any, **kwargs: Any) -> SlotPipeline:
            self._calls.append((str(args[0]), name, args, kwargs))  # every command used here: key first
            return self

        return queue

    def __len__(self) -> int:
        return len(self._calls)

    def execute(self, raise_on_error: bool = True) -> list[Any]:
        groups: dict[str, tuple[Any, list[int]]] = {}
        for n, (key, _, _, _) in enumerate(self._calls):
            node = self.r.get_node_from_key(key)
            groups.setdefault(node.name, (node, []))[1].append(n)
        out: list[Any] = [None] * len(self._calls)
        for node, idx in groups.values():
            pipe = self.r.get_redis_connection(node).pipeline(transaction=False)
            for n in idx:
                _, name, args, kwargs = self._calls[n]
                script = _BY_SHA.get(args[0]) if name == "evalsha" else None
                if script is not None:  # registered with the node's pipeline: loaded there if missing
                    numkeys = int(args[1])
                    script(pipe, args[2 : 2 + numkeys], args[2 + numkeys :])
                else:
                    getattr(pipe, name)(*args, **kwargs)
            try:
                replies = pipe.execute(raise_on_error=False)
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                self.r.nodes_manager.initialize()  # the slot map again: the node failed over or left
                replies = [exc] * len(idx)
            for n, reply in zip(idx, replies, strict=True):
                out[n] = reply
                if isinstance(reply, redis.ResponseError) and str(reply).startswith(("MOVED", "ASK")):
                    self.r.nodes_manager.initialize()  # slots moved: the next call routes anew
        self._calls = []
        if raise_on_error:
            for reply in out:
                if isinstance(reply, Exception):
                    raise reply
        return out
