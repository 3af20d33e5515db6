"""Sending messages: idempotency, merging, holds, retries until the horizon, dead letters. The one place for all.

For each message (a first attempt, or a job from the queue), in this order:

1. its sent marker is claimed (:mod:`notifier.leases`): a message sent already is not sent again,
   one being sent by a live notifier is looked at again shortly;
2. an outage's offline or recovery message asks :mod:`notifier.outage` whether it is moot, goes
   plain, or goes in its merged form;
3. its receiver may be held (failing as a whole): then it waits in the queue without an attempt,
   and one message per receiver probes it;
4. one transport attempt, and its outcome is written at once (not at the end of the batch, so a
   crash re-sends only the messages that were really in flight).

A transient failure queues the message (``keys.notify_queue``) for another attempt after the time
it has been failing, clamped to [``notify_backoff``, ``notify_backoff_max``]: capped exponential
backoff, as an MTA's queue does. Only a permanent failure, or one still failing after
``notify_retry_horizon``, goes to the dead letters, from which ``hbdns notify retry`` takes it back.
The caller may acknowledge its event as soon as :meth:`Dispatcher.deliver` returns: every message
is then sent, queued or dead-lettered in Redis.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import redis

from hbdns.config import Settings
from hbdns.notify_queue import Job, dead_letter
from notifier.leases import BUSY, GO, OPEN, PROBE, Holds, Markers
from notifier.messages import Message
from notifier.outage import ABSENT, DONE, MERGED, MOOT, Outages
from notifier.presence import Presence
from notifier.queue import Queue
from notifier.transports import LogTransport, Transport, TransportError

log = logging.getLogger(__name__)

SENT, DUPLICATE, QUEUED, HELD, DEAD = "sent", "duplicate", "queued", "held", "dead"
DEFERRED, DROPPED = "deferred", "moot"
DEFER_S = 2.0  # a message in flight at another live notifier is looked at again after this
PROBE_MARGIN_S = 5.0  # a probe's lease: the transport's timeout plus this


@dataclass(frozen=True)
class Item:
    message: Message
    job: Job | None = None  # None: the first attempt


@dataclass(frozen=True)
class Outcome:
    message: Message
    status: str  # sent, duplicate, queued, held, dead, deferred, moot
    reason: str = ""
    merged: bool = False


class _Gates:
    """The receivers' hold states within one batch: one probe per held receiver, the others wait for it."""

    def __init__(self, states: dict[str, str | float], timeout: float) -> None:
        self.states = dict(states)
        self.timeout = timeout
        self._probing: set[str] = set()
        self._cond = threading.Condition()

    def enter(self, dest: str) -> str | float:
        """``open`` or ``probe``: attempt (as the probe); a float: held until then, do not attempt."""
        deadline = time.monotonic() + self.timeout
        with self._cond:
            while True:
                state = self.states.get(dest, OPEN)
                if state != PROBE:
                    return state
                if dest not in self._probing:
                    self._probing.add(dest)
                    return PROBE
                if not self._cond.wait(max(0.0, deadline - time.monotonic())):
                    return time.time() + DEFER_S

    def resolve(self, dest: str, state: str | float) -> None:
        with self._cond:
            self.states[dest] = state
            self._probing.discard(dest)
            self._cond.notify_all()


class Dispatcher:
    def __init__(
        self,
        r: redis.Redis,
        transports: dict[str, Transport],
        settings: Settings,
        *,
        presence: Presence,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.r = r
        self.transports = transports
        self.presence = presence
        self.clock = clock
        self.base = settings.notify_backoff
        self.cap = settings.notify_backoff_max
        self.horizon = settings.notify_retry_horizon
        self.lease = settings.notify_claim_idle
        self.queue = Queue(r)
        self.markers = Markers(r, lease=settings.notify_claim_idle, ttl=settings.notify_sent_ttl)
        self.holds = Holds(r, base=self.base, cap=self.cap)
        self.outages = Outages(r, lease=settings.notify_claim_idle)
        # set by the notifier: when SMS may not go out now (quiet hours), and building a legacy job's message
        self.not_before: Callable[[Sequence[Message]], dict[int, float]] | None = None
        self.rebuild: Callable[[dict[str, str]], Message | None] | None = None
        self._pool = ThreadPoolExecutor(max_workers=settings.notify_workers, thread_name_prefix="send")

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        for t in self.transports.values():
            t.close()

    def transport(self, message: Message) -> Transport:
        return self.transports.get(message.channel) or LogTransport(message.channel)

    def send(self, message: Message) -> Outcome:
        return self.deliver([Item(message)])[0]

    def send_all(self, messages: Sequence[Message]) -> list[Outcome]:
        """First attempts at ``messages``; returns when each is sent, queued, moot or dead-lettered."""
        return self.deliver([Item(m) for m in messages])

    # --- one batch ----------------------------------------------------------------------------------

    def deliver(self, items: Sequence[Item]) -> list[Outcome]:
        """Attempt each item (module docstring). Markers and holds are claimed for the whole batch in one
        round trip each; each message's outcome is written as soon as it is known."""
        if not items:
            return []
        now = self.clock()
        out: dict[int, Outcome] = {}
        if self.not_before is not None:
            for i, until in self.not_before([it.message for it in items]).items():
                out[i] = self._requeue(items[i], items[i].message, until, "quiet hours", attempted=False)
        todo = [i for i in range(len(items)) if i not in out]
        live = self.presence.live()
        token = self.presence.token
        claims = self.markers.claim([(items[i].message.key, _requeued(items[i])) for i in todo], token, live)
        go: list[int] = []
        for i, claim in zip(todo, claims, strict=True):
            if claim == GO:
                go.append(i)
            elif claim == BUSY:
                self._requeue(items[i], items[i].message, now + DEFER_S, "in flight elsewhere", attempted=False)
                out[i] = Outcome(items[i].message, DEFERRED, "in flight elsewhere")
            else:
                out[i] = self._finish(items[i], DUPLICATE, claim.partition(":")[2])
        dests = {i: self.transport(items[i].message).destination(items[i].message) for i in go}
        leases = {d: self._probe_lease(items[i].message) for i, d in dests.items()}
        gates = _Gates(self.holds.check(leases.items(), now), max(leases.values(), default=0.0) + 1.0)
        # one recipient on one channel: one after the other, in event order (an offline message before
        # the recovery of the same blip); different recipients in parallel
        groups: dict[tuple[str, str], list[int]] = {}
        for i in go:
            groups.setdefault((items[i].message.channel, items[i].message.recipient), []).append(i)

        def run(indices: list[int]) -> None:
            for i in indices:
                out[i] = self._one(items[i], dests[i], gates, token, live)

        if len(groups) <= 1:
            for indices in groups.values():
                run(indices)
        else:
            list(self._pool.map(run, groups.values()))
        result = [out[i] for i in range(len(items))]
        for item, outcome in zip(items, result, strict=True):
            self._log(outcome, item)
        return result

    def _probe_lease(self, message: Message) -> float:
        return self.transport(message).timeout + PROBE_MARGIN_S

    def _one(self, item: Item, dest: str, gates: _Gates, token: str, live: frozenset[str]) -> Outcome:
        """Steps 2-4 of the module docstring for one message whose sent marker this notifier holds."""
        m = item.message
        role = m.role
        merged = False
        if role:
            answer = self.outages.ask(role, m, token, self.clock(), live)
            if answer in (MOOT, ABSENT):
                why = "the outage is over" if answer == MOOT else "no message about the outage's start was sent"
                return self._finish(item, DROPPED, why)
            if answer == DONE:
                return self._finish(item, DUPLICATE, "sent")
            if answer == BUSY:
                self._requeue(item, m, self.clock() + DEFER_S, "its outage's offline message is in flight", False)
                return Outcome(m, DEFERRED, "waiting for the offline message in flight")
            if answer == MERGED:
                m, merged = m.as_merged(), True
        gate = gates.enter(dest)
        if isinstance(gate, float):
            return self._requeue(item, m, gate, f"{dest} is held after failures", attempted=False)
        err = self._attempt(m)
        now = self.clock()
        if gate == PROBE and (err is None or not err.destination):  # the receiver answers again
            self.holds.ok(dest, now, self._probe_lease(m))
            gates.resolve(dest, OPEN)
        if err is None:
            return self._sent(item, m, merged=merged)
        if err.permanent:
            return self._dead(item, m, err.reason)
        if err.destination:
            until = self.holds.fail(dest, now, err.reason, err.retry_after)
            gates.resolve(dest, until)
            if err.config:
                log.error(
                    "channel refused us (configuration?), holding it", extra={"destination": dest, "reason": err.reason}
                )
            return self._requeue(item, m, until, err.reason, attempted=True)
        return self._requeue(item, m, now + self._backoff(item, now), err.reason, attempted=True)

    def _attempt(self, message: Message) -> TransportError | None:
        try:
            self.transport(message).notify(message)
        except TransportError as exc:
            return exc
        except Exception as exc:  # a transport bug must not wedge the stream: count it as transient
            log.exception("transport raised unexpectedly", extra=_fields(message))
            return TransportError(f"{type(exc).__name__}: {exc}")
        return None

    def _backoff(self, item: Item, now: float) -> float:
        first = item.job.first if item.job and item.job.first else now
        return min(max(now - first, self.base), self.cap)

    # --- outcomes: each written in one round trip ---------------------------------------------------

    def _job_id(self, item: Item) -> str:
        return item.job.id if item.job else item.message.key

    def _settle_offline(self, item: Item, outcome: str, pipe: Any) -> None:
        if item.message.role == "offline":
            self.outages.settle(item.message, outcome, self.presence.token, pipe)

    def _sent(self, item: Item, sent: Message, *, merged: bool) -> Outcome:
        pipe = self.r.pipeline(transaction=False)
        self.markers.set(item.message.key, self.presence.token, "sent", pipe)
        self._settle_offline(item, "sent", pipe)
        for key, field, value in item.message.marks:
            pipe.hset(key, field, value)
        if item.job is not None:
            self.queue.finish(item.job.id, self.presence.token, client=pipe)
        pipe.execute()
        return Outcome(sent, SENT, merged=merged)

    def _finish(self, item: Item, status: str, reason: str) -> Outcome:
        """Sent already (``duplicate``) or moot: nothing to send, ever."""
        pipe = self.r.pipeline(transaction=False)
        if status == DROPPED:
            self.markers.set(item.message.key, self.presence.token, "moot", pipe)
        if item.job is not None:
            self.queue.finish(item.job.id, self.presence.token, client=pipe)
        pipe.execute()
        return Outcome(item.message, status, reason)

    def _dead(self, item: Item, m: Message, reason: str) -> Outcome:
        now = self.clock()
        job = self._next_job(item, reason, attempted=True, now=now)
        letter = dead_letter(job, reason, now, _summary(m))
        pipe = self.r.pipeline(transaction=False)
        self.markers.set(item.message.key, self.presence.token, "dead", pipe)
        self._settle_offline(item, "dead", pipe)
        self.queue.finish(job.id, self.presence.token, letter, now, client=pipe)
        pipe.execute()
        return Outcome(m, DEAD, reason)

    def _requeue(self, item: Item, m: Message, due: float, reason: str, attempted: bool) -> Outcome:
        """Queue ``item`` for another look at ``due`` (after a failure, or held without an attempt)."""
        now = self.clock()
        job = self._next_job(item, reason, attempted=attempted, now=now)
        if now - job.first >= self.horizon:
            return self._dead(item, m, f"undeliverable for {_age(now - job.first)}: {reason}")
        pipe = self.r.pipeline(transaction=False)
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

    # --- the queue ------------------------------------------------------------------------------------

    def retry_step(self, limit: int = 200) -> int:
        """Attempt the queued jobs that are due; returns how many were taken."""
        jobs = self.queue.claim(self.clock(), self.lease, limit, self.presence.token)
        items: list[Item] = []
        for job in jobs:
            message = self._message_of(job)
            if message is None:
                reason = "cannot build the message again: its event is no longer in the stream"
                now = self.clock()
                letter = dead_letter(job, reason, now, {"event_id": job.rebuild.get("event_id", "")})
                self.queue.finish(job.id, self.presence.token, letter, now)
                log.error("dead letter could not be retried", extra={"job": job.id, "reason": reason})
                continue
            items.append(Item(message, job))
        self.deliver(items)
        return len(jobs)

    def _message_of(self, job: Job) -> Message | None:
        if job.message is not None:
            try:
                return Message.from_json(job.message)
            except (TypeError, ValueError, KeyError):
                log.error("unreadable queued message", extra={"job": job.id})
                return None
        if job.rebuild and self.rebuild is not None:
            return self.rebuild(job.rebuild)
        return None

    # --- logs -----------------------------------------------------------------------------------------

    def _log(self, outcome: Outcome, item: Item) -> None:
        m = outcome.message
        attempts = (item.job.attempts if item.job else 0) + 1
        if outcome.status == SENT:
            log.info("notification sent", extra=_fields(m, attempt=attempts, merged=outcome.merged))
        elif outcome.status == QUEUED:
            log.warning("notification failed, queued", extra=_fields(m, reason=outcome.reason, attempt=attempts))
        elif outcome.status == HELD:
            log.info("notification held", extra=_fields(m, reason=outcome.reason))
        elif outcome.status == DEAD:
            log.error("notification failed for good, dead-lettered", extra=_fields(m, reason=outcome.reason))
        elif outcome.status == DROPPED:
            log.info("notification moot, not sent", extra=_fields(m, reason=outcome.reason))
        elif outcome.status == DEFERRED:
            log.info("notification in flight elsewhere, looking again later", extra=_fields(m))


def _requeued(item: Item) -> bool:
    return item.job is not None and item.job.requeued


def _summary(m: Message) -> dict[str, Any]:
    return {
        "channel": m.channel,
        "recipient": m.recipient,
        "account": m.account,
        "fqdn": m.fqdn,
        "event_type": m.event_type,
        "event_id": m.event_id,
    }


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


def _age(seconds: float) -> str:
    h, rem = divmod(int(seconds), 3600)
    return f"{h} h {rem // 60} min" if h else f"{rem // 60} min {rem % 60} s"
