"""Opening Redis: the one place that turns ``HBDNS_REDIS_URL`` into a client.

Every service and the admin CLI call :func:`connect`; nothing else builds a Redis client from a
URL, so connection policy (timeouts, health checks, later Sentinel and Cluster) has one owner.
"""

from __future__ import annotations

from typing import Any

import redis


def connect(url: str, **kwargs: Any) -> redis.Redis:
    """A Redis client that returns ``str`` and fails fast instead of hanging when Redis is gone."""
    opts: dict[str, Any] = {
        "decode_responses": True,
        "socket_connect_timeout": 2.0,
        "socket_timeout": 5.0,
        "health_check_interval": 15,
    }
    opts.update(kwargs)
    return redis.Redis.from_url(url, **opts)
