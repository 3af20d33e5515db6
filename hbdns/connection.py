"""Opening Redis: the one place that turns a Redis URL into a client.

Every service and the admin CLI call :func:`connect`; nothing else builds a Redis client from a
URL, so connection policy (timeouts, health checks, failover) has one owner. The URL forms
(standalone, ``redis+sentinel://``, ``redis+cluster://``) are :mod:`hbdns.redis_url`'s, whose
names are re-exported here: with Sentinel every (re)connect asks the sentinels for the primary;
with Cluster the client is redis-py's ``RedisCluster`` (:func:`is_cluster`: callers then keep each
call's keys in one slot) and the raw hot paths route by slot themselves (:mod:`hbdns.cluster_route`).
"""

from __future__ import annotations

from typing import Any

import redis
from redis.backoff import ExponentialWithJitterBackoff, NoBackoff
from redis.cluster import ClusterNode, RedisCluster
from redis.exceptions import RedisClusterException
from redis.retry import Retry
from redis.sentinel import Sentinel

from hbdns.redis_url import (
    CLUSTER_OPTIONS,
    CLUSTER_PORT,
    OPTIONS,
    SENTINEL_PORT,
    ClusterUrl,
    RedisUrlError,
    SentinelUrl,
    check,
    is_cluster_url,
    is_sentinel,
    parse_cluster,
    parse_sentinel,
    redact,
    scheme,
)

__all__ = [
    "CLUSTER_OPTIONS",
    "CLUSTER_PORT",
    "DEFAULTS",
    "OPTIONS",
    "SENTINEL_PORT",
    "ClusterUrl",
    "RedisUrlError",
    "SentinelUrl",
    "check",
    "cluster_node_kwargs",
    "connect",
    "is_cluster",
    "is_cluster_url",
    "is_sentinel",
    "parse_cluster",
    "parse_sentinel",
    "redact",
    "scheme",
    "sentinel_manager",
]

DEFAULTS: dict[str, Any] = {
    "decode_responses": True,
    "socket_connect_timeout": 2.0,
    "socket_timeout": 5.0,
    "health_check_interval": 15,
}


def connect(url: str, **kwargs: Any) -> redis.Redis:
    """A Redis client that returns ``str`` and fails fast instead of hanging when Redis is gone.

    With a Sentinel URL, the client's connections find the primary (or a replica) through Sentinel
    each time they connect, so every user of the client follows a failover by reconnecting."""
    opts = dict(DEFAULTS)
    opts.update(kwargs)
    check(url)
    if is_sentinel(url):
        return _sentinel_client(parse_sentinel(url), opts)
    if is_cluster_url(url):
        return _cluster_client(parse_cluster(url), opts)  # type: ignore[return-value]
    return redis.Redis.from_url(url, **opts)


def is_cluster(client: object) -> bool:
    """Whether ``client`` talks to a Redis Cluster: callers then keep each call's keys in one slot."""
    return isinstance(client, RedisCluster)


def cluster_node_kwargs(target: ClusterUrl, opts: dict[str, Any]) -> dict[str, Any]:
    """Keyword arguments of a ``redis.Redis`` to one node of the cluster (login, TLS, timeouts)."""
    node = {k: v for k, v in opts.items() if k != "health_check_interval"}
    node.update(username=target.username, password=target.password)
    if target.ssl:
        node.update(ssl=True, **dict(target.ssl_options))
    return node


# A command whose node is gone is tried 5 more times (the slot map asked again each time), with
# jittered pauses of at most 0.05, 0.1, 0.2, 0.4, 0.5 s, before the error reaches the caller, whose
# own loop retries later: a failover (cluster-node-timeout + election) is not waited out here.
def _cluster_retry() -> Retry:
    return Retry(ExponentialWithJitterBackoff(base=0.05, cap=0.5), 5)  # one per client: Retry is mutable


def _cluster_client(target: ClusterUrl, opts: dict[str, Any]) -> RedisCluster:
    """A RedisCluster: it contacts the listed nodes now, for the slot map (redis-py has no lazy mode),
    and raises ``redis.ConnectionError`` (no password in it) when none gives it (down, wrong login)."""
    nodes = [ClusterNode(host, port) for host, port in target.nodes]
    try:
        return RedisCluster(startup_nodes=nodes, retry=_cluster_retry(), **cluster_node_kwargs(target, opts))
    except (redis.RedisError, RedisClusterException, OSError) as exc:
        where = ",".join(f"{h}:{p}" for h, p in target.nodes)
        raise redis.ConnectionError(f"no Redis Cluster node gave its slot map ({where}): {exc}") from None


def _sentinel_client(target: SentinelUrl, opts: dict[str, Any]) -> redis.Redis:
    ssl = dict(target.ssl_options)
    sentinel_kwargs: dict[str, Any] = {
        k: v for k, v in opts.items() if k in ("socket_timeout", "socket_connect_timeout", "socket_keepalive")
    }
    # each sentinel is asked once: a dead one must not hold a reconnect for redis-py's retry backoff
    sentinel_kwargs.update(
        retry=Retry(NoBackoff(), 0),
        decode_responses=True,
        username=target.sentinel_username,
        password=target.sentinel_password,
    )
    if target.sentinel_ssl:
        sentinel_kwargs.update(ssl=True, **ssl)
    node: dict[str, Any] = dict(opts, db=target.db, username=target.username, password=target.password)
    if target.ssl:
        node.update(ssl=True, **ssl)
    manager = Sentinel(
        list(target.sentinels), min_other_sentinels=target.min_other_sentinels, sentinel_kwargs=sentinel_kwargs
    )
    if target.role == "replica":
        return manager.slave_for(target.service, **node)
    return manager.master_for(target.service, **node)


def sentinel_manager(client: redis.Redis) -> Sentinel | None:
    """The Sentinel a client from :func:`connect` asks, or None for a standalone or cluster client."""
    manager = getattr(getattr(client, "connection_pool", None), "sentinel_manager", None)
    return manager if isinstance(manager, Sentinel) else None
