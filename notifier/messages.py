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
  :mod:`notifier.outage`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, fields, replace
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from hbdns import notify_queue
from hbdns.model import Account, parse_quiet_hours
from notifier.events import FAMILY_BACK, FAMILY_LOST, IP_CHANGED, NEUTRALIZED, RECOVERED, Event

EMAIL, SMS, WEBHOOK = "email", "sms", "webhook"
CHANNELS = (EMAIL, SMS, WEBHOOK)


@dataclass(frozen=True)
class Message:
    """One notification for one recipient on one channel."""

    channel: str
    recipient: str
    subject: str
    text: str
    account: int
    fqdn: str
    event_type: str
    event_id: str
    body: str = ""  # webhook: the exact JSON that is posted (and signed)
    marks: tuple[tuple[str, str, str], ...] = ()  # (hash key, field, value) to HSET once sent
    outage_ms: int = 0  # start of the outage an offline/recovery message is about (0: not one)
    merged: tuple[str, ...] = ()  # a recovery's (subject, text, body) when its offline message never went

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
        subject, text, body = self.merged
        return replace(self, subject=subject, text=text, body=body, merged=())

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
    return False


def sms_due(event: Event, account: Account) -> float | None:
    """When the deferred-SMS step should look at ``event`` (Unix s); None: no SMS for it."""
    if not account.phones or not wants(account.prefs.sms, event) or event.first:
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


# --- texts ----------------------------------------------------------------------------------------


def _zone(tz: str) -> ZoneInfo:
    try:
        return ZoneInfo(tz or "UTC")
    except Exception:
        return ZoneInfo("UTC")


def fmt_time(ms: int, tz: str) -> str:
    """'2024-05-01T12:00:00Z (14:00:00 CEST, Europe/Berlin)': UTC ISO plus the account's local time."""
    utc = datetime.fromtimestamp(ms / 1000, UTC)
    text = utc.strftime("%Y-%m-%dT%H:%M:%SZ")
    if tz and tz != "UTC":
        local = utc.astimezone(_zone(tz))
        day = "" if local.date() == utc.date() else local.strftime("%Y-%m-%d ")
        text += f" ({day}{local.strftime('%H:%M:%S %Z')}, {tz})"
    return text


def fmt_duration(ms: int) -> str:
    """'3 s', '5 min 3 s', '2 h 5 min', '1 d 3 h'."""
    s = max(0, int(ms) // 1000)
    if s < 60:
        return f"{s} s"
    m, s = divmod(s, 60)
    if m < 60:
        return f"{m} min {s} s" if s else f"{m} min"
    h, m = divmod(m, 60)
    if h < 24:
        return f"{h} h {m} min" if m else f"{h} h"
    d, h = divmod(h, 24)
    return f"{d} d {h} h" if h else f"{d} d"


def _reason(event: Event, account: Account) -> str:
    if event.get("reason") == "offline":
        return "the client reported that it is going offline"
    return f"no heartbeat or update arrived in time (plan {account.plan})"


def _texts(event: Event, account: Account) -> tuple[str, str, str]:
    """(subject, long text, SMS text) for an event."""
    name, tz = event.fqdn or account.fqdn, account.prefs.tz
    when = fmt_time(event.at_ms, tz)
    if event.type == NEUTRALIZED:
        reason = _reason(event, account)
        subject = f"hbdns: {name} is offline (neutralized)"
        went = f" ({event.families} gone, no address family left)" if event.families else ""
        text = (
            f"{name} was neutralized at {when}{went}.\n"
            f"Reason: {reason}.\n\n"
            f"Until it reports again, DNS answers {name} with the neutral address, so no traffic reaches "
            f"whoever holds the old IP address now" + (" and mail for it goes to the backup MX." if account.mx else ".")
        )
        sms = f"hbdns: {name} OFFLINE since {when}: {reason}."
    elif event.type == RECOVERED and event.first:
        subject = f"hbdns: {name} is online"
        text = f"{name} is online: first report at {when} ({event.get('source', 'beat')})."
        sms = f"hbdns: {name} online since {when}."
    elif event.type == RECOVERED:
        duration = fmt_duration(int(event.get("duration_ms", "0") or 0))
        since = fmt_time(int(event.get("neutral_since", "0") or 0), tz)
        subject = f"hbdns: {name} is back online after {duration}"
        over = f", over {event.families}" if event.families else ""
        text = (
            f"{name} is back online since {when} ({event.get('source', 'beat')}{over}).\n"
            f"The outage lasted {duration}: neutralized since {since}."
        )
        sms = f"hbdns: {name} back ONLINE at {when} after an outage of {duration}."
    elif event.type == FAMILY_LOST:
        fam = event.families
        subject = f"hbdns: {name} lost {fam} (neutralized)"
        text = (
            f"The {fam} address of {name} was neutralized at {when}: no heartbeat or update over {fam} "
            f"arrived in time (plan {account.plan}).\n\n"
            f"DNS answers the neutral {fam} address for {name} until it reports over {fam} again; "
            f"{name} stays live over its other address family."
        )
        sms = f"hbdns: {name} lost {fam} at {when}."
    elif event.type == FAMILY_BACK and event.first:
        fam = event.families
        subject = f"hbdns: {name} is online over {fam} too"
        text = f"{name} is live over {fam} too: first report over {fam} at {when} ({event.get('source', 'beat')})."
        sms = f"hbdns: {name} online over {fam} since {when}."
    elif event.type == FAMILY_BACK:
        fam = event.families
        duration = fmt_duration(int(event.get("duration_ms", "0") or 0))
        subject = f"hbdns: {name} is back on {fam} after {duration}"
        text = f"{name} is live over {fam} again since {when} ({event.get('source', 'beat')}), after {duration}."
        sms = f"hbdns: {name} back on {fam} at {when}."
    elif event.type == IP_CHANGED:
        family = event.get("family", "4")
        old = event.get("old") or "(none)"
        subject = f"hbdns: {name} has a new IPv{family} address"
        text = (
            f"The IPv{family} address of {name} changed from {old} to {event.get('new')} at {when} "
            f"({event.get('source', 'beat')})."
        )
        sms = f"hbdns: {name} new IPv{family} {event.get('new')} (was {old}) at {when}."
    else:
        subject = f"hbdns: {name}: {event.type}"
        text = f"{name}: {event.type} at {when}."
        sms = text
    return subject, text, sms


def _merged_texts(event: Event, account: Account) -> tuple[str, str, str]:
    """(subject, long text, SMS text) of a recovery that replaces its undelivered offline message."""
    name, tz = event.fqdn or account.fqdn, account.prefs.tz
    duration = fmt_duration(int(event.get("duration_ms", "0") or 0))
    since = fmt_time(int(event.get("neutral_since", "0") or 0), tz)
    when = fmt_time(event.at_ms, tz)
    subject = f"hbdns: {name} was offline for {duration}"
    text = (
        f"{name} was offline from {since} to {when}, {duration}; it is back online "
        f"({event.get('source', 'beat')}).\n"
        "The message about the start of this outage could not be delivered in time; this one replaces it."
    )
    sms = f"hbdns: {name} was OFFLINE from {since} to {when} ({duration}), back online now."
    return subject, text, sms


def webhook_body(event: Event, account: Account, text: str, *, merged: bool = False) -> str:
    """The JSON a webhook receives: stable for one event, so a retry posts the same bytes."""
    data: dict[str, Any] = {
        "event": event.type,
        "event_id": event.id,
        "account": {"id": account.id, "fqdn": event.fqdn or account.fqdn},
        "at": fmt_time(event.at_ms, "UTC"),
        "at_ms": event.at_ms,
        "text": text,
    }
    if event.get("family") and event.type != IP_CHANGED:
        data["families"] = [int(f) for f in event.get("family").split(",")]
    if event.type in (NEUTRALIZED, FAMILY_LOST):
        data["reason"] = event.get("reason", "missed")
    elif event.type == RECOVERED:
        data["first"] = event.first
        if not event.first:
            data["outage_ms"] = int(event.get("duration_ms", "0") or 0)
            data["outage_since_ms"] = int(event.get("neutral_since", "0") or 0)
    elif event.type == IP_CHANGED:
        data.update(family=event.get("family"), old=event.get("old"), new=event.get("new"))
    if event.get("source"):
        data["source"] = event.get("source")
    if merged:
        data["merged"] = True  # the "neutralized" of this outage was not delivered and never will be
    return json.dumps(data, sort_keys=True, separators=(",", ":"))


def _outage_ms(event: Event) -> int:
    """The start of the outage ``event`` opens or closes; 0 when it is no outage message."""
    if event.type == NEUTRALIZED:
        return event.at_ms
    if event.type == RECOVERED and not event.first:
        return int(event.get("neutral_since", "0") or 0)
    return 0


def _message(
    channel: str, recipient: str, event: Event, account: Account, subject: str, text: str, **kw: Any
) -> Message:
    return Message(
        channel=channel,
        recipient=recipient,
        subject=subject,
        text=text,
        account=account.id,
        fqdn=event.fqdn or account.fqdn,
        event_type=event.type,
        event_id=event.id,
        outage_ms=_outage_ms(event),
        **kw,
    )


def immediate_messages(event: Event, account: Account) -> list[Message]:
    """E-mail and webhook messages for ``event``; these go out at once."""
    subject, text, _ = _texts(event, account)
    merging = event.type == RECOVERED and not event.first
    m_subject, m_text, _ = _merged_texts(event, account) if merging else ("", "", "")
    out = []
    if wants(account.prefs.email, event):
        merged = (m_subject, m_text, "") if merging else ()
        out += [_message(EMAIL, addr, event, account, subject, text, merged=merged) for addr in account.emails]
    if account.webhook and wants(account.prefs.webhook, event):
        body = webhook_body(event, account, text)
        merged = (m_subject, m_text, webhook_body(event, account, m_text, merged=True)) if merging else ()
        out.append(_message(WEBHOOK, account.webhook, event, account, subject, text, body=body, merged=merged))
    return out


def sms_messages(event: Event, account: Account, phones: Iterable[str]) -> list[Message]:
    """SMS for ``event`` to ``phones``; a recovery SMS goes plain, merged or not at all (notifier.outage)."""
    subject, _, text = _texts(event, account)
    merged: tuple[str, ...] = ()
    if event.type == RECOVERED and not event.first:
        m_subject, _, m_text = _merged_texts(event, account)
        merged = (m_subject, m_text, "")
    return [_message(SMS, phone, event, account, subject, text, merged=merged) for phone in phones]
