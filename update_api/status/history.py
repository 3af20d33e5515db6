"""An account's history from its event log: outages, IP changes, and availability per time slot.

Pure functions over the log entries (:meth:`hbdns.store.Store.account_log`, newest first) and a
clock, so the rules are tested directly. The log is capped (``HBDNS_ACCOUNT_LOG_SIZE``), so what
lies before its oldest entry is *unknown* and shown as such, never guessed as up or down; so is the
wait between an account's creation and its first beat (it was never in service). A ``recovered``
entry carries when its outage began (``neutral_since``), so that much before the oldest entry is
known too.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

LIVE, NEUTRAL, UNKNOWN = "live", "neutral", "unknown"
HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS


@dataclass(frozen=True)
class Outage:
    start_ms: int
    end_ms: int | None  # None: still neutral
    reason: str  # "missed" (beats stopped) or "offline" (the client said goodbye)

    def duration_ms(self, now_ms: int) -> int:
        return (self.end_ms if self.end_ms is not None else now_ms) - self.start_ms


@dataclass(frozen=True)
class IpChange:
    at_ms: int
    family: str  # "4" or "6"
    old: str
    new: str
    until_ms: int | None  # when the next change of this family came; None: still current


@dataclass(frozen=True)
class Interval:
    start_ms: int
    end_ms: int
    state: str  # live, neutral or unknown


@dataclass(frozen=True)
class Slot:
    start_ms: int
    end_ms: int
    live_ms: int
    neutral_ms: int

    @property
    def known_ms(self) -> int:
        return self.live_ms + self.neutral_ms

    @property
    def kind(self) -> str:
        """up (all known time live), down (none of it), partial, or unknown (nothing known)."""
        if not self.known_ms:
            return UNKNOWN
        if not self.neutral_ms:
            return "up"
        return "down" if not self.live_ms else "partial"


def _chrono(log: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return sorted(log, key=lambda e: int(e.get("at", 0)))


def outages(log: Iterable[Mapping[str, Any]]) -> list[Outage]:
    """Outages, newest first: each ``neutralized`` with the ``recovered`` that ended it."""
    out: list[Outage] = []
    open_start: Mapping[str, Any] | None = None
    for e in _chrono(log):
        kind = e.get("type")
        if kind == "neutralized":
            open_start = e
        elif kind == "recovered" and str(e.get("first", "0")) != "1":
            start = int(open_start["at"]) if open_start else int(e.get("neutral_since", 0) or 0)
            reason = str(open_start.get("reason", "missed")) if open_start else "missed"
            out.append(Outage(start_ms=start, end_ms=int(e["at"]), reason=reason))
            open_start = None
    if open_start is not None:
        out.append(Outage(start_ms=int(open_start["at"]), end_ms=None, reason=str(open_start.get("reason", "missed"))))
    return out[::-1]


def ip_changes(log: Iterable[Mapping[str, Any]]) -> list[IpChange]:
    """Address changes, newest first, each with how long the new address was held."""
    changes = [e for e in _chrono(log) if e.get("type") == "ip_changed"]
    out: list[IpChange] = []
    for i, e in enumerate(changes):
        family = str(e.get("family", ""))
        nxt = next((int(n["at"]) for n in changes[i + 1 :] if str(n.get("family", "")) == family), None)
        out.append(IpChange(int(e["at"]), family, str(e.get("old", "")), str(e.get("new", "")), nxt))
    return out[::-1]


def timeline(log: Iterable[Mapping[str, Any]], now_ms: int, *, live_now: bool, deadline_ms: int = 0) -> list[Interval]:
    """Live/neutral/unknown intervals from the oldest knowledge to ``now_ms``. ``live_now`` is what
    DNS answers now: a live state whose beats stopped before a sweeper recorded it turns neutral at
    ``deadline_ms`` (its last beat plus the plan's expiry)."""
    events = [e for e in _chrono(log) if e.get("type") in ("created", "recovered", "neutralized")]
    out: list[Interval] = []
    state, since = UNKNOWN, 0
    if events and events[0].get("type") == "recovered" and str(events[0].get("first", "0")) != "1":
        state, since = NEUTRAL, int(events[0].get("neutral_since", 0) or 0)
    for e in events:
        at = int(e["at"])
        new = {"created": UNKNOWN, "recovered": LIVE, "neutralized": NEUTRAL}[str(e["type"])]
        if since and at > since:
            out.append(Interval(since, at, state))
        state, since = new, at
    if since and now_ms > since:
        if state == LIVE and not live_now:
            cut = min(max(deadline_ms, since), now_ms)
            out += [Interval(since, cut, LIVE)] if cut > since else []
            since, state = cut, NEUTRAL
        if now_ms > since:
            out.append(Interval(since, now_ms, state))
    return out


def slots(intervals: Sequence[Interval], now_ms: int, days: int, slot_ms: int) -> list[Slot]:
    """The last ``days`` cut into slots of ``slot_ms``, oldest first, with their live/neutral time."""
    start = now_ms - days * DAY_MS
    out = []
    for t in range(start, now_ms, slot_ms):
        end = min(t + slot_ms, now_ms)
        live = neutral = 0
        for iv in intervals:
            overlap = min(end, iv.end_ms) - max(t, iv.start_ms)
            if overlap > 0 and iv.state == LIVE:
                live += overlap
            elif overlap > 0 and iv.state == NEUTRAL:
                neutral += overlap
        out.append(Slot(t, end, live, neutral))
    return out


def availability(slot_list: Sequence[Slot]) -> float | None:
    """Share of the known time that was live (0..1); None when nothing is known."""
    known = sum(s.known_ms for s in slot_list)
    return sum(s.live_ms for s in slot_list) / known if known else None
