"""Neutralizing accounts whose deadline passed: a sweeper (the clock) and keyspace hints (a shortcut).

The sweeper asks Redis for due deadlines (Redis ``TIME`` is the one clock) every ``sweep_interval``
and runs the idempotent neutralize script on them; after any downtime its next step catches up on
everything that fell due meanwhile. Keyspace ``expired`` events arrive late under load and are lost
while nobody listens, so they only make the same step happen earlier; on every (re)subscription the
subscriber sweeps once to cover the gap in which it heard nothing.
"""

from __future__ import annotations

import logging
from typing import Any

import redis

from hbdns import keys
from hbdns.liveness import Liveness, Neutralized
from hbdns.purge import Purger

log = logging.getLogger(__name__)


def _after(done: list[Neutralized], purger: Purger | None, via: str) -> None:
    if not done:
        return
    if purger is not None:
        purger.purge(n for item in done for n in item.names)
    log.info(
        "accounts neutralized",
        extra={"count": len(done), "via": via, "accounts": [item.account_id for item in done[:20]]},
    )


class Sweeper:
    def __init__(self, liveness: Liveness, purger: Purger | None = None, *, batch: int = 1000, max_batches: int = 100):
        self.liveness = liveness
        self.purger = purger
        self.batch = batch
        self.max_batches = max_batches

    def step(self) -> int:
        """Neutralize everything due now (in batches of ``batch``); returns how many were neutralized."""
        total = 0
        for _ in range(self.max_batches):
            ids = self.liveness.due(self.batch)
            if not ids:
                break
            done = self.liveness.neutralize_if_due(ids)
            _after(done, self.purger, "sweep")
            total += len(done)
            if len(ids) < self.batch:
                break
        return total


def expired_channel(db: int) -> str:
    return f"__keyevent@{db}__:expired"


class HintSubscriber:
    """Listens to ``expired`` events of ``alive`` keys; redis must run with ``notify-keyspace-events Ex``."""

    def __init__(self, r: redis.Redis, liveness: Liveness, purger: Purger | None = None, *, max_batch: int = 1000):
        self.r = r
        self.liveness = liveness
        self.purger = purger
        self.max_batch = max_batch
        self.channel = expired_channel(int(r.connection_pool.connection_kwargs.get("db", 0) or 0))
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
        ids: list[int] = []
        catch_up = False
        try:
            msg = pubsub.get_message(timeout=timeout)
            while msg is not None:
                if msg["type"] == "subscribe":
                    catch_up = True  # the first time, or redis-py re-subscribed after a lost connection
                elif msg["type"] == "message":
                    account_id = keys.parse_alive(msg["data"])
                    if account_id is not None:
                        ids.append(account_id)
                if len(ids) >= self.max_batch:
                    break
                msg = pubsub.get_message(timeout=0)
        except (redis.ConnectionError, redis.TimeoutError):
            self.close()
            raise
        done: list[Neutralized] = []
        if catch_up:
            self.subscriptions += 1
            done += self.liveness.sweep()
        if ids:
            done += self.liveness.neutralize_if_due(ids)
        _after(done, self.purger, "hint")
        return len(done)
