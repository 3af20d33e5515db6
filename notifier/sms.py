"""Deferred SMS: minimum outage length and quiet hours, kept in Redis so they survive restarts.

The consumer turns each event that may cause an SMS into a job in the ``pending_sms`` zset, due when
the SMS may go out at the earliest (outage start + ``sms_min_outage``; otherwise the event time).
:meth:`SmsScheduler.step` takes due jobs (leased, so two notifiers don't both take one) and decides
with the account's state *now*:

- outage: sent only if the same outage is still open (state ``neutral`` since the event's time);
- recovery: handed over for every phone; per phone :mod:`notifier.outage` sends it plain if the
  outage SMS went out, merged ("was OFFLINE from .. to ..") if that one was attempted but never
  arrived (the gateway was down), and not at all if no outage SMS was attempted (a blip shorter
  than the minimum, or one that began and ended in quiet hours);
- IP change: sent, or dropped in quiet hours (it is news only while fresh);
- in quiet hours an outage or recovery job waits for the window's end and is decided again then,
  and so does a queued SMS retry (:meth:`SmsScheduler.not_before`): quiet hours hold for every SMS.

A job is leased for ``notify_liveness`` seconds while it is decided: a notifier that dies holding it
leaves it due again that soon, and deciding a job twice is harmless (the sent markers).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import cast

import redis

from hbdns import keys, scripts
from hbdns.model import Account, NotifyPrefs
from notifier.dispatch import Dispatcher
from notifier.events import IP_CHANGED, NEUTRALIZED, RECOVERED, Event
from notifier.messages import SMS, Composer, Message, quiet_until, sms_due
from notifier.outcomes import SENT

log = logging.getLogger(__name__)


class DueQueue:
    """A zset of JSON jobs scored by due time. ``claim`` leases due jobs so two notifiers don't both run them;
    a job whose runner died is due again when its lease ends (the claim: ``hbdns/lua/notify_sms_claim.lua``)."""

    def __init__(self, r: redis.Redis, key: str) -> None:
        self.r = r
        self.key = key

    def add(self, member: str, due: float, *, nx: bool = True) -> None:
        self.r.zadd(self.key, {member: due}, nx=nx)

    def claim(self, now: float, lease: float, limit: int = 100) -> list[str]:
        return [str(m) for m in scripts.NOTIFY_SMS_CLAIM(self.r, [self.key], [repr(now), repr(now + lease), limit])]

    def reschedule(self, member: str, due: float) -> None:
        self.r.zadd(self.key, {member: due}, xx=True)

    def done(self, member: str) -> None:
        self.r.zrem(self.key, member)

    def size(self) -> int:
        return int(self.r.zcard(self.key))


class SmsScheduler:
    def __init__(
        self,
        r: redis.Redis,
        dispatcher: Dispatcher,
        *,
        composer: Composer,
        lease: float = 60.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.r = r
        self.dispatcher = dispatcher
        self.composer = composer
        self.lease = lease
        self.clock = clock
        self.jobs = DueQueue(r, keys.pending_sms())

    @staticmethod
    def job(event: Event, account: Account) -> tuple[str, float] | None:
        """The (zset member, due time) for ``event`` if the account's preferences may want an SMS for it."""
        due = sms_due(event, account)
        return None if due is None else (event.to_json(), due)

    def schedule(self, event: Event, account: Account) -> bool:
        """Queue ``event`` for the SMS step (NX: redelivering the event keeps a rescheduled time)."""
        job = self.job(event, account)
        if job is not None:
            self.jobs.add(*job)
        return job is not None

    def step(self, limit: int = 100) -> int:
        """Decide the due jobs and send what they call for in one batch; returns how many SMS went out."""
        now = self.clock()
        messages: list[Message] = []
        decided: list[str] = []
        for member in self.jobs.claim(now, self.lease, limit):
            try:
                event = Event.from_json(member)
            except (ValueError, TypeError):
                log.error("dropping unreadable SMS job", extra={"job": member[:200]})
                self.jobs.done(member)
                continue
            batch = self._decide(member, event, now)
            if batch:
                messages += batch
                decided.append(member)
        outcomes = self.dispatcher.send_all(messages)
        if decided:
            self.r.zrem(self.jobs.key, *decided)
        return sum(1 for o in outcomes if o.status == SENT)

    def _decide(self, member: str, event: Event, now: float) -> list[Message]:
        """The SMS ``event`` calls for now; a job that calls for none is finished or rescheduled here."""
        h: dict[str, str] = cast(dict[str, str], self.r.hgetall(keys.account(event.account)))
        if not h.get("fqdn"):
            self.jobs.done(member)  # account removed
            return []
        account = Account.from_hash(h)
        prefs = account.prefs
        phones: list[str] = []
        if event.type == NEUTRALIZED:
            still_open = h.get("state") == "neutral" and int(h.get("since", "0") or 0) == event.at_ms
            if still_open:
                phones = list(account.phones)
        elif event.type in (RECOVERED, IP_CHANGED):
            phones = list(account.phones)
        if not phones:
            self.jobs.done(member)
            return []
        end = quiet_until(now, prefs.quiet_hours, prefs.tz)
        if end is not None:
            if event.type == IP_CHANGED:
                self.jobs.done(member)
            else:
                self.jobs.reschedule(member, end)  # decided again when the window ends
            return []
        return self.composer.sms(event, account, phones)

    def not_before(self, messages: Sequence[Message]) -> dict[int, float]:
        """For the SMS among ``messages`` whose account is in quiet hours now: index -> the window's end."""
        sms = [(i, m) for i, m in enumerate(messages) if m.channel == SMS]
        if not sms:
            return {}
        pipe = self.r.pipeline(transaction=False)
        for _, m in sms:
            pipe.hget(keys.account(m.account), "prefs")
        now = self.clock()
        out = {}
        for (i, _), raw in zip(sms, pipe.execute(), strict=True):
            try:
                prefs = NotifyPrefs.from_json(raw)
                end = quiet_until(now, prefs.quiet_hours, prefs.tz)
            except (ValueError, TypeError):
                continue
            if end is not None:
                out[i] = end
        return out
