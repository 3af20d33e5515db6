"""What to tell whom: per-account preferences applied to one event, and the message texts.

Pure functions (no Redis, no clock of their own) so the rules are tested directly:

- levels per channel: ``outages`` = neutralized and recovered, and one address family lost or back
  while the other stays live (e-mail and webhook only: an SMS is for the account being offline),
  ``all`` adds IP changes and the first "online" of a new account, ``none`` mutes the channel;
- SMS waits ``sms_min_outage`` seconds after the outage started (a blip that recovers sooner sends
  nothing) and never goes out in quiet hours: an outage still open when the window ends is sent then;
- a recovery SMS only follows an outage SMS that was attempted (else it would announce an unknown outage);
- the two messages of one outage share ``outage_ms``; a recovery also carries its *merged* form
  ("was offline from .. to .."), sent instead when the offline message never went out (see
  :mod:`notifier.outage`);
- ``hbdns notify test`` writes a ``test`` event: one message on every channel whose level is not
  ``none``, the SMS at once (quiet hours still hold it).

The texts come from the operator's templates, in the account's language (:mod:`hbdns.notices`,
shared with ``hbdns notify preview``); :class:`Composer` turns them into messages.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, fields, replace
from datetime import datetime, timedelta
from typing import Any

from hbdns import notify_queue
from hbdns.model import Account, parse_quiet_hours
from hbdns.notices import sms as sms_length
from hbdns.notices import webhook
from hbdns.notices.locale import zone as _zone
from hbdns.notices.render import Renderer, Texts
from notifier.counters import Counters
from notifier.events import FAMILY_BACK, FAMILY_LOST, IP_CHANGED, NEUTRALIZED, RECOVERED, TEST, Event

EMAIL, SMS, WEBHOOK = "email", "sms", "webhook"
CHANNELS = (EMAIL, SMS, WEBHOOK)


@dataclass(frozen=True)
class Message:
    """One notification for one recipient on one channel."""

    channel: str
    recipient: str
    subject: str
    text: str  # e-mail: the plain text; SMS: the text sent; webhook: its short text
    account: int
    fqdn: str
    event_type: str
    event_id: str
    body: str = ""  # webhook: the exact JSON that is posted (and signed)
    marks: tuple[tuple[str, str, str], ...] = ()  # (hash key, field, value) to HSET once sent
    outage_ms: int = 0  # start of the outage an offline/recovery message is about (0: not one)
    merged: tuple[str, ...] = ()  # a recovery's (subject, text, body, html) when its offline message never went
    html: str = ""  # e-mail: the HTML alternative ("" = plain text only)
    lang: str = ""  # the language of the texts

    @property
    def key(self) -> str:
        """Idempotency key: stream entry id + channel + recipient (hashed: URLs and addresses vary)."""
        return notify_queue.message_key(self.event_id, self.channel, self.recipient)

    @property
    def thread(self) -> str:
        """The recipient on its channel: messages of one outage to one thread are merged."""
        return notify_queue.thread(self.channel, self.recipient)

    @property
    def role(self) -> str:
        """``offline`` or ``recovery`` for the two messages of an outage, else ``""``."""
        if not self.outage_ms:
            return ""
        return {NEUTRALIZED: "offline", RECOVERED: "recovery"}.get(self.event_type, "")

    def as_merged(self) -> Message:
        """The recovery in its merged form (unchanged when it has none: a message queued by an older version)."""
        if not self.merged:
            return self
        subject, text, body, *html = self.merged  # three items when queued by an older version
        return replace(self, subject=subject, text=text, body=body, html=html[0] if html else "", merged=())

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, raw: str | dict[str, Any]) -> Message:
        d = json.loads(raw) if isinstance(raw, str) else dict(raw)
        known = {f.name for f in fields(cls)}
        d = {k: v for k, v in d.items() if k in known}
        d["marks"] = tuple(tuple(m) for m in d.get("marks", ()))
        d["merged"] = tuple(d.get("merged", ()))
        return cls(**d)


# --- preferences ----------------------------------------------------------------------------------


def wants(level: str, event: Event) -> bool:
    """Whether a channel at ``level`` (none|outages|all) reports ``event``."""
    if level == "none":
        return False
    if event.type in (NEUTRALIZED, FAMILY_LOST):
        return True
    if event.type in (RECOVERED, FAMILY_BACK):
        return level == "all" if event.first else True
    if event.type == IP_CHANGED:
        return level == "all"
    return event.type == TEST


def sms_due(event: Event, account: Account) -> float | None:
    """When the deferred-SMS step should look at ``event`` (Unix s); None: no SMS for it."""
    if not account.phones or not wants(account.prefs.sms, event) or event.first or event.type == TEST:
        return None
    if event.type in (FAMILY_LOST, FAMILY_BACK):
        return None
    if event.type == NEUTRALIZED:
        return event.at_ms / 1000 + account.prefs.sms_min_outage
    return event.at_ms / 1000


def quiet_until(now: float, quiet_hours: str, tz: str) -> float | None:
    """The end of the quiet window ``now`` falls in (Unix s), or None outside quiet hours."""
    if not quiet_hours:
        return None
    start, end = parse_quiet_hours(quiet_hours)
    if start == end:
        return None
    zone = _zone(tz)
    local = datetime.fromtimestamp(now, zone)
    minute = local.hour * 60 + local.minute
    inside = start <= minute < end if start < end else (minute >= start or minute < end)
    if not inside:
        return None
    day = local.date() if minute < end else local.date() + timedelta(days=1)
    return datetime(day.year, day.month, day.day, end // 60, end % 60, tzinfo=zone).timestamp()


# --- messages from the operator's templates (hbdns.notices) ----------------------------------------


def _outage_ms(event: Event) -> int:
    """The start of the outage ``event`` opens or closes; 0 when it is no outage message."""
    if event.type == NEUTRALIZED:
        return event.at_ms
    if event.type == RECOVERED and not event.first:
        return int(event.get("neutral_since", "0") or 0)
    return 0


def _message(
    channel: str, recipient: str, event: Event, account: Account, texts: Texts, text: str, **kw: Any
) -> Message:
    return Message(
        channel=channel,
        recipient=recipient,
        subject=texts.subject,
        text=text,
        account=account.id,
        fqdn=event.fqdn or account.fqdn,
        event_type=event.type,
        event_id=event.id,
        outage_ms=_outage_ms(event),
        lang=texts.lang,
        **kw,
    )


def _no_zone_lang(zone: str) -> str:
    return ""


class Composer:
    """Builds the messages of an event from the templates (one per notifier, shared by its threads).

    ``zone_lang`` gives a zone's language ("" = none: then ``HBDNS_NOTIFY_LANG``); SMS texts are cut
    to ``sms_segments`` segments (counted in ``counters`` as ``sms_cut_total``).
    """

    def __init__(
        self,
        renderer: Renderer,
        *,
        zone_lang: Callable[[str], str] = _no_zone_lang,
        sms_segments: int = 1,
        counters: Counters | None = None,
    ) -> None:
        self.renderer = renderer
        self.zone_lang = zone_lang
        self.sms_segments = sms_segments
        self.counters = counters if counters is not None else Counters()

    def lang(self, account: Account) -> str:
        return self.renderer.lang(account, self.zone_lang(account.zone))

    def _texts(self, event: Event, account: Account) -> tuple[Texts, Texts | None]:
        """The event's texts, and for a recovery those of its merged form too."""
        lang = self.lang(account)
        texts = self.renderer.texts(event, account, lang)
        merging = event.type == RECOVERED and not event.first
        return texts, self.renderer.texts(event, account, lang, merged=True) if merging else None

    def immediate(self, event: Event, account: Account) -> list[Message]:
        """E-mail and webhook messages for ``event`` (and a test's SMS); these go out at once."""
        prefs, out = account.prefs, []
        email, hook = wants(prefs.email, event) and account.emails, account.webhook and wants(prefs.webhook, event)
        if not (email or hook or (event.type == TEST and account.phones and wants(prefs.sms, event))):
            return []
        t, m = self._texts(event, account)
        if email:
            merged = (m.subject, m.text, "", m.html) if m else ()
            out += [_message(EMAIL, a, event, account, t, t.text, html=t.html, merged=merged) for a in account.emails]
        if hook:
            body = webhook.body(event, account, subject=t.subject, text=t.short, lang=t.lang)
            merged = ()
            if m:
                merged = (m.subject, m.short, webhook.body(event, account, subject=m.subject, text=m.short,
                                                           lang=m.lang, merged=True), "")  # fmt: skip
            out.append(_message(WEBHOOK, account.webhook, event, account, t, t.short, body=body, merged=merged))
        if event.type == TEST and wants(prefs.sms, event):
            out += self._sms(event, account, account.phones, (t, m))
        return out

    def sms(self, event: Event, account: Account, phones: Iterable[str]) -> list[Message]:
        """SMS for ``event`` to ``phones``; a recovery SMS goes plain, merged or not at all (notifier.outage)."""
        phones = list(phones)
        return self._sms(event, account, phones, self._texts(event, account)) if phones else []

    def _sms(
        self, event: Event, account: Account, phones: Iterable[str], texts: tuple[Texts, Texts | None]
    ) -> list[Message]:
        t, m = texts
        text = self._fit(t.short, count=True)
        merged = (m.subject, self._fit(m.short), "", "") if m else ()
        return [_message(SMS, phone, event, account, t, text, merged=merged) for phone in phones]

    def _fit(self, text: str, *, count: bool = False) -> str:
        fitted = sms_length.fit(text, self.sms_segments)
        if fitted.cut and count:
            self.counters.inc("sms_cut_total")  # texts built (a redelivered event's again), not sent
        return fitted.text
