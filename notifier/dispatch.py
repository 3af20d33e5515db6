"""Sending a message: idempotency, retries with exponential backoff, dead letters. The one place for all three.

Each send first takes ``keys.sent(message.key)`` with ``SET NX`` and a lease (``sending``), then calls
the transport, then rewrites the marker to ``sent`` (kept ``notify_sent_ttl`` seconds). So a message
that is handed over twice (a redelivered stream entry, two notifiers, a retry racing a claim) goes
out once; only a crash between the transport's success and the marker write sends it again, once
the lease has run out: at most twice.

A transient failure does not block the caller: the message goes, as JSON, into the ``notify_retry``
zset, due after ``backoff * 2**(attempt-1)`` seconds, and :meth:`Dispatcher.retry_step` sends it then.
A permanent failure, or the last attempt failing, goes to the dead-letter list that ``hbdns status``
shows. Either way the caller may acknowledge the event: nothing is lost, nothing loops.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import redis

from hbdns import keys
from hbdns.config import Settings
from notifier.messages import Message
from notifier.transports import LogTransport, Transport, TransportError

log = logging.getLogger(__name__)

SENT, DUPLICATE, RETRY, DEAD, DEFERRED = "sent", "duplicate", "retry", "dead", "deferred"
DEAD_LETTER_CAP = 1000

# KEYS: zset ; ARGV: now lease_until limit -> members due by now, pushed to lease_until (a claim)
_CLAIM_DUE = r"""
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
for _, m in ipairs(due) do redis.call('ZADD', KEYS[1], 'XX', ARGV[2], m) end
return due
"""


class DueQueue:
    """A zset of JSON jobs scored by due time. ``claim`` leases due jobs so two notifiers don't both run them;
    a job whose runner died is due again when its lease ends."""

    def __init__(self, r: redis.Redis, key: str) -> None:
        self.r = r
        self.key = key
        self._claim = r.register_script(_CLAIM_DUE)

    def add(self, member: str, due: float, *, nx: bool = True) -> None:
        self.r.zadd(self.key, {member: due}, nx=nx)

    def claim(self, now: float, lease: float, limit: int = 100) -> list[str]:
        return [str(m) for m in self._claim(keys=[self.key], args=[repr(now), repr(now + lease), limit])]

    def reschedule(self, member: str, due: float) -> None:
        self.r.zadd(self.key, {member: due}, xx=True)

    def done(self, member: str) -> None:
        self.r.zrem(self.key, member)

    def size(self) -> int:
        return int(self.r.zcard(self.key))


@dataclass(frozen=True)
class Outcome:
    message: Message
    status: str  # sent, duplicate, retry, dead, deferred
    reason: str = ""


class Dispatcher:
    def __init__(
        self,
        r: redis.Redis,
        transports: dict[str, Transport],
        settings: Settings,
        *,
        owner: str = "notifier",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.r = r
        self.transports = transports
        self.max_attempts = settings.notify_max_attempts
        self.backoff = settings.notify_backoff
        self.lease = settings.notify_claim_idle
        self.sent_ttl = settings.notify_sent_ttl
        self.owner = owner
        self.clock = clock
        self.retries = DueQueue(r, keys.notify_retry())
        self._pool = ThreadPoolExecutor(max_workers=settings.notify_workers, thread_name_prefix="send")

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        for t in self.transports.values():
            t.close()

    # --- one message ------------------------------------------------------------------------------

    def send(self, message: Message, attempt: int = 1) -> Outcome:
        """One attempt at ``message`` (its ``attempt``-th); schedules the next one or dead-letters it."""
        marker = keys.sent(message.key)
        if not self.r.set(marker, f"sending:{self.owner}", nx=True, px=int(self.lease * 1000)):
            state = self.r.get(marker)
            if state is None:  # the lease ended between the two calls: try again now
                return self.send(message, attempt)
            if not str(state).startswith("sending"):
                return Outcome(message, DUPLICATE, str(state))
            # In flight elsewhere, or its sender died mid-send: look again when the lease ends.
            wait = max(int(self.r.pttl(marker)), 0) / 1000 + 0.01
            self._schedule(message, attempt, self.clock() + wait)
            return Outcome(message, DEFERRED, "in flight elsewhere")
        transport = self.transports.get(message.channel) or LogTransport(message.channel)
        try:
            try:
                transport.notify(message)
            except TransportError:
                raise
            except Exception as exc:  # a transport bug must not wedge the stream: count it as transient
                log.exception("transport raised unexpectedly", extra=self._fields(message))
                raise TransportError(f"{type(exc).__name__}: {exc}") from exc
        except TransportError as exc:
            if exc.permanent or attempt >= self.max_attempts:
                reason = exc.reason if exc.permanent else f"gave up after {attempt} attempts: {exc.reason}"
                self._dead_letter(message, reason, marker)
                return Outcome(message, DEAD, reason)
            self.r.delete(marker)
            delay = self.backoff * 2 ** (attempt - 1)
            self._schedule(message, attempt + 1, self.clock() + delay)
            log.warning(
                "notification failed, will retry",
                extra=self._fields(message, reason=exc.reason, attempt=attempt, retry_in=round(delay, 3)),
            )
            return Outcome(message, RETRY, exc.reason)
        pipe = self.r.pipeline(transaction=False)
        pipe.set(marker, "sent", ex=self.sent_ttl)
        for key, field, value in message.marks:
            pipe.hset(key, field, value)
        pipe.execute()
        log.info("notification sent", extra=self._fields(message, attempt=attempt))
        return Outcome(message, SENT)

    def send_all(self, messages: Sequence[Message]) -> list[Outcome]:
        """Send in parallel (``notify_workers`` threads); returns when each is sent, scheduled or dead.

        Messages to one recipient on one channel go out one after the other, in event order (a webhook
        receiver sees ``neutralized`` before the ``recovered`` of the same blip); only a retry reorders.
        """
        groups: dict[tuple[str, str], list[Message]] = {}
        for m in messages:
            groups.setdefault((m.channel, m.recipient), []).append(m)
        if len(groups) <= 1:
            return [self.send(m) for m in messages]
        out: list[Outcome] = []
        for outcomes in self._pool.map(lambda group: [self.send(m) for m in group], groups.values()):
            out.extend(outcomes)
        return out

    # --- retries ----------------------------------------------------------------------------------

    def _schedule(self, message: Message, attempt: int, due: float) -> None:
        job = json.dumps({"attempt": attempt, "message": json.loads(message.to_json())}, sort_keys=True)
        self.retries.add(job, due)

    def retry_step(self, limit: int = 100) -> int:
        """Send the retries that are due; returns how many were attempted."""
        jobs = self.retries.claim(self.clock(), self.lease, limit)
        parsed = []
        for job in jobs:
            try:
                d = json.loads(job)
                parsed.append((job, Message.from_json(d["message"]), int(d["attempt"])))
            except (ValueError, KeyError, TypeError):
                log.error("dropping unreadable retry job", extra={"job": job[:200]})
                self.retries.done(job)
        if parsed:
            list(self._pool.map(lambda p: self._retry_one(*p), parsed))
        return len(parsed)

    def _retry_one(self, job: str, message: Message, attempt: int) -> None:
        self.send(message, attempt)  # a further retry is a new member; this one is finished
        self.retries.done(job)

    # --- dead letters -----------------------------------------------------------------------------

    def _dead_letter(self, message: Message, reason: str, marker: str) -> None:
        entry = {
            "time": self.clock(),
            "channel": message.channel,
            "recipient": message.recipient,
            "account": message.account,
            "fqdn": message.fqdn,
            "event_type": message.event_type,
            "event_id": message.event_id,
            "reason": reason,
        }
        pipe = self.r.pipeline(transaction=True)
        pipe.lpush(keys.dead_letters(), json.dumps(entry, sort_keys=True))
        pipe.ltrim(keys.dead_letters(), 0, DEAD_LETTER_CAP - 1)
        pipe.set(marker, "dead", ex=self.sent_ttl)  # a redelivery must not start the attempts over
        pipe.execute()
        log.error("notification failed for good, dead-lettered", extra=self._fields(message, reason=reason))

    @staticmethod
    def _fields(message: Message, **extra: object) -> dict[str, object]:
        return {
            "channel": message.channel,
            "recipient": message.recipient,
            "account": message.fqdn,
            "event_type": message.event_type,
            "event_id": message.event_id,
            "key": message.key,
            **extra,
        }


def count(outcomes: Iterable[Outcome]) -> dict[str, int]:
    out: dict[str, int] = {}
    for o in outcomes:
        out[o.status] = out.get(o.status, 0) + 1
    return out
