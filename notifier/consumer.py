"""Reads transitions from the ``events`` stream with a consumer group and turns them into messages.

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
from typing import Any, cast

import redis

from hbdns import keys
from hbdns.model import Account
from notifier.dispatch import Dispatcher
from notifier.events import Event
from notifier.messages import SMS, Composer, Message
from notifier.presence import Presence
from notifier.sms import SmsScheduler

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
    ) -> None:
        self.r = r
        self.dispatcher = dispatcher
        self.sms = sms
        self.composer = composer
        self.name = name
        self.claim_idle_ms = int(claim_idle * 1000)
        self.batch = batch
        self.stream = keys.events()
        self._own_pending = True  # first read our own unacknowledged entries (a restart under the same name)
        self._group_ready = False
        self._autoclaim_every = max(1.0, claim_idle / 2)
        self._last_autoclaim = -self._autoclaim_every

    def ensure_group(self) -> None:
        """Create the group at id 0 (so events written before the first notifier ran are not skipped)."""
        try:
            self.r.xgroup_create(self.stream, GROUP, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._group_ready = True

    def _read(self, block_ms: int) -> list[tuple[str, dict[str, Any]]]:
        if not self._group_ready:
            self.ensure_group()
        if self._own_pending:
            entries = self._xreadgroup("0", None)
            if entries:
                return entries
            self._own_pending = False
        return self._xreadgroup(">", block_ms)

    def _xreadgroup(self, start: str, block_ms: int | None) -> list[tuple[str, dict[str, Any]]]:
        try:
            reply = self.r.xreadgroup(GROUP, self.name, {self.stream: start}, count=self.batch, block=block_ms)
        except redis.ResponseError as exc:
            if "NOGROUP" in str(exc):  # the stream was lost (Redis without persistence restarted)
                self._group_ready = False
                self._own_pending = True
                return []
            raise
        entries: list[tuple[str, dict[str, Any]]] = []
        streams: Any = reply or []
        for _stream, items in streams:
            entries.extend(items)
        return entries

    def step(self, block_ms: int = 1000) -> int:
        """Read one batch (our pending entries first, then new ones, waiting up to ``block_ms``) and handle it."""
        try:
            entries = self._read(block_ms)
            return self.handle(entries)
        except (redis.ConnectionError, redis.TimeoutError):
            self._own_pending = True  # whatever we read but did not ack is ours to redo
            raise

    def takeover_step(self, presence: Presence) -> int:
        """Take over the unacknowledged entries of dead consumers (at once) and of stuck ones (after
        ``claim_idle``); the next :meth:`step` handles them as this consumer's own. Tidies stale consumers."""
        if not self._group_ready:
            self.ensure_group()
        try:
            taken = 0
            if time.monotonic() - self._last_autoclaim >= self._autoclaim_every:
                self._last_autoclaim = time.monotonic()
                taken += self._autoclaim()
                self._tidy()
            dead = presence.dead_names() if presence.may_judge() else frozenset()
            if dead:
                for c in self.r.xinfo_consumers(self.stream, GROUP):
                    if c["name"] in dead and int(c["pending"]) > 0:
                        taken += self._claim_from(c["name"])
        except redis.ResponseError as exc:
            if "NOGROUP" in str(exc):
                self._group_ready = False
                return 0
            raise
        if taken:
            log.warning("took over unacknowledged events", extra={"count": taken})
            self._own_pending = True
        return taken

    def _autoclaim(self) -> int:
        taken, cursor = 0, "0-0"
        while True:
            # not JUSTID: redis-py drops the cursor from that reply
            reply = self.r.xautoclaim(
                self.stream, GROUP, self.name, self.claim_idle_ms, start_id=cursor, count=self.batch
            )
            cursor = reply[0]
            taken += len(reply[1])
            if cursor in ("0-0", b"0-0"):
                return taken

    def _claim_from(self, consumer: str) -> int:
        taken = 0
        while True:
            pending = self.r.xpending_range(
                self.stream, GROUP, min="-", max="+", count=self.batch, consumername=consumer
            )
            ids: list[Any] = [p["message_id"] for p in pending]
            if not ids:
                return taken
            got = self.r.xclaim(self.stream, GROUP, self.name, TAKEOVER_MIN_IDLE_MS, ids, justid=True)
            taken += len(got)
            if len(got) < len(ids):  # someone else is taking this consumer's entries too
                return taken

    def _tidy(self) -> None:
        for c in self.r.xinfo_consumers(self.stream, GROUP):
            if c["name"] != self.name and int(c["pending"]) == 0 and int(c["idle"]) > STALE_CONSUMER_MS:
                self.r.xgroup_delconsumer(self.stream, GROUP, c["name"])

    def handle(self, entries: list[tuple[str, dict[str, Any]]]) -> int:
        """Turn entries into messages and SMS jobs, send, then acknowledge all of them."""
        if not entries:
            return 0
        events: list[Event] = []
        for entry_id, fields in entries:
            if fields:  # an entry trimmed from the stream while pending comes back without fields
                try:
                    events.append(Event.from_fields(str(entry_id), fields))
                except (ValueError, TypeError):
                    log.error("skipping unreadable event", extra={"event_id": str(entry_id)})
        accounts = self._accounts({e.account for e in events})
        messages: list[Message] = []
        sms_jobs: dict[str, float] = {}
        for event in events:
            account = accounts.get(event.account)
            if account is None:
                continue  # removed meanwhile: nobody left to tell
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
        pipe.xack(self.stream, GROUP, *[entry_id for entry_id, _ in entries])
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
        entries = self.r.xrange(self.stream, min=event_id, max=event_id) if event_id else []
        if not entries or not entries[0][1]:
            return None
        event = Event.from_fields(str(entries[0][0]), cast(dict[str, str], entries[0][1]))
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
