"""The recovery flush: when an MX account is reachable again, ask its backup MXes to deliver at once.

A consumer group of its own on every shard's event stream (``hbdns-flush``, notifier/streams.py),
so a slow backup MX and slow notifications never hold each other up. Triggers, for accounts with
MX: ``recovered`` (the first family back), ``family_back`` (another family back) and
``ip_changed`` (mail now goes elsewhere).
For each batch of entries it flushes the accounts' names at once (one ETRN session per backup MX
for the whole batch), records the results (:mod:`hbdns.recovery_flush`), schedules the second flush
after the record TTL plus pdns' caches (``HBDNS_BACKUP_MX_FLUSH_AGAIN`` seconds on top) and only
then acknowledges the entries: a process that dies before that leaves them pending, and it (same
consumer name) or another one (XAUTOCLAIM after ``HBDNS_NOTIFY_CLAIM_IDLE``) flushes them again.
A flush is idempotent, so a repeat costs a queue scan and nothing else.

Why Postfix needs this: its deferred mail waits for ``minimal_backoff_time`` (300 s) and a queue
scan, backing off to ~67 min (docs/backup-mx.md).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

import redis

from hbdns import recovery_flush
from hbdns.config import Settings
from hbdns.etrn import FlushResult
from hbdns.loops import Loops
from hbdns.model import Account
from hbdns.mta_flush import MtaFlusher, from_settings
from hbdns.plans import Plan
from hbdns.store import accounts_by_id
from notifier.streams import Entry, ShardStreams

log = logging.getLogger(__name__)

GROUP = "hbdns-flush"
TRIGGERS = frozenset({"recovered", "family_back", "ip_changed"})
AGAIN_INTERVAL = 0.2  # seconds between looks at due second flushes
DEFAULT_TTL = 60  # an account whose plan this configuration does not know


class FlushConsumer:
    """Reads the stream with its own group and flushes; ``step`` and ``again_step`` are the loops'."""

    def __init__(
        self,
        r: redis.Redis,
        flusher: MtaFlusher,
        plans: Mapping[str, Plan],
        *,
        name: str,
        again_after: float = 2.0,
        claim_idle: float = 60.0,
        log_size: int = recovery_flush.LOG_SIZE,
        batch: int = 100,
        per_shard: bool | None = None,
    ) -> None:
        self.r: Any = r
        self.flusher = flusher
        self.plans = dict(plans)
        self.name = name
        self.again_ms = int(again_after * 1000)
        self.claim_idle_ms = int(claim_idle * 1000)
        self.lease_ms = int(max(60.0, flusher.attempts * (flusher.timeout + flusher.backoff_max)) * 1000)
        self.log_size = log_size
        self.batch = batch
        # at the streams' end: a first start does not flush the whole history (every recovery the
        # streams still hold); events from then on are all seen
        self.streams = ShardStreams(r, GROUP, name, start_id="$", batch=batch, per_shard=per_shard)

    # --- the stream -----------------------------------------------------------------------------

    def ensure_group(self) -> None:
        """Create the group at every shard stream's end."""
        self.streams.ensure_group()

    def step(self, block_ms: int = 1000) -> int:
        """Read one batch (our own unacknowledged entries first) and flush for it."""
        try:
            return self.handle(self.streams.read(block_ms))
        except (redis.ConnectionError, redis.TimeoutError):
            self.streams.mark_own(self.streams.shards)
            raise

    def claim_step(self) -> int:
        """Take over entries another consumer left unacknowledged for ``claim_idle`` and flush for them."""
        return self.handle(self.streams.autoclaim(self.claim_idle_ms))

    def handle(self, entries: list[Entry]) -> int:
        """Flush for the triggers among ``entries`` (each account once), then acknowledge them all."""
        if not entries:
            return 0
        why: dict[int, tuple[str, str]] = {}  # account -> (event type, event id), the first trigger
        for entry in entries:
            fields = entry.fields
            if fields and fields.get("type") in TRIGGERS:
                try:
                    why.setdefault(int(fields.get("account", "0")), (fields["type"], entry.event_id))
                except ValueError:
                    log.error("skipping unreadable event", extra={"event_id": entry.event_id})
        accounts = [a for a in self._accounts(why).values() if a.mx]
        if accounts:
            self.flush(accounts, {a.id: why[a.id] for a in accounts})
            now = recovery_flush.redis_ms(self.r)
            recovery_flush.schedule(self.r, {a.id: now + self.again_delay_ms(a) for a in accounts})
        pipe = self.r.pipeline(transaction=False)
        self.streams.ack(pipe, entries)
        pipe.execute()
        return len(entries)

    # --- the second flush -----------------------------------------------------------------------

    def again_delay_ms(self, account: Account) -> int:
        plan = self.plans.get(account.plan)
        return (plan.ttl if plan is not None else DEFAULT_TTL) * 1000 + self.again_ms

    def again_step(self) -> int:
        """Flush the accounts whose second flush is due."""
        claimed = dict(recovery_flush.claim_due(self.r, self.lease_ms))
        if not claimed:
            return 0
        accounts = [a for a in self._accounts(claimed).values() if a.mx]
        self.flush(accounts, {a.id: ("again", "") for a in accounts})
        for account_id, score in claimed.items():
            recovery_flush.done(self.r, account_id, score)
        return len(claimed)

    # --- flushing ---------------------------------------------------------------------------------

    def flush(self, accounts: list[Account], why: Mapping[int, tuple[str, str]]) -> list[FlushResult]:
        """One flush request for every name of ``accounts`` (one session per backup MX), recorded
        per account."""
        results = self.flusher.flush(n for a in accounts for n in a.names)
        by_name: dict[str, list[FlushResult]] = {}
        for res in results:
            by_name.setdefault(res.domain, []).append(res)
        for a in accounts:
            mine = [res for n in a.names for res in by_name.get(n, [])]
            kind, event_id = why[a.id]
            recovery_flush.record(self.r, a, mine, why=kind, event_id=event_id, log_size=self.log_size)
        return results

    def _accounts(self, ids: Mapping[int, Any]) -> dict[int, Account]:
        return accounts_by_id(self.r, ids)


class FlushService:
    """The flush loops of a notifier process: the consumer (with takeover, in the same thread, so it
    never takes over an entry it is still flushing) and the second flush."""

    def __init__(self, consumer: FlushConsumer, claim_every: float) -> None:
        self.consumer = consumer
        self.claim_every = claim_every
        self._last_claim = 0.0

    def consume_step(self) -> int:
        handled = self.consumer.step()
        if time.monotonic() - self._last_claim >= self.claim_every:
            handled += self.consumer.claim_step()
            self._last_claim = time.monotonic()
        return handled

    def again_step(self) -> int:
        return self.consumer.again_step()

    def start(self, loops: Loops) -> None:
        try:
            self.consumer.ensure_group()  # now, before the first event it must see
        except redis.RedisError:
            pass  # Redis is away: the first step creates it
        loops.start("flush", self.consume_step)
        loops.start("flush-again", self.again_step, AGAIN_INTERVAL)

    def stop(self) -> None:
        self.consumer.flusher.stop.set()


def flush_service(settings: Settings, r: redis.Redis, name: str) -> FlushService | None:
    """The flush loops from settings; None when no backup MX is configured (HBDNS_BACKUP_MX_FLUSH)."""
    if not settings.backup_mx_flush:
        return None
    consumer = FlushConsumer(
        r,
        from_settings(settings),
        settings.plan_table(),
        name=name,
        again_after=settings.backup_mx_flush_again,
        claim_idle=settings.notify_claim_idle,
        log_size=settings.account_log_size,
    )
    return FlushService(consumer, claim_every=max(1.0, settings.notify_claim_idle / 2))
