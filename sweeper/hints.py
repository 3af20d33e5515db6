"""Keyspace hints: Redis' ``expired`` events of ``alive`` keys make the sweep happen earlier.

They are a shortcut, not a clock and not a queue: Redis emits them only when it deletes the key
(late under load, see docs), and pub/sub loses whatever is published while nobody listens. So a hint
only runs the same idempotent neutralize script for the accounts it names, and every (re)subscription
is followed by one sweep that covers the gap in which the subscriber heard nothing. Redis must run
with ``notify-keyspace-events Ex`` (deploy/redis.conf).

Not on a Redis Cluster: there each primary publishes the events of its own keys only, so hints
would need a subscription per primary that follows failovers and slot moves, for a gain the sweep
already gives (every ``HBDNS_SWEEP_INTERVAL``, <= 1 s by default), and the deployments big enough
for a cluster are those where Redis emits ``expired`` late (it deletes keys with a TTL by sampling;
docs/notifications.md has the figures). The service does not start the ``hints``
role on a cluster and says so in its log (sweeper/main.py).
"""

from __future__ import annotations

import logging
from typing import Any

import redis

from hbdns import keys
from hbdns.liveness import Liveness, Neutralized
from hbdns.purge import Purger
from sweeper.mass_watch import MassWatch
from sweeper.metrics import SweeperMetrics
from sweeper.sweeper import after_neutralized

log = logging.getLogger(__name__)


def expired_channel(db: int) -> str:
    return f"__keyevent@{db}__:expired"


class HintSubscriber:
    """Listens to ``expired`` events of ``alive`` keys (each names an account and family); redis
    must run with ``notify-keyspace-events Ex``."""

    def __init__(
        self,
        r: redis.Redis,
        liveness: Liveness,
        purger: Purger | None = None,
        *,
        max_batch: int = 1000,
        watch: MassWatch | None = None,
        metrics: SweeperMetrics | None = None,
    ):
        self.r = r
        self.metrics = metrics
        self.liveness = liveness
        self.purger = purger
        self.watch = watch  # sees each batch before it is neutralized (mass outages)
        self.max_batch = max_batch
        pool = getattr(r, "connection_pool", None)  # none on a RedisCluster (db 0 only; no hints there)
        self.channel = expired_channel(int(pool.connection_kwargs.get("db", 0) or 0) if pool is not None else 0)
        self._pubsub: Any = None
        self.subscriptions = 0  # how often we (re)subscribed; each time followed by a catch-up sweep

    def _connect(self) -> Any:
        pubsub = self.r.pubsub()
        pubsub.subscribe(self.channel)
        self._pubsub = pubsub
        return pubsub

    def close(self) -> None:
        if self._pubsub is not None:
            try:
                self._pubsub.close()
            except Exception:
                pass
            self._pubsub = None

    def step(self, timeout: float = 1.0) -> int:
        """Wait up to ``timeout`` for hints, drain what arrived, neutralize; returns how many were neutralized."""
        pubsub = self._pubsub or self._connect()
        ids: list[tuple[int, int]] = []  # (account id, family) of expired alive keys
        catch_up = False
        try:
            msg = pubsub.get_message(timeout=timeout)
            while msg is not None:
                if msg["type"] == "subscribe":
                    catch_up = True  # the first time, or redis-py re-subscribed after a lost connection
                elif msg["type"] == "message":
                    member = keys.parse_alive(msg["data"])
                    if member is not None:
                        ids.append(member)
                if len(ids) >= self.max_batch:
                    break
                msg = pubsub.get_message(timeout=0)
        except (redis.ConnectionError, redis.TimeoutError):
            self.close()
            raise
        done: list[Neutralized] = []
        if catch_up:
            self.subscriptions += 1
            ids = [*self.liveness.due(), *ids]
        if ids:
            if self.watch is not None:
                self.watch.observe(ids)
            done += self.liveness.neutralize_if_due(ids)
        after_neutralized(done, self.purger, "hint", self.metrics)
        return len(done)
