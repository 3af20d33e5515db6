"""What became of a message, written to Redis in one round trip as soon as it is known.

:class:`Recorder` writes each outcome: the sent marker, the outage thread of an offline message
(:mod:`notifier.outage`), the queue (a job finished, scheduled again, or dead-lettered) and the
marks a sent message leaves. Writing per message, not per batch, is what keeps a crash from
re-sending more than the messages that were really in flight.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis

from hbdns import cluster_pipeline
from hbdns.notify_queue import Job, dead_letter
from notifier.leases import Markers
from notifier.messages import Message
from notifier.outage import Outages
from notifier.presence import Presence
from notifier.queue import Queue

log = logging.getLogger("notifier.dispatch")

SENT, DUPLICATE, QUEUED, HELD, DEAD = "sent", "duplicate", "queued", "held", "dead"
DEFERRED, DROPPED = "deferred", "moot"


@dataclass(frozen=True)
class Item:
    message: Message
    job: Job | None = None  # None: the first attempt
    bulk: bool = False  # part of a backlog (a mass outage's held messages): paced below fresh ones


@dataclass(frozen=True)
class Outcome:
    message: Message
    status: str  # sent, duplicate, queued, held, dead, deferred, moot
    reason: str = ""
    merged: bool = False


class Recorder:
    def __init__(
        self,
        r: redis.Redis,
        *,
        markers: Markers,
        outages: Outages,
        queue: Queue,
        presence: Presence,
        horizon: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.r = r
        self.markers = markers
        self.outages = outages
        self.queue = queue
        self.presence = presence
        self.horizon = horizon
        self.clock = clock

    def _job_id(self, item: Item) -> str:
        return item.job.id if item.job else item.message.key

    def _settle_offline(self, item: Item, outcome: str, pipe: Any) -> None:
        if item.message.role == "offline":
            self.outages.settle(item.message, outcome, self.presence.token, pipe)

    def sent(self, item: Item, sent: Message, *, merged: bool) -> Outcome:
        pipe = cluster_pipeline.pipeline(self.r)
        self.markers.set(item.message.key, self.presence.token, "sent", pipe)
        self._settle_offline(item, "sent", pipe)
        for key, field, value in item.message.marks:
            pipe.hset(key, field, value)
        if item.job is not None:
            self.queue.finish(item.job.id, self.presence.token, client=pipe)
        pipe.execute()
        return Outcome(sent, SENT, merged=merged)

    def finish(self, item: Item, status: str, reason: str) -> Outcome:
        """Sent already (``duplicate``) or moot: nothing to send, ever."""
        pipe = cluster_pipeline.pipeline(self.r)
        if status == DROPPED:
            self.markers.set(item.message.key, self.presence.token, "moot", pipe)
        if item.job is not None:
            self.queue.finish(item.job.id, self.presence.token, client=pipe)
        pipe.execute()
        return Outcome(item.message, status, reason)

    def dead(self, item: Item, m: Message, reason: str) -> Outcome:
        now = self.clock()
        job = self._next_job(item, reason, attempted=True, now=now)
        letter = dead_letter(job, reason, now, _summary(m))
        pipe = cluster_pipeline.pipeline(self.r)
        self.markers.set(item.message.key, self.presence.token, "dead", pipe)
        self._settle_offline(item, "dead", pipe)
        self.queue.finish(job.id, self.presence.token, letter, now, client=pipe)
        pipe.execute()
        return Outcome(m, DEAD, reason)

    def requeue(self, item: Item, m: Message, due: float, reason: str, attempted: bool) -> Outcome:
        """Queue ``item`` for another look at ``due`` (after a failure, or held without an attempt)."""
        now = self.clock()
        job = self._next_job(item, reason, attempted=attempted, now=now)
        if now - job.first >= self.horizon:
            return self.dead(item, m, f"undeliverable for {_age(now - job.first)}: {reason}")
        pipe = cluster_pipeline.pipeline(self.r)
        self.markers.release(item.message.key, self.presence.token, pipe)
        self._settle_offline(item, "queued", pipe)
        self.queue.put(job, due, self.presence.token, client=pipe)
        pipe.execute()
        return Outcome(m, QUEUED if attempted else HELD, reason)

    def _next_job(self, item: Item, reason: str, *, attempted: bool, now: float) -> Job:
        old = item.job
        return Job(
            id=self._job_id(item),
            message=json.loads(item.message.to_json()),
            attempts=(old.attempts if old else 0) + (1 if attempted else 0),
            first=old.first if old and old.first else now,
            error=reason[:500],
            requeued=bool(old and old.requeued),
        )

    def log(self, outcome: Outcome, item: Item) -> None:
        m = outcome.message
        attempts = (item.job.attempts if item.job else 0) + 1
        if outcome.status == SENT:
            log.info("notification sent", extra=message_fields(m, attempt=attempts, merged=outcome.merged))
        elif outcome.status == QUEUED:
            log.warning("notification failed, queued", extra=message_fields(m, reason=outcome.reason, attempt=attempts))
        elif outcome.status == HELD:
            log.info("notification held", extra=message_fields(m, reason=outcome.reason))
        elif outcome.status == DEAD:
            log.error("notification failed for good, dead-lettered", extra=message_fields(m, reason=outcome.reason))
        elif outcome.status == DROPPED:
            log.info("notification moot, not sent", extra=message_fields(m, reason=outcome.reason))
        elif outcome.status == DEFERRED:
            log.info("notification in flight elsewhere, looking again later", extra=message_fields(m))


def _summary(m: Message) -> dict[str, Any]:
    return {
        "channel": m.channel,
        "recipient": m.recipient,
        "account": m.account,
        "fqdn": m.fqdn,
        "event_type": m.event_type,
        "event_id": m.event_id,
    }


def message_fields(message: Message, **extra: object) -> dict[str, object]:
    return {
        "channel": message.channel,
        "recipient": message.recipient,
        "account": message.fqdn,
        "event_type": message.event_type,
        "event_id": message.event_id,
        "key": message.key,
        **extra,
    }


def _age(seconds: float) -> str:
    h, rem = divmod(int(seconds), 3600)
    return f"{h} h {rem // 60} min" if h else f"{rem // 60} min {rem % 60} s"
