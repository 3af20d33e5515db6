"""The sweep: Redis ``TIME`` is the one clock that says an account's deadline passed.

Every ``HBDNS_SWEEP_INTERVAL`` the sweeper asks Redis for due deadlines, shard by shard (each
shard's deadlines, stream and counts are one Redis Cluster slot), and runs the idempotent
neutralize script on them, so two sweepers never record one transition twice (a claim is atomic in
its shard). One sweeper process sweeps every shard. After any downtime
(of Redis or of the sweeper) its next step catches up on everything that fell due meanwhile, and
records each transition at its deadline, not at the sweep; deadlines whose window overlaps an
outage of our own ingest are held back until ingest was healthy for a whole window
(docs/scaling.md, "Outages of our own"). Keyspace hints (``sweeper.hints``) only make the same
step happen earlier.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Sequence

from hbdns import keys
from hbdns.liveness import Liveness, Neutralized
from hbdns.logs import RateLimitedLog
from hbdns.purge import Purger
from sweeper.mass_watch import MassWatch
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
        watch: MassWatch | None = None,
        metrics: SweeperMetrics | None = None,
    ):
        self.liveness = liveness
        self.metrics = metrics
        self.purger = purger
        self.batch = batch
        self.max_batches = max_batches
        self._held_log = RateLimitedLog(log, 10.0)
        self.watch = watch  # sees each batch before it is neutralized (mass outages)

    def step(self) -> int:
        """Neutralize everything due now in every shard; returns how many were neutralized.

        In rounds: each round takes a batch of up to ``batch`` due deadlines from every shard that
        still had a full one (one pipelined DUE per shard), so a backlog in one shard never delays
        another's by more than a round; at most ``max_batches`` rounds per step."""
        started = time.perf_counter()
        total, held = 0, self.liveness.held
        shards = list(keys.all_shards())
        for _ in range(self.max_batches):
            if not shards:
                break
            done, shards = self.round(shards)
            total += done
        if self.liveness.held > held:
            self._held_log.log(
                logging.WARNING, "held", "deadlines held back: ingest was down in their window",
                count=self.liveness.held - held, held_total=self.liveness.held,
            )  # fmt: skip
        if self.metrics is not None:
            self.metrics.swept(time.perf_counter() - started)
        return total

    def round(self, shards: Sequence[int]) -> tuple[int, list[int]]:
        """One batch of each of ``shards``: how many were neutralized, and the shards that had a full
        batch (more may be due there)."""
        members = self.liveness.due(self.batch, shards)
        if not members:
            return 0, []
        counts = Counter(keys.shard_of(account_id) for account_id, _ in members)
        if self.watch is not None:
            self.watch.observe(members)
        done = self.liveness.neutralize_if_due(members)
        after_neutralized(done, self.purger, "sweep", self.metrics)
        return len(done), [s for s in shards if counts[s] >= self.batch]
