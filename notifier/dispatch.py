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
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

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

    def send(self, message: Message, attempt: int = 1) -> Outcome:
        """One attempt at ``message`` (its ``attempt``-th); schedules the next one or dead-letters it."""
        return self.deliver([(message, attempt)])[0]

    def send_all(self, messages: Sequence[Message]) -> list[Outcome]:
        """First attempts at ``messages``; returns when each is sent, scheduled or dead-lettered."""
        return self.deliver([(m, 1) for m in messages])

    def deliver(self, items: Sequence[tuple[Message, int]]) -> list[Outcome]:
        """Attempt each (message, attempt number): claim the markers, send in parallel, record the results.

        Redis sees three pipelined round trips per batch, not two per message: on a busy machine each
        round trip costs far more than the command, and a burst of 1,000 outages is one batch per
        ``XREADGROUP``.
        """
        if not items:
            return []
        lease_ms = int(self.lease * 1000)
        pipe = self.r.pipeline(transaction=False)
        for m, _ in items:
            pipe.set(keys.sent(m.key), f"sending:{self.owner}", nx=True, px=lease_ms)
        claimed = pipe.execute()
        outcomes: dict[int, Outcome] = {}
        busy = [i for i, ok in enumerate(claimed) if not ok]
        settle = self.r.pipeline(transaction=False)
        if busy:
            pipe = self.r.pipeline(transaction=False)
            for i in busy:
                pipe.get(keys.sent(items[i][0].key))
                pipe.pttl(keys.sent(items[i][0].key))
            replies = pipe.execute()
            for n, i in enumerate(busy):
                m, attempt = items[i]
                state, pttl = replies[2 * n], int(replies[2 * n + 1])
                if state is not None and not str(state).startswith("sending"):
                    outcomes[i] = Outcome(m, DUPLICATE, str(state))
                    continue
                # In flight elsewhere, or its sender died mid-send: look again when the lease ends.
                self._schedule(settle, m, attempt, self.clock() + max(pttl, 0) / 1000 + 0.01)
                outcomes[i] = Outcome(m, DEFERRED, "in flight elsewhere")
        todo = [i for i, ok in enumerate(claimed) if ok]
        errors = self._attempt_all([items[i][0] for i in todo])
        dead = False
        for i, err in zip(todo, errors, strict=True):
            m, attempt = items[i]
            marker = keys.sent(m.key)
            if err is None:
                settle.set(marker, "sent", ex=self.sent_ttl)
                for key, field, value in m.marks:
                    settle.hset(key, field, value)
                outcomes[i] = Outcome(m, SENT)
            elif err.permanent or attempt >= self.max_attempts:
                reason = err.reason if err.permanent else f"gave up after {attempt} attempts: {err.reason}"
                settle.lpush(keys.dead_letters(), self._dead_letter(m, reason))
                settle.set(marker, "dead", ex=self.sent_ttl)  # a redelivery must not start the attempts over
                dead = True
                outcomes[i] = Outcome(m, DEAD, reason)
            else:
                settle.delete(marker)
                self._schedule(settle, m, attempt + 1, self.clock() + self.backoff * 2 ** (attempt - 1))
                outcomes[i] = Outcome(m, RETRY, err.reason)
        if dead:
            settle.ltrim(keys.dead_letters(), 0, DEAD_LETTER_CAP - 1)
        settle.execute()
        out = [outcomes[i] for i in range(len(items))]
        for (_, attempt), o in zip(items, out, strict=True):
            self._log(o, attempt)
        return out

    def _attempt_all(self, messages: list[Message]) -> list[TransportError | None]:
        """One transport attempt per message, in parallel (``notify_workers`` threads).

        Messages to one recipient on one channel go out one after the other, in event order (a webhook
        receiver sees ``neutralized`` before the ``recovered`` of the same blip); only a retry reorders.
        """
        groups: dict[tuple[str, str], list[int]] = {}
        for i, m in enumerate(messages):
            groups.setdefault((m.channel, m.recipient), []).append(i)
        errors: list[TransportError | None] = [None] * len(messages)

        def run(indices: list[int]) -> None:
            for i in indices:
                errors[i] = self._attempt(messages[i])

        if len(groups) <= 1:
            for indices in groups.values():
                run(indices)
        else:
            list(self._pool.map(run, groups.values()))
        return errors

    def _attempt(self, message: Message) -> TransportError | None:
        transport = self.transports.get(message.channel) or LogTransport(message.channel)
        try:
            transport.notify(message)
        except TransportError as exc:
            return exc
        except Exception as exc:  # a transport bug must not wedge the stream: count it as transient
            log.exception("transport raised unexpectedly", extra=self._fields(message))
            return TransportError(f"{type(exc).__name__}: {exc}")
        return None

    # --- retries ----------------------------------------------------------------------------------

    def _schedule(self, pipe: Any, message: Message, attempt: int, due: float) -> None:
        job = json.dumps({"attempt": attempt, "message": json.loads(message.to_json())}, sort_keys=True)
        pipe.zadd(self.retries.key, {job: due}, nx=True)

    def retry_step(self, limit: int = 100) -> int:
        """Send the retries that are due; returns how many were attempted."""
        jobs = self.retries.claim(self.clock(), self.lease, limit)
        parsed: list[tuple[Message, int]] = []
        for job in jobs:
            try:
                d = json.loads(job)
                parsed.append((Message.from_json(d["message"]), int(d["attempt"])))
            except (ValueError, KeyError, TypeError):
                log.error("dropping unreadable retry job", extra={"job": job[:200]})
        self.deliver(parsed)  # a further retry is a new member: these are finished
        if jobs:
            self.r.zrem(self.retries.key, *jobs)
        return len(parsed)

    # --- logs and dead letters --------------------------------------------------------------------

    def _dead_letter(self, message: Message, reason: str) -> str:
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
        return json.dumps(entry, sort_keys=True)

    def _log(self, outcome: Outcome, attempt: int) -> None:
        m = outcome.message
        if outcome.status == SENT:
            log.info("notification sent", extra=self._fields(m, attempt=attempt))
        elif outcome.status == RETRY:
            delay = round(self.backoff * 2 ** (attempt - 1), 3)
            log.warning(
                "notification failed, will retry",
                extra=self._fields(m, reason=outcome.reason, attempt=attempt, retry_in=delay),
            )
        elif outcome.status == DEAD:
            log.error("notification failed for good, dead-lettered", extra=self._fields(m, reason=outcome.reason))
        elif outcome.status == DEFERRED:
            log.info("notification in flight elsewhere, looking again later", extra=self._fields(m))

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
