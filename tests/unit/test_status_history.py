"""The status page's history (update_api/status/history.py), strips and badge (svg.py) and its two
languages (i18n.py): pure functions over event-log entries and a clock."""

from __future__ import annotations

import re
from pathlib import Path

from update_api.status import history, i18n, pages, svg, views
from update_api.status.history import DAY_MS, HOUR_MS, Interval, Outage

T0 = 1_800_000_000_000  # a fixed "now"-ish origin, ms


def ev(kind: str, at: int, **extra: object) -> dict[str, object]:
    return {"type": kind, "at": at, "account": 1, "fqdn": "h.example.net", "event_id": f"{at}-0", **extra}


def log_of(*events: dict[str, object]) -> list[dict[str, object]]:
    return sorted(events, key=lambda e: -int(e["at"]))  # the store's order: newest first


LOG = log_of(
    ev("created", T0),
    ev("recovered", T0 + 60_000, first="1", neutral_since=T0, duration_ms=60_000),
    ev("ip_changed", T0 + 60_000, family="4", old="", new="203.0.113.1"),
    ev("neutralized", T0 + HOUR_MS, reason="missed"),
    ev("recovered", T0 + HOUR_MS + 300_000, first="0", neutral_since=T0 + HOUR_MS, duration_ms=300_000),
    ev("ip_changed", T0 + HOUR_MS + 300_000, family="4", old="203.0.113.1", new="203.0.113.2"),
    ev("neutralized", T0 + 2 * HOUR_MS, reason="offline"),
)


def test_outages_pair_neutralized_with_recovered_and_skip_the_first_beat() -> None:
    now = T0 + 3 * HOUR_MS
    assert history.outages(LOG) == [
        Outage(T0 + 2 * HOUR_MS, None, "offline"),
        Outage(T0 + HOUR_MS, T0 + HOUR_MS + 300_000, "missed"),
    ]
    assert history.outages(LOG)[0].duration_ms(now) == HOUR_MS


def test_ip_changes_with_how_long_each_address_was_held() -> None:
    changes = history.ip_changes(LOG)
    assert [(c.old, c.new, c.until_ms) for c in changes] == [
        ("203.0.113.1", "203.0.113.2", None),
        ("", "203.0.113.1", T0 + HOUR_MS + 300_000),
    ]


def test_timeline_knows_only_what_the_log_says() -> None:
    now = T0 + 3 * HOUR_MS
    line = history.timeline(LOG, now, live_now=False)
    assert line == [
        Interval(T0, T0 + 60_000, "unknown"),  # created, waiting for the first beat
        Interval(T0 + 60_000, T0 + HOUR_MS, "live"),
        Interval(T0 + HOUR_MS, T0 + HOUR_MS + 300_000, "neutral"),
        Interval(T0 + HOUR_MS + 300_000, T0 + 2 * HOUR_MS, "live"),
        Interval(T0 + 2 * HOUR_MS, now, "neutral"),
    ]
    # a capped log starting at a recovery knows the outage before it, and nothing earlier
    capped = log_of(ev("recovered", T0 + HOUR_MS, first="0", neutral_since=T0 + 10 * 60_000))
    assert history.timeline(capped, T0 + 2 * HOUR_MS, live_now=True) == [
        Interval(T0 + 10 * 60_000, T0 + HOUR_MS, "neutral"),
        Interval(T0 + HOUR_MS, T0 + 2 * HOUR_MS, "live"),
    ]


def test_an_expiry_no_sweeper_recorded_turns_neutral_at_its_deadline() -> None:
    log = log_of(ev("recovered", T0, first="1", neutral_since=T0))
    line = history.timeline(log, T0 + HOUR_MS, live_now=False, deadline_ms=T0 + 600_000)
    assert line == [Interval(T0, T0 + 600_000, "live"), Interval(T0 + 600_000, T0 + HOUR_MS, "neutral")]


def test_slots_and_availability() -> None:
    now = T0 + 3 * HOUR_MS
    cells = history.slots(history.timeline(LOG, now, live_now=False), now, 1, HOUR_MS)
    assert len(cells) == 24 and all(c.kind == "unknown" for c in cells[:21])
    assert [c.kind for c in cells[21:]] == ["up", "partial", "down"]
    assert cells[22].live_ms == HOUR_MS - 300_000 and cells[22].neutral_ms == 300_000
    # over the known time only: 59 + 55 live minutes of 59 + 55 + 5 + 60
    assert abs(history.availability(cells) - (114 / 179)) < 1e-9
    assert history.availability(cells[:3]) is None


def test_strip_svg_has_a_bar_and_tooltip_per_slot_and_escapes_text() -> None:
    now = T0 + 3 * HOUR_MS
    cells = history.slots(history.timeline(LOG, now, live_now=False), now, 1, HOUR_MS)
    out = svg.strip(cells, "7 days <b>", lambda s: f"slot {s.start_ms} & co")
    assert out.count("<rect") == 24 and out.count("<title>") == 24
    assert "&lt;b&gt;" in out and "& co" not in out and "&amp; co" in out
    assert 'class="slot-partial"' in out and "<script" not in out


def test_badge_is_self_contained_svg() -> None:
    out = svg.badge("home.dyn.example.net", "live", "#2e9d4e")
    assert out.startswith("<svg") and "home.dyn.example.net" in out and "live" in out
    assert "href" not in out and "<script" not in out
    w = int(re.search(r'width="(\d+)"', out).group(1))  # type: ignore[union-attr]
    assert 150 < w < 260


def test_durations_and_times_in_both_languages() -> None:
    assert i18n.duration(45_000, "en") == "45 s"
    assert i18n.duration(303_000, "en") == "5 min 3 s"
    assert i18n.duration(2 * HOUR_MS + 300_000, "de") == "2 Std. 5 Min."
    assert i18n.duration(3 * DAY_MS, "en") == "3 d"
    assert i18n.when(T0, "Europe/Berlin", "de") == "15.01.2027 09:00:00 CET"
    assert i18n.when(T0, "UTC", "en") == "2027-01-15 08:00:00 UTC"
    assert i18n.percent(0.98765, "de") == "98,77 %" and i18n.percent(1.0, "en") == "100 %"


class _Accept:
    def __init__(self, best: str | None) -> None:
        self.best = best

    def best_match(self, langs: tuple[str, ...], default: str | None = None) -> str | None:
        return self.best if self.best in langs else default


def test_language_from_accept_language() -> None:
    assert i18n.choose(_Accept("de")) == "de" and i18n.choose(_Accept(None)) == "en"


def _source_strings() -> set[str]:
    """Every string the templates and the views pass through the translator."""
    here = Path(views.__file__).parent
    found: set[str] = set()
    for path in (here / "templates").glob("*.html"):
        found |= set(re.findall(r'_\("([^"]+)"\)', path.read_text()))
        found |= set(re.findall(r"_\('([^']+)'\)", path.read_text()))
    found |= {t for _, t in pages.LEVELS} | {t for _, t in pages.CHANNELS} | {label for label, _, _ in pages.STRIPS}
    found |= set(views.NOTICES.values()) | set(views.FIELD_MESSAGES.values())
    for module in (pages, views):
        text = Path(module.__file__).read_text()
        found |= set(re.findall(r'_\(\s*"([^"]+)"\s*\)', text))
        found |= {m[1] for m in re.findall(r'message\(\s*"([^"]+)",\s*"([^"]+)"', text)}
        found |= {m[0] for m in re.findall(r'message\(\s*"([^"]+)",\s*"([^"]+)"', text)}
        found |= set(re.findall(r'_login_page\(\s*\d+,\s*"([^"]+)"', text))
        found |= set(re.findall(r'_refused\(\s*result,\s*"([^"]+)"', text))
    return found


def test_every_string_has_its_german() -> None:
    strings = _source_strings()
    assert len(strings) > 60
    assert sorted(s for s in strings if s not in i18n.DE) == []
