"""Mass outages: many heartbeat accounts silent at once is probably not their customers' doing.

When more than ``HBDNS_MASS_SHARE`` of the heartbeat accounts that were live in a scope (one zone,
or the whole system), and at least ``HBDNS_MASS_MIN_ACCOUNTS``, go silent within
``HBDNS_MASS_WINDOW`` seconds (our uplink, a carrier, the listener), DNS still neutralizes each
of them (mail safety first: reconnecting customers may get new addresses), but:

- the sweeper (``sweeper/mass_watch.py``), which sees them go silent *before* it records their
  transitions, records a :class:`MassEvent` for the scope and appends ``mass_started`` to the
  events stream, which the notifier sends to the operator (``HBDNS_OPERATOR_EMAILS``,
  ``HBDNS_OPERATOR_WEBHOOK``); the log and ``hbdns status`` show it too;
- the notifier (``notifier/mass_hold.py``) holds the outage messages of the event's accounts until
  the hold ends (``HBDNS_MASS_HOLD`` after the start), sends no recovery message for an outage that
  ended within the hold, and when the hold ends sends the usual offline message to those still
  down; the sweeper then tells the operator how many came back (``mass_hold_over``).

This module is the state both sides read: one JSON per scope in ``keys.mass_events``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import redis

from hbdns import keys

SYSTEM = "system"
STARTED, HOLD_OVER = "mass_started", "mass_hold_over"  # the operator's events in the stream
OPERATOR_EVENTS = frozenset({STARTED, HOLD_OVER})


def zone_scope(apex: str) -> str:
    return f"zone:{apex}"


@dataclass(frozen=True)
class MassEvent:
    scope: str
    started_ms: int  # when the sweeper found the share crossed
    window_start_ms: int  # outages from here on belong to it
    hold_until_ms: int  # customers' outage messages wait until then
    silent: int  # accounts silent within the window (the most seen)
    of: int  # live heartbeat accounts of the scope when the window began
    over: bool = False  # the hold ended and the operator was told
    recovered: int = -1  # at the hold's end: accounts back (their customers got no message)
    still_down: int = -1  # ... and accounts still down (their customers are told now)

    def covers(self, at_ms: int) -> bool:
        """Whether an outage that began at ``at_ms`` is part of this event."""
        return self.window_start_ms <= at_ms < self.hold_until_ms

    def holding(self, now_ms: int) -> bool:
        return now_ms < self.hold_until_ms

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, raw: str | bytes) -> MassEvent:
        d: dict[str, Any] = json.loads(raw)
        return cls(
            scope=str(d["scope"]),
            started_ms=int(d["started_ms"]),
            window_start_ms=int(d["window_start_ms"]),
            hold_until_ms=int(d["hold_until_ms"]),
            silent=int(d["silent"]),
            of=int(d["of"]),
            over=bool(d.get("over", False)),
            recovered=int(d.get("recovered", -1)),
            still_down=int(d.get("still_down", -1)),
        )


def load(r: redis.Redis) -> dict[str, MassEvent]:
    """The latest mass event of each scope (unreadable entries are skipped)."""
    out = {}
    for scope, raw in r.hgetall(keys.mass_events()).items():
        try:
            out[str(scope)] = MassEvent.from_json(raw)
        except (ValueError, KeyError, TypeError):
            continue
    return out


def covering(events: Mapping[str, MassEvent], zone: str, at_ms: int) -> MassEvent | None:
    """The mass event (of the whole system or of ``zone``) an outage that began at ``at_ms`` belongs to."""
    for scope in (SYSTEM, zone_scope(zone)):
        ev = events.get(scope)
        if ev is not None and ev.covers(at_ms):
            return ev
    return None
