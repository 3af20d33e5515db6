"""Transition events as the liveness scripts write them to the shards' ``events`` streams.

One value type for the three places that read them: the stream consumer, the deferred-SMS jobs
(which carry the event they were made from) and the account log's JSON entries.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from hbdns.event_streams import LEGACY_FIELD
from hbdns.notices import TEST_EVENT

NEUTRALIZED = "neutralized"
RECOVERED = "recovered"
IP_CHANGED = "ip_changed"
TEST = TEST_EVENT  # written by `hbdns notify test`
FAMILY_LOST = "family_lost"  # one address family neutralized, another still live
FAMILY_BACK = "family_back"  # one came back while another was live

_CORE = ("type", "account", "fqdn", "at", "event_id", LEGACY_FIELD)  # legacy_id: the id itself


@dataclass(frozen=True)
class Event:
    id: str  # ``<shard>/<entry id>`` (hbdns.event_streams): unique, the base of every idempotency key
    type: str
    account: int
    fqdn: str
    at_ms: int  # when it happened (for ``neutralized`` by missed beats: the deadline)
    data: Mapping[str, str] = field(default_factory=dict)  # the type's extra fields

    def get(self, name: str, default: str = "") -> str:
        return self.data.get(name, default)

    @property
    def families(self) -> str:
        """The address families the event is about, for texts: "IPv4", "IPv6", "IPv4 and IPv6"."""
        fam = self.get("family")
        return " and ".join(f"IPv{f}" for f in fam.split(",")) if fam else ""

    @property
    def first(self) -> bool:
        """A ``recovered`` that is the account's first beat ever, or a ``family_back`` of a family
        heard for the first time: "online", not "back"."""
        return self.type in (RECOVERED, FAMILY_BACK) and self.get("first") == "1"

    @classmethod
    def from_fields(cls, entry_id: str, fields: Mapping[str, Any]) -> Event:
        f = {str(k): str(v) for k, v in fields.items()}
        return cls(
            id=entry_id,
            type=f.get("type", ""),
            account=int(f.get("account", "0") or 0),
            fqdn=f.get("fqdn", ""),
            at_ms=int(float(f.get("at", "0") or 0)),
            data={k: v for k, v in f.items() if k not in _CORE},
        )

    def to_json(self) -> str:
        """Deterministic JSON (sorted keys): the same event always gives the same zset member."""
        body = {"event_id": self.id, "type": self.type, "account": self.account, "fqdn": self.fqdn, "at": self.at_ms}
        body.update(self.data)
        return json.dumps(body, sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, raw: str) -> Event:
        d = json.loads(raw)
        return cls.from_fields(str(d.get("event_id", "")), d)
