"""The JSON a webhook receives: stable for one event (sorted keys, no time of sending), so a retry
posts the same bytes and its signature stays the same."""

from __future__ import annotations

import json
from typing import Any

from hbdns.model import Account
from hbdns.notices.context import EventLike
from hbdns.notices.locale import utc_iso


def body(event: EventLike, account: Account, *, subject: str, text: str, lang: str, merged: bool = False) -> str:
    """``text`` is the short text (the SMS template's); ``merged``: this recovery replaces the
    ``neutralized`` of its outage, which was not delivered and never will be."""
    data: dict[str, Any] = {
        "event": event.type,
        "event_id": event.id,
        "account": {"id": account.id, "fqdn": event.fqdn or account.fqdn},
        "at": utc_iso(event.at_ms),
        "at_ms": event.at_ms,
        "subject": subject,
        "text": text,
        "lang": lang,
    }
    if event.get("family") and event.type != "ip_changed":
        data["families"] = [int(f) for f in event.get("family").split(",")]
    if event.type in ("neutralized", "family_lost"):
        data["reason"] = event.get("reason", "missed")
    elif event.type == "recovered":
        data["first"] = event.first
        if not event.first:
            data["outage_ms"] = int(event.get("duration_ms", "0") or 0)
            data["outage_since_ms"] = int(event.get("neutral_since", "0") or 0)
    elif event.type == "ip_changed":
        data.update(family=event.get("family"), old=event.get("old"), new=event.get("new"))
    if event.get("source"):
        data["source"] = event.get("source")
    if merged:
        data["merged"] = True
    return json.dumps(data, sort_keys=True, separators=(",", ":"))
