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

import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import redis

from hbdns.config import Settings
from hbdns.notify_queue import Job, dead_letter
from notifier.channel import LogTransport, Transport, TransportError
from notifier.leases import BUSY, GO, OPEN, PROBE, Gates, Holds, Markers
from notifier.messages import Message
from notifier.metrics import NotifierMetrics
from notifier.outage import ABSENT, DONE, MERGED, MOOT, Outages
from notifier.outcomes import (
    DEFERRED,
    DROPPED,
    DUPLICATE,
    Item,
    Outcome,
    Recorder,
    message_fields,
)
from notifier.presence import Presence
from notifier.queue import Queue

log = logging.getLogger(__name__)

DEFER_S = 2.0  # a message in flight at another live notifier is looked at again after this
PROBE_MARGIN_S = 5.0  # a probe's lease: the transport's timeout plus this
SEND_LEASE_MIN = 300.0  # seconds, see Dispatcher.send_lease


class Dispatcher:
    def __init__(
        self,
        r: redis.Redis,
        transports: dict[str, Transport],
        settings: Settings,
        *,
        presence: Presence,
        clock: Callable[[], float] = time.time,
        metrics: NotifierMetrics | None = None,
    ) -> None:
        self.r = r
        self.metrics = metrics if metrics is not None else NotifierMetrics()
        self.transports = transports
        self.presence = presence
        self.clock = clock
        self.base = settings.notify_backoff
        self.cap = settings.notify_backoff_max
        self.horizon = settings.notify_retry_horizon
        self.lease = settings.notify_claim_idle
        # a live notifier's sends in flight stay its own this long (its death frees them at once): far
        # longer than a batch can take, so a slow relay cannot make a queued send look abandoned
        self.send_lease = max(SEND_LEASE_MIN, 5 * settings.notify_claim_idle)
        self.queue = Queue(r)
        self.markers = Markers(r, lease=self.send_lease, ttl=settings.notify_sent_ttl)
        self.holds = Holds(r, base=self.base, cap=settings.notify_probe_max)
        self.outages = Outages(r, lease=self.send_lease)
        self.record = Recorder(
            r,
            markers=self.markers,
            outages=self.outages,
            queue=self.queue,
            presence=presence,
            horizon=self.horizon,
            clock=clock,
        )
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
                out[i] = self.record.requeue(items[i], items[i].message, until, "quiet hours", attempted=False)
        todo = [i for i in range(len(items)) if i not in out]
        live = self.presence.live()
        token = self.presence.token
        claims = self.markers.claim([(items[i].message.key, _requeued(items[i])) for i in todo], token, live)
        go: list[int] = []
        for i, claim in zip(todo, claims, strict=True):
            if claim == GO:
                go.append(i)
            elif claim == BUSY:
                self.record.requeue(items[i], items[i].message, now + DEFER_S, "in flight elsewhere", attempted=False)
                out[i] = Outcome(items[i].message, DEFERRED, "in flight elsewhere")
            else:
                out[i] = self.record.finish(items[i], DUPLICATE, claim.partition(":")[2])
        dests = {i: self.transport(items[i].message).destination(items[i].message) for i in go}
        leases = {d: self._probe_lease(items[i].message) for i, d in dests.items()}
        gates = Gates(
            self.holds.check(leases, now),
            max(leases.values(), default=0.0) + 1.0,
            lambda dest: self.holds.probe(dest, self.clock(), leases[dest]),
        )
        # one recipient on one channel: one after the other, in event order (an offline message before
        # the recovery of the same blip); different recipients in parallel
        groups: dict[tuple[str, str], list[int]] = {}
        for i in go:
            groups.setdefault((items[i].message.channel, items[i].message.recipient), []).append(i)
        # the first outage message of each group asks in one round trip; a later one of the same
        # recipient (the recovery of a blip within the batch) must ask after the first one settled
        first = [g[0] for g in groups.values() if items[g[0]].message.role]
        asked = dict(
            zip(first, self.outages.ask_many([items[i].message for i in first], token, now, live), strict=True)
        )

        def run(indices: list[int]) -> None:
            for i in indices:
                out[i] = self._one(items[i], dests[i], gates, token, live, asked.get(i))

        if len(groups) <= 1:
            for indices in groups.values():
                run(indices)
        else:
            list(self._pool.map(run, groups.values()))
        result = [out[i] for i in range(len(items))]
        done = self.clock()
        for item, outcome in zip(items, result, strict=True):
            self.record.log(outcome, item)
            self.metrics.outcome(outcome, done)
        return result

    def _probe_lease(self, message: Message) -> float:
        return self.transport(message).timeout + PROBE_MARGIN_S

    def _one(
        self, item: Item, dest: str, gates: Gates, token: str, live: frozenset[str], answer: str | None
    ) -> Outcome:
        """Steps 2-4 of the module docstring for one message whose sent marker this notifier holds
        (``answer``: what :mod:`notifier.outage` said already, if it was asked for the batch)."""
        m = item.message
        merged = False
        if m.role:
            if answer is None:
                answer = self.outages.ask(m, token, self.clock(), live)
            if answer in (MOOT, ABSENT):
                why = "the outage is over" if answer == MOOT else "no message about the outage's start was sent"
                return self.record.finish(item, DROPPED, why)
            if answer == DONE:
                return self.record.finish(item, DUPLICATE, "sent")
            if answer == BUSY:
                self.record.requeue(item, m, self.clock() + DEFER_S, "its outage's offline message is in flight", False)
                return Outcome(m, DEFERRED, "waiting for the offline message in flight")
            if answer == MERGED:
                m, merged = m.as_merged(), True
        gate = gates.enter(dest)
        if isinstance(gate, float):
            return self.record.requeue(item, m, gate, f"{dest} is held after failures", attempted=False)
        err = self._attempt(m)
        now = self.clock()
        if gate == PROBE and (err is None or not err.destination):  # the receiver answers again
            self.holds.ok(dest, now, self._probe_lease(m))
            gates.resolve(dest, OPEN)
        if err is None:
            return self.record.sent(item, m, merged=merged)
        if err.permanent:
            return self.record.dead(item, m, err.reason)
        if err.destination:
            until = self.holds.fail(dest, now, err.reason, err.retry_after)
            gates.resolve(dest, until)
            if err.config:
                log.error(
                    "channel refused us (configuration?), holding it", extra={"destination": dest, "reason": err.reason}
                )
            return self.record.requeue(item, m, until, err.reason, attempted=True)
        return self.record.requeue(item, m, now + self._backoff(item, now), err.reason, attempted=True)

    def _attempt(self, message: Message) -> TransportError | None:
        try:
            self.transport(message).notify(message)
        except TransportError as exc:
            return exc
        except Exception as exc:  # a transport bug must not wedge the stream: count it as transient
            log.exception("transport raised unexpectedly", extra=message_fields(message))
            return TransportError(f"{type(exc).__name__}: {exc}")
        return None

    def _backoff(self, item: Item, now: float) -> float:
        first = item.job.first if item.job and item.job.first else now
        return min(max(now - first, self.base), self.cap)

    # --- the queue ------------------------------------------------------------------------------------

    def retry_step(self, limit: int = 200) -> int:
        """Attempt the queued jobs that are due; returns how many were taken."""
        jobs = self.queue.claim(self.clock(), self.lease, limit, self.presence.token)
        items: list[Item] = []
        for job in jobs:
            message = self._message_of(job)
            if message is None:
                reason = (
                    "unreadable queued message"
                    if job.message is not None
                    else "cannot build the message again: its event is no longer in the stream"
                )
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


def _requeued(item: Item) -> bool:
    return item.job is not None and item.job.requeued
