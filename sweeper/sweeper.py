"""The sweep: Redis ``TIME`` is the one clock that says an account's deadline passed.

Every ``HBDNS_SWEEP_INTERVAL`` the sweeper asks Redis for due deadlines and runs the idempotent
neutralize script on them, so two sweepers never record one transition twice. After any downtime
(of Redis or of the sweeper) its next step catches up on everything that fell due meanwhile, and
records each transition at its deadline, not at the sweep. Keyspace hints (``sweeper.hints``) only
make the same step happen earlier.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

from hbdns.liveness import Liveness, Neutralized
from hbdns.purge import Purger
from sweeper.metrics import SweeperMetrics

log = logging.getLogger(__name__)


def after_neutralized(
    done: Sequence[Neutralized], purger: Purger | None, via: str, metrics: SweeperMetrics | None = None
) -> None:
    """Ask pdns to drop the neutralized names from its caches, count and log the batch."""
    if not done:
        return
    if metrics is not None:
        metrics.neutralized.labels(via=via).inc(len(done))
    if purger is not None:
        purger.purge(n for item in done for n in item.names)
    log.info(
        "accounts neutralized",
        extra={"count": len(done), "via": via, "accounts": [item.account_id for item in done[:20]]},
    )


class Sweeper:
    """Neutralizes due accounts in batches; ``step`` is what the ``sweep`` loop runs."""

    def __init__(
        self,
        liveness: Liveness,
        purger: Purger | None = None,
        *,
        batch: int = 1000,
        max_batches: int = 100,
        metrics: SweeperMetrics | None = None,
    ):
        self.liveness = liveness
        self.metrics = metrics
        self.purger = purger
        self.batch = batch
        self.max_batches = max_batches

    def step(self) -> int:
        """Neutralize everything due now (in batches of ``batch``); returns how many were neutralized."""
        started = time.perf_counter()
        total = 0
        for _ in range(self.max_batches):
            ids = self.liveness.due(self.batch)
            if not ids:
                break
            done = self.liveness.neutralize_if_due(ids)
            after_neutralized(done, self.purger, "sweep", self.metrics)
            total += len(done)
            if len(ids) < self.batch:
                break
        if self.metrics is not None:
            self.metrics.swept(time.perf_counter() - started)
        return total
