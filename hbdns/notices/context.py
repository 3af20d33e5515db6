"""What a template may use: built from an allowlist of an account's and an event's fields, so no
secret (heartbeat key, password hash, the settings' passwords and tokens) is ever in reach of one.

Names (documented for operators in docs/notifications.md):

- ``name`` (the account's name the event is about), ``plan``, ``mx`` (bool), ``lang``, ``tz``;
- ``operator``: ``name``, ``sender``, ``support_url``, ``signature``, ``status_url`` (the customer's
  preference page on the status page, "" when ``HBDNS_STATUS_PUBLIC_URL`` is unset);
- ``at``: when it happened (a :class:`~hbdns.notices.locale.When`); ``since``: when the outage
  began (a When, or None when the event has none); ``duration``: the outage's length as the
  language writes it ("" when none);
- ``reason`` (``missed`` or ``offline``), ``source`` (``beat`` or ``update``), ``family`` ("4",
  "6", "4,6"), ``families`` (["IPv4", "IPv6"]), ``old``, ``new`` (addresses): "" when absent;
- ``event``: every field of the event as written to the stream (``event.type``, ``event.id``, ...),
  for event types whose fields are not listed above;
- in bodies and SMS also ``subject``: the rendered subject.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from email.utils import parseaddr
from typing import Any, Protocol

from hbdns.config import Settings
from hbdns.model import Account, NotifyPrefs
from hbdns.notices.locale import When, duration

NAMES = frozenset(
    {"name", "plan", "mx", "lang", "tz", "operator", "at", "since", "duration"}
    | {"reason", "source", "family", "families", "old", "new", "event"}
)
BODY_NAMES = NAMES | {"subject"}


class EventLike(Protocol):
    """A transition as the notifier reads it (``notifier.events.Event``) or a sample of one."""

    @property
    def id(self) -> str: ...
    @property
    def type(self) -> str: ...
    @property
    def fqdn(self) -> str: ...
    @property
    def at_ms(self) -> int: ...
    @property
    def data(self) -> Mapping[str, str]: ...
    @property
    def first(self) -> bool: ...
    def get(self, name: str, default: str = "") -> str: ...


@dataclass(frozen=True)
class Operator:
    """The provider as its customers know it (settings ``HBDNS_OPERATOR_*``, ``HBDNS_SMTP_FROM``)."""

    name: str
    sender: str
    support_url: str = ""
    signature: str = ""
    status_url: str = ""

    @classmethod
    def from_settings(cls, settings: Settings) -> Operator:
        base = settings.status_public_url
        return cls(
            name=settings.operator_name,
            sender=parseaddr(settings.smtp_from)[1] or settings.smtp_from,
            support_url=settings.operator_support_url,
            signature=settings.operator_signature.replace("\\n", "\n"),
            status_url=f"{base}/account#prefs" if base else "",
        )


def _int(value: str) -> int:
    try:
        return int(float(value or 0))
    except ValueError:
        return 0


def build(event: EventLike, account: Account, operator: Operator, lang: str) -> dict[str, Any]:
    """The context of ``event``'s templates for ``account`` in ``lang``."""
    tz = account.prefs.tz
    since_ms = _int(event.get("neutral_since"))
    duration_ms = event.get("duration_ms")
    family = event.get("family")
    return {
        "name": event.fqdn or account.fqdn,
        "plan": account.plan,
        "mx": account.mx,
        "lang": lang,
        "tz": tz,
        "operator": {
            "name": operator.name,
            "sender": operator.sender,
            "support_url": operator.support_url,
            "signature": operator.signature,
            "status_url": operator.status_url,
        },
        "at": When(event.at_ms, tz, lang),
        "since": When(since_ms, tz, lang) if since_ms > 0 else None,
        "duration": duration(_int(duration_ms), lang) if duration_ms != "" else "",
        "reason": event.get("reason"),
        "source": event.get("source"),
        "family": family,
        "families": [f"IPv{f.strip()}" for f in family.split(",") if f.strip()],
        "old": event.get("old"),
        "new": event.get("new"),
        "event": {"type": event.type, "id": event.id, **event.data},
    }


# --- samples: example events of each template set, for the start-up check, tests and previews ----


@dataclass(frozen=True)
class SampleEvent:
    """An event made from a template set's ``sample.json``."""

    id: str
    type: str
    fqdn: str
    at_ms: int
    data: Mapping[str, str] = field(default_factory=dict)

    @property
    def first(self) -> bool:
        return self.get("first") == "1"

    def get(self, name: str, default: str = "") -> str:
        return self.data.get(name, default)


SAMPLE_AT = 1_714_564_803_000  # 2024-05-01T12:00:03Z: the time of the samples in tests and checks


def samples(raw: str, fqdn: str, at_ms: int = SAMPLE_AT, event_id: str = "") -> list[SampleEvent]:
    """The events a ``sample.json`` describes: ``{"type": ..., "variants": [{"fields": {...},
    "times": {"neutral_since": -278000}}, ...]}``; ``times`` are fields holding Unix ms, given
    relative to the event's time (so a preview can place the sample at the present)."""
    spec = json.loads(raw)
    if not isinstance(spec, dict) or not isinstance(spec.get("type"), str):
        raise ValueError('a sample is a JSON object {"type": "<event type>", "variants": [...]}')
    out = []
    for variant in spec.get("variants") or [{}]:
        fields = {str(k): str(v) for k, v in (variant.get("fields") or {}).items()}
        fields.update({str(k): str(at_ms + int(v)) for k, v in (variant.get("times") or {}).items()})
        out.append(SampleEvent(event_id or f"{at_ms}-0", spec["type"], fqdn, at_ms, fields))
    return out


def sample_account(**changes: Any) -> Account:
    """The account samples are rendered for at start-up: a name as long as a typical one, MX on."""
    base = Account(
        id=1,
        fqdn="home.dyn.example.net",
        zone="dyn.example.net",
        plan="heartbeat-c",
        hb_key=b"\0" * 32,
        mx=True,
        prefs=NotifyPrefs(tz="Europe/Berlin"),
    )
    return replace(base, **changes)
