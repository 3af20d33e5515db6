"""Reads transitions from every shard's ``events`` stream with a consumer group (notifier/streams.py)
and turns them into messages.

An entry is acknowledged (XACK) only after each of its messages was sent, found already sent,
queued for a retry or dead-lettered, and its SMS job (if any) was queued: all durable in Redis.
A notifier that dies before that leaves the entry in the group's pending list. It re-reads its own
entries on start (same consumer name); any other notifier takes them over as soon as the dead one's
liveness has ended (:mod:`notifier.presence`, a few seconds), and, as a safety net for a process
that is alive but stuck, once they have been idle ``notify_claim_idle`` seconds. The sent markers
(:mod:`notifier.leases`) make the redelivery harmless.
"""

from __future__ import annotations

import logging
import os
import socket
import time

import redis

from hbdns import event_streams, keys
from hbdns.mass import OPERATOR_EVENTS
from hbdns.model import Account
from notifier.dispatch import Dispatcher
from notifier.events import Event
from notifier.mass_hold import HOLD, MassHold, verdict
from notifier.messages import SMS, Composer, Message
from notifier.presence import Presence
from notifier.sms import SmsScheduler
from notifier.streams import Entry, ShardStreams

log = logging.getLogger(__name__)

GROUP = "hbdns-notifier"
# Consumers with nothing pending and idle this long are removed from the group (they are re-created
# on their next read); keeps a group that sees many restarts under hostname-pid names tidy.
STALE_CONSUMER_MS = 3_600_000
# A dead consumer's entries are claimed only if idle this long: when two notifiers take over at once,
# the second finds them freshly claimed (idle 0) and leaves them to the first.
TAKEOVER_MIN_IDLE_MS = 1000


def default_consumer_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class Consumer:
    def __init__(
        self,
        r: redis.Redis,
        dispatcher: Dispatcher,
        sms: SmsScheduler,
        *,
        composer: Composer,
        name: str,
        claim_idle: float = 60.0,
        batch: int = 200,
        mass: MassHold | None = None,
        per_shard: bool | None = None,
    ) -> None:
        self.r = r
        self.dispatcher = dispatcher
        self.sms = sms
        self.composer = composer
        self.mass = mass  # mass outages: holds and mutes customers' outage messages, alarms the operator
        self.name = name
        self.claim_idle_ms = int(claim_idle * 1000)
        # the group at id 0 on every shard: events written before the first notifier ran are not skipped
        self.streams = ShardStreams(r, GROUP, name, start_id="0", batch=batch, per_shard=per_shard)
        self._autoclaim_every = max(1.0, claim_idle / 2)
        self._last_autoclaim = -self._autoclaim_every

    def ensure_group(self) -> None:
        """Create the group on every shard stream (at id 0)."""
        self.streams.ensure_group()

    def step(self, block_ms: int = 1000) -> int:
        """Read one batch (our pending entries first, then new ones, waiting up to ``block_ms``) and handle it."""
        try:
            return self.handle(self.streams.read(block_ms))
        except (redis.ConnectionError, redis.TimeoutError):
            self.streams.mark_own(self.streams.shards)  # whatever we read but did not ack is ours to redo
            raise

    def takeover_step(self, presence: Presence) -> int:
        """Take over the unacknowledged entries of dead consumers (at once) and of stuck ones (after
        ``claim_idle``), in every shard; the next :meth:`step` handles them as this consumer's own.
        Tidies stale consumers."""
        taken = 0
        if time.monotonic() - self._last_autoclaim >= self._autoclaim_every:
            self._last_autoclaim = time.monotonic()
            taken += len(self.streams.autoclaim(self.claim_idle_ms))
            self.streams.tidy(STALE_CONSUMER_MS)
        dead = presence.dead_names() if presence.may_judge() else frozenset()
        if dead:
            taken += self.streams.claim_from(dead, TAKEOVER_MIN_IDLE_MS)
        if taken:
            log.warning("took over unacknowledged events", extra={"count": taken})
        return taken

    def handle(self, entries: list[Entry]) -> int:
        """Turn entries (of any shards) into messages and SMS jobs, send, then acknowledge all of them."""
        if not entries:
            return 0
        events: list[Event] = []
        for entry in entries:
            if entry.fields:  # an entry trimmed from the stream while pending comes back without fields
                try:
                    events.append(Event.from_fields(entry.event_id, entry.fields))
                except (ValueError, TypeError):
                    log.error("skipping unreadable event", extra={"event_id": entry.event_id})
        accounts = self._accounts({e.account for e in events})
        masses = self.mass.load() if self.mass is not None else {}
        messages: list[Message] = []
        sms_jobs: dict[str, float] = {}
        held: dict[str, float] = {}
        for event in events:
            if event.type in OPERATOR_EVENTS:
                messages += self.mass.operator_messages(event) if self.mass is not None else []
                continue
            account = accounts.get(event.account)
            if account is None:
                continue  # removed meanwhile: nobody left to tell
            how, mass_event = verdict(event, account, masses)
            if mass_event is not None:
                if how == HOLD:
                    held[event.to_json()] = mass_event.hold_until_ms / 1000
                continue
            settle = self.mass.settle_until(event) if self.mass is not None else None
            if settle is not None:
                held[event.to_json()] = settle
                continue
            try:
                messages.extend(self.composer.immediate(event, account))
                job = self.sms.job(event, account)
            except Exception:  # one bad event must not wedge the stream
                log.exception("cannot build messages for event", extra={"event_id": event.id})
                continue
            if job is not None:
                sms_jobs[job[0]] = job[1]
        self.dispatcher.send_all(messages)
        pipe = self.r.pipeline(transaction=False)
        if sms_jobs:
            pipe.zadd(self.sms.jobs.key, sms_jobs, nx=True)  # NX: a redelivery keeps a rescheduled time
        if held:
            pipe.zadd(keys.mass_held(), held, nx=True)
        self.streams.ack(pipe, entries)
        pipe.execute()
        return len(entries)

    def _accounts(self, ids: set[int]) -> dict[int, Account]:
        ordered = sorted(i for i in ids if i > 0)
        pipe = self.r.pipeline(transaction=False)
        for account_id in ordered:
            pipe.hgetall(keys.account(account_id))
        out = {}
        for account_id, h in zip(ordered, pipe.execute(), strict=True):
            if h.get("fqdn"):
                try:
                    out[account_id] = Account.from_hash(h)
                except (KeyError, ValueError):
                    log.error("unreadable account", extra={"account": account_id})
        return out

    def rebuild(self, spec: dict[str, str]) -> Message | None:
        """The message ``spec`` ({event_id, channel, recipient}) names, built again from its event (a dead
        letter from before the queue kept only that); None once the event left the stream."""
        event_id = spec.get("event_id", "")
        fields = event_streams.find(self.r, event_id) if event_id else None
        if not fields:
            return None
        event = Event.from_fields(event_id, fields)
        account = self._accounts({event.account}).get(event.account)
        if account is None:
            return None
        channel, recipient = spec.get("channel", ""), spec.get("recipient", "")
        built = (
            self.composer.sms(event, account, [recipient])
            if channel == SMS
            else self.composer.immediate(event, account)
        )
        return next((m for m in built if m.channel == channel and m.recipient == recipient), None)
