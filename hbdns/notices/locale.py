"""Times and durations as each language writes them, in the account's time zone.

A time is a :class:`When` so that a template picks the form it needs (``{{ at }}`` is the full local
time with the zone's abbreviation; ``at.date``, ``at.time``, ``at.hm``, ``at.zone`` and ``at.utc``
are its parts). German writes the date day first and names the Central European zones MEZ/MESZ;
durations keep the two largest units: "4 min 38 s" / "4 Min. 38 s", "2 h 5 min" / "2 Std. 5 Min.".
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from hbdns.model import LANGUAGES

__all__ = ["LANGUAGES", "When", "duration", "utc_iso", "zone"]

# German names of the zone abbreviations tzdata spells in English
_ZONE_NAMES = {"de": {"CET": "MEZ", "CEST": "MESZ", "WET": "WEZ", "WEST": "WESZ", "EET": "OEZ", "EEST": "OESZ"}}
_DATE = {"de": "%d.%m.%Y", "en": "%Y-%m-%d"}
_JOIN = {"de": ", ", "en": " "}  # between date and time
# (singular, plural) per unit: days, hours, minutes, seconds
_UNITS = {
    "en": (("d", "d"), ("h", "h"), ("min", "min"), ("s", "s")),
    "de": (("Tag", "Tage"), ("Std.", "Std."), ("Min.", "Min."), ("s", "s")),
}


def zone(tz: str) -> ZoneInfo:
    """The account's zone; an unknown name (validated on input, so only from old data) reads as UTC."""
    try:
        return ZoneInfo(tz or "UTC")
    except Exception:
        return ZoneInfo("UTC")


def duration(ms: int, lang: str) -> str:
    """'45 s', '4 min 38 s', '2 h 5 min', '1 d 3 h' (German: '4 Min. 38 s', '1 Tag 3 Std.'): the two
    largest units, the second left out when it is 0."""
    units = _UNITS.get(lang, _UNITS["en"])
    s = max(0, int(ms) // 1000)
    days, rest = divmod(s, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    values = (days, hours, minutes, seconds)
    first = next((i for i, v in enumerate(values) if v), 3)
    parts = [(values[first], units[first])]
    if first < 3 and values[first + 1]:
        parts.append((values[first + 1], units[first + 1]))
    return " ".join(f"{n} {one if n == 1 else many}" for n, (one, many) in parts)


@dataclass(frozen=True)
class When:
    """A point in time as an account reads it; ``str()`` is :attr:`text`."""

    ms: int
    tz: str
    lang: str

    @property
    def _local(self) -> datetime:
        return datetime.fromtimestamp(self.ms / 1000, UTC).astimezone(zone(self.tz))

    @property
    def zone(self) -> str:
        """The zone's abbreviation then ('CEST', German 'MESZ'; 'UTC')."""
        abbr = self._local.strftime("%Z")
        return _ZONE_NAMES.get(self.lang, {}).get(abbr, abbr)

    @property
    def date(self) -> str:
        return self._local.strftime(_DATE.get(self.lang, _DATE["en"]))

    @property
    def time(self) -> str:
        return self._local.strftime("%H:%M:%S")

    @property
    def hm(self) -> str:
        return self._local.strftime("%H:%M")

    @property
    def utc(self) -> str:
        """ISO 8601 in UTC: '2024-05-01T12:00:00Z'."""
        return utc_iso(self.ms)

    @property
    def text(self) -> str:
        """'2024-05-01 14:00:03 CEST' / '01.05.2024, 14:00:03 MESZ'."""
        return f"{self.date}{_JOIN.get(self.lang, ' ')}{self.time} {self.zone}"

    def __str__(self) -> str:
        return self.text


def utc_iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
