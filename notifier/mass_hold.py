"""The notifier's side of a mass outage (:mod:`hbdns.mass`): hold the customers, alarm the operator.

For each event the consumer reads, :func:`verdict` says, from the mass events the sweeper recorded:

- ``hold``: an outage (``neutralized``/``family_lost`` by missed beats) that began within a mass
  event: no message now; the event waits in ``keys.mass_held`` until the hold ends;
- ``mute``: the recovery (``recovered``/``family_back``) of such an outage before the hold ended:
  no message at all (the customer never heard of the outage, and the held one becomes moot);
- otherwise the usual messages, but an outage message waits ``HBDNS_MASS_SETTLE`` seconds after
  the outage began (in the same zset): a mass outage's accounts go silent over their beat interval
  and the share must be crossed first, so without this its first accounts would be told at once.
  If the account is back by then, the recovery goes out merged ("was offline from .. to .."); if
  the outage turned out to be part of a mass outage, it waits for that hold.

:meth:`MassHold.step` (the scheduler loop) decides each held event when its hold is over, with the
account's state then: still down since that outage, the usual offline messages (and SMS job) go
out now, one per recipient; back meanwhile, nothing. A recovery after the hold then goes plain (or
merged, if it came before the held event was decided: notifier/outage.py). ``mass_started`` and
``mass_hold_over`` events become messages to the operator (``HBDNS_OPERATOR_EMAILS``,
``HBDNS_OPERATOR_WEBHOOK``), sent, retried and deduplicated like any other. They are the
operator's, in English, not the customers' templates (hbdns/notices).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import cast

import redis

from hbdns import keys, mass
from hbdns.config import Settings
from hbdns.mass import HOLD_OVER, STARTED, MassEvent
from hbdns.model import Account
from notifier.dispatch import Dispatcher
from notifier.events import FAMILY_BACK, FAMILY_LOST, NEUTRALIZED, RECOVERED, Event
from notifier.messages import EMAIL, WEBHOOK, Composer, Message
from notifier.sms import DueQueue, SmsScheduler

log = logging.getLogger(__name__)

HOLD, MUTE = "hold", "mute"


def verdict(event: Event, account: Account, events: Mapping[str, MassEvent]) -> tuple[str, MassEvent | None]:
    """``(hold|mute|"", the mass event)`` for ``event`` of ``account`` (module docstring)."""
    if not events:
        return "", None
    if event.type in (NEUTRALIZED, FAMILY_LOST) and event.get("reason", "missed") == "missed":
        ev = mass.covering(events, account.zone, event.at_ms)
        if ev is not None:
            return HOLD, ev
    elif event.type in (RECOVERED, FAMILY_BACK) and not event.first:
        ev = mass.covering(events, account.zone, int(event.get("neutral_since", "0") or 0))
        if ev is not None and event.at_ms < ev.hold_until_ms:
            return MUTE, ev
    return "", None


def still_down(event: Event, h: Mapping[str, str]) -> bool:
    """Whether the outage ``event`` began is still open in the account hash ``h``."""
    if event.type == NEUTRALIZED:
        return h.get("state") == "neutral" and int(h.get("since", "0") or 0) == event.at_ms
    fams = event.get("family", "").replace(",", "")
    return bool(fams) and all(
        f not in h.get("live", "") and int(h.get(f"lost{f}", "0") or 0) == event.at_ms for f in fams
    )


def _utc(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class MassHold:
    def __init__(
        self,
        r: redis.Redis,
        dispatcher: Dispatcher,
        sms: SmsScheduler,
        settings: Settings,
        *,
        composer: Composer,
        lease: float = 60.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.r = r
        self.dispatcher = dispatcher
        self.sms = sms
        self.composer = composer
        self.lease = lease
        self.clock = clock
        self.jobs = DueQueue(r, keys.mass_held())
        self.emails = settings.operator_emails
        self.webhook = settings.operator_webhook
        self.settle = settings.mass_settle if settings.mass_scopes else 0.0

    def load(self) -> dict[str, MassEvent]:
        return mass.load(self.r)

    # --- held events --------------------------------------------------------------------------------

    def settle_until(self, event: Event) -> float | None:
        """When an outage message not (yet) part of a mass outage may go (``HBDNS_MASS_SETTLE`` after
        the outage began: a mass outage is recognised before its first messages); None: now."""
        if not self.settle or event.type not in (NEUTRALIZED, FAMILY_LOST) or event.get("reason", "missed") != "missed":
            return None
        until = event.at_ms / 1000 + self.settle
        return until if until > self.clock() else None

    def step(self, limit: int = 200) -> int:
        """Decide the held events that are due; returns how many messages went out."""
        now = self.clock()
        members = self.jobs.claim(now, self.lease, limit)
        if not members:
            return 0
        masses = self.load()
        fresh: list[Message] = []
        backlog: list[Message] = []
        sms_jobs: dict[str, float] = {}
        later: dict[str, float] = {}
        pipe = self.r.pipeline(transaction=False)
        for member in members:
            pipe.hgetall(keys.account(Event.from_json(member).account))
        told = back = 0
        for member, raw in zip(members, pipe.execute(), strict=True):
            h = cast(dict[str, str], raw)
            event = Event.from_json(member)
            if not h.get("fqdn") or not still_down(event, h):
                back += 1
                continue
            ev = mass.covering(masses, h.get("zone", ""), event.at_ms)
            if ev is not None and ev.holding(int(now * 1000)):  # settled into a mass outage: its hold
                later[member] = ev.hold_until_ms / 1000
                continue
            account = Account.from_hash(h)
            (fresh if ev is None else backlog).extend(self.composer.immediate(event, account))
            job = self.sms.job(event, account)
            if job is not None:
                sms_jobs[job[0]] = job[1]
            told += 1
        sent = len(self.dispatcher.send_all(fresh)) + len(self.dispatcher.send_all(backlog, bulk=True))
        pipe = self.r.pipeline(transaction=False)
        if sms_jobs:
            pipe.zadd(self.sms.jobs.key, sms_jobs, nx=True)
        if later:
            pipe.zadd(self.jobs.key, later, xx=True)
        done = [m for m in members if m not in later]
        if done:
            pipe.zrem(self.jobs.key, *done)
        pipe.execute()
        if told or back:
            log.info("held outage messages decided", extra={"still_down": told, "back": back})
        return sent

    # --- the operator -------------------------------------------------------------------------------

    def operator_messages(self, event: Event) -> list[Message]:
        """The operator's e-mails and webhook for a ``mass_started`` or ``mass_hold_over`` event."""
        scope = event.get("scope")
        silent, of = event.get("silent"), event.get("of")
        until = _utc(int(event.get("hold_until_ms", "0") or 0))
        since = _utc(int(event.get("started_ms", "0") or 0))
        if event.type == STARTED:
            subject = f"hbdns ALARM: mass outage in {scope}: {silent} of {of} heartbeat accounts silent"
            text = (
                f"{silent} of the {of} heartbeat accounts of {scope} that were live went silent within one "
                f"window (detected {since}).\nDNS neutralized them as usual (mail goes to the backup MX). "
                f"Their customers' outage messages are held until {until}: those back by then get none, "
                "the others one message then.\nCheck the listener's uplink and the carriers first."
            )
        elif event.type == HOLD_OVER:
            back, down = event.get("recovered"), event.get("still_down")
            subject = f"hbdns: mass outage in {scope}: hold over, {back} back, {down} still down"
            text = (
                f"The hold of the mass outage in {scope} (detected {since}) ended {until}.\n"
                f"{back} accounts came back within it (their customers got no message); {down} are still "
                "down, and their customers are told now."
            )
        else:
            return []
        body = json.dumps(
            {"event": event.type, "event_id": event.id, "text": text, **{k: v for k, v in event.data.items()}},
            sort_keys=True,
            separators=(",", ":"),
        )
        out = [self._message(EMAIL, addr, event, subject, text) for addr in self.emails]
        if self.webhook:
            out.append(self._message(WEBHOOK, self.webhook, event, subject, text, body))
        if not out:
            log.warning("no operator address for the mass-outage alarm (HBDNS_OPERATOR_EMAILS)", extra={"scope": scope})
        return out

    @staticmethod
    def _message(channel: str, to: str, event: Event, subject: str, text: str, body: str = "") -> Message:
        return Message(
            channel=channel,
            recipient=to,
            subject=subject,
            text=text,
            account=0,
            fqdn=event.get("scope"),
            event_type=event.type,
            event_id=event.id,
            body=body,
        )
