"""``hbdns-sweeper``: records ``neutralized`` when an account's deadline passes, one loop per role.

Roles (``HBDNS_SWEEPER_ROLES``, default both): ``sweep`` runs :class:`~sweeper.sweeper.Sweeper` every
``HBDNS_SWEEP_INTERVAL`` (the clock: nothing is missed) and trims the events stream below what every
consumer group acknowledged (:mod:`hbdns.event_trim`) and watches for mass outages
(:mod:`sweeper.mass_watch`), ``hints`` runs the keyspace-hint subscriber
(earlier, never required; not on a Redis Cluster, see :mod:`sweeper.hints`). One process sweeps
every shard; any number of sweeper processes is safe: each transition is recorded once.
DNS does not wait for this service (the backend answers neutral as soon as the ``alive`` key is
gone); the transition it records is what the notifier turns into messages, and its purges drop the
old answer from pdns' caches.
"""

from __future__ import annotations

import logging
import sys

import redis
from prometheus_client import CollectorRegistry

from hbdns import config
from hbdns import metrics as prom
from hbdns.connection import connect, is_cluster
from hbdns.event_trim import EventTrimmer, per_shard
from hbdns.loops import Loops
from hbdns.purge import Purger
from hbdns.store import Store
from sweeper.hints import HintSubscriber
from sweeper.mass_metrics import MassCollector
from sweeper.mass_watch import MassWatch
from sweeper.metrics import LivenessCollector, SweeperMetrics
from sweeper.sweeper import Sweeper

log = logging.getLogger("sweeper")

HINT_WAIT = 1.0  # seconds one hints step waits for events (also how soon it sees the stop flag)
MASS_INTERVAL = 1.0  # seconds between looks at mass outages' holds (and censuses, every 30 s)


class SweeperService:
    """The loops of one sweeper process, wired from settings (built in ``main()`` or by a test)."""

    def __init__(
        self, settings: config.Settings, *, r: redis.Redis | None = None, registry: CollectorRegistry | None = None
    ) -> None:
        self.settings = settings
        self.roles = settings.sweeper_roles
        self.r = r if r is not None else connect(settings.redis_url)
        store = Store(self.r, settings)
        self.liveness = store.liveness
        self.purger = Purger(settings.pdns_api_urls, settings.pdns_api_key, settings.pdns_api_timeout)
        self.registry = registry if registry is not None else prom.new_registry()
        self.metrics = SweeperMetrics(self.registry)
        self.registry.register(LivenessCollector(self.r))
        self.registry.register(MassCollector(self.r))
        self.watch = MassWatch(self.r, settings, store.plans)
        self.sweeper = Sweeper(
            self.liveness, self.purger, batch=settings.sweep_batch, metrics=self.metrics, watch=self.watch
        )
        self.hints = HintSubscriber(self.r, self.liveness, self.purger, metrics=self.metrics, watch=self.watch)
        self.trimmer = EventTrimmer(
            self.r, keep=per_shard(settings.events_maxlen), cap=per_shard(settings.events_hard_cap)
        )
        self.loops = Loops(on_error=prom.LoopErrors(self.registry, "hbdns_sweeper"))

    def hints_step(self) -> int:
        return self.hints.step(timeout=HINT_WAIT)

    def start(self) -> SweeperService:
        self.purger.start()
        if "sweep" in self.roles:
            self.loops.start("sweep", self.sweeper.step, self.settings.sweep_interval)
            self.loops.start("trim", self.trimmer.step, self.settings.events_trim_interval)
            if self.watch.enabled:
                self.loops.start("mass", self.watch.step, MASS_INTERVAL)
        if "hints" in self.roles and is_cluster(self.r):
            log.warning("no keyspace hints on a Redis Cluster: the sweep alone finds due deadlines (sweeper/hints.py)")
        elif "hints" in self.roles:
            self.loops.start("hints", self.hints_step)
        log.info("sweeper started", extra={"roles": list(self.roles), "interval": self.settings.sweep_interval})
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self.loops.stop(timeout)
        self.hints.close()
        self.purger.stop()


def main(argv: list[str] | None = None) -> int:
    settings = config.service_settings("hbdns-sweeper")
    service = SweeperService(settings)
    endpoint = prom.serve(service.registry, settings.sweeper_metrics_addr, "sweeper")
    try:
        return service.loops.serve(service.start, service.stop)
    finally:
        prom.stop(endpoint)


if __name__ == "__main__":
    sys.exit(main())
