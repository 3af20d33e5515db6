"""Deferred SMS: minimum outage length and quiet hours, kept in Redis so they survive restarts.

The consumer turns each event that may cause an SMS into a job in the ``pending_sms`` zset, due when
the SMS may go out at the earliest (outage start + ``sms_min_outage``; otherwise the event time).
:meth:`SmsScheduler.step` takes due jobs (leased, so two notifiers don't both take one) and decides
with the account's state *now*:

- outage: sent only if the same outage is still open (state ``neutral`` since the event's time);
- recovery: sent only to the phones that got this outage's SMS (``keys.sms_outage``);
- IP change: sent, or dropped in quiet hours (it is news only while fresh);
- in quiet hours an outage or recovery job waits for the window's end and is decided again then.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import cast

import redis

from hbdns import keys
from hbdns.model import Account
from notifier.dispatch import Dispatcher, DueQueue
from notifier.events import IP_CHANGED, NEUTRALIZED, RECOVERED, Event
from notifier.messages import quiet_until, sms_due, sms_messages

log = logging.getLogger(__name__)


class SmsScheduler:
    def __init__(
        self,
        r: redis.Redis,
        dispatcher: Dispatcher,
        *,
        lease: float = 60.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.r = r
        self.dispatcher = dispatcher
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
        """Decide the due jobs; returns how many SMS were handed to the dispatcher."""
        now = self.clock()
        sent = 0
        for member in self.jobs.claim(now, self.lease, limit):
            try:
                event = Event.from_json(member)
            except (ValueError, TypeError):
                log.error("dropping unreadable SMS job", extra={"job": member[:200]})
                self.jobs.done(member)
                continue
            sent += self._decide(member, event, now)
        return sent

    def _decide(self, member: str, event: Event, now: float) -> int:
        h: dict[str, str] = cast(dict[str, str], self.r.hgetall(keys.account(event.account)))
        if not h.get("fqdn"):
            self.jobs.done(member)  # account removed
            return 0
        account = Account.from_hash(h)
        prefs = account.prefs
        phones: list[str] = []
        if event.type == NEUTRALIZED:
            still_open = h.get("state") == "neutral" and int(h.get("since", "0") or 0) == event.at_ms
            if still_open:
                phones = list(account.phones)
        elif event.type == RECOVERED:
            outage = str(int(event.get("neutral_since", "0") or 0))
            marked: dict[str, str] = cast(dict[str, str], self.r.hgetall(keys.sms_outage(account.id)))
            phones = [p for p in account.phones if marked.get(p) == outage]
        elif event.type == IP_CHANGED:
            phones = list(account.phones)
        if not phones:
            self.jobs.done(member)
            return 0
        end = quiet_until(now, prefs.quiet_hours, prefs.tz)
        if end is not None:
            if event.type == IP_CHANGED:
                self.jobs.done(member)
            else:
                self.jobs.reschedule(member, end)  # decided again when the window ends
            return 0
        messages = sms_messages(event, account, phones)
        self.dispatcher.send_all(messages)
        if event.type == RECOVERED:
            self.r.hdel(keys.sms_outage(account.id), *phones)
        self.jobs.done(member)
        return len(messages)
