"""What the status page shows, as plain values for the templates and the state poll, in one language.

"Live" is what DNS answers now (the account's ``alive`` key, exact at expiry); "since" is the last
recorded transition, or for an expiry no sweeper recorded yet, the deadline (last beat plus the
plan's expiry). Times are shown in the account's own time zone (its notification preferences').
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from hbdns.model import Account, parse_quiet_hours
from hbdns.store import AccountStatus, Store
from update_api.status import history, i18n, svg

Gettext = Callable[[str], str]
NONE = "\u2013"  # an en dash for "no value"
STRIPS = (("Last 7 days", 7, history.HOUR_MS), ("Last 30 days", 30, 6 * history.HOUR_MS))
LEVELS = (("none", "nothing"), ("outages", "outages"), ("all", "outages and address changes"))
CHANNELS = (("email", "E-mail"), ("sms", "SMS"), ("webhook", "Webhook"))


def _deadline(store: Store, st: AccountStatus) -> int:
    plan = store.plans.get(st.account.plan)
    return st.state.last_beat_ms + (plan.expiry_ms if plan else 0) if st.state.last_beat_ms else 0


def state(store: Store, st: AccountStatus, now_ms: int, lang: str) -> dict[str, Any]:
    """The state card (and the JSON the page polls)."""
    _ = i18n.translator(lang)
    tz = st.account.prefs.tz
    since = st.state.since_ms
    if not st.live and st.state.state == "live":  # expired, not yet swept
        since = _deadline(store, st) or since
    plan = store.plans.get(st.account.plan)
    beat = st.state.last_beat_ms
    return {
        "live": st.live,
        "css": "live" if st.live else "neutral",
        "label": _("LIVE") if st.live else _("NEUTRAL"),
        "since": _("since {time} ({duration})").format(
            time=i18n.when(since, tz, lang), duration=i18n.duration(now_ms - since, lang)
        )
        if since
        else "",
        "since_ms": since,
        "ipv4": st.state.ipv4 or NONE,
        "ipv6": st.state.ipv6 or NONE,
        "last_beat": _("{time} ({duration} ago)").format(
            time=i18n.when(beat, tz, lang), duration=i18n.duration(now_ms - beat, lang)
        )
        if beat
        else _("not yet"),
        "last_beat_ms": beat,
        "plan": _("{plan}, every {interval}").format(
            plan=st.account.plan, interval=i18n.duration(int(plan.interval * 1000), lang)
        )
        if plan
        else st.account.plan,
        "explain": _("Live: your name answers with your current address.")
        if st.live
        else _(
            "Neutral: no heartbeat arrived in time, so your name answers a neutral address and mail waits at the "
            "backup MX."
        ),
    }


def strips(store: Store, st: AccountStatus, log: list[dict[str, Any]], now_ms: int, lang: str) -> list[dict[str, Any]]:
    """The availability strips (7 days by hour, 30 days by 6 hours) from the event log."""
    _ = i18n.translator(lang)
    tz = st.account.prefs.tz
    line = history.timeline(log, now_ms, live_now=st.live, deadline_ms=_deadline(store, st))
    out = []
    for label, days, slot_ms in STRIPS:
        cells = history.slots(line, now_ms, days, slot_ms)

        def describe(s: history.Slot) -> str:
            start = i18n.when(s.start_ms, tz, lang)
            if not s.known_ms:
                return _("{start}: no data").format(start=start)
            return _("{start}: {percent} live").format(start=start, percent=i18n.percent(s.live_ms / s.known_ms, lang))

        out.append(
            {
                "label": _(label),
                "percent": _("{percent} live").format(percent=i18n.percent(history.availability(cells), lang)),
                "svg": svg.strip(cells, _(label), describe),
                "start": i18n.when(now_ms - days * history.DAY_MS, tz, lang),
            }
        )
    return out


Log = list[dict[str, Any]]


def outages(account: Account, log: Log, now_ms: int, lang: str, limit: int = 20) -> list[dict[str, str]]:
    _ = i18n.translator(lang)
    tz = account.prefs.tz
    return [
        {
            "start": i18n.when(o.start_ms, tz, lang),
            "end": i18n.when(o.end_ms, tz, lang) if o.end_ms is not None else _("still neutral"),
            "duration": i18n.duration(o.duration_ms(now_ms), lang),
            "reason": _("client went offline") if o.reason == "offline" else _("beats stopped"),
        }
        for o in history.outages(log)[:limit]
    ]


def ip_changes(account: Account, log: Log, now_ms: int, lang: str, limit: int = 20) -> list[dict[str, str]]:
    _ = i18n.translator(lang)
    tz = account.prefs.tz
    return [
        {
            "at": i18n.when(c.at_ms, tz, lang),
            "old": c.old or NONE,
            "new": c.new,
            "held": i18n.duration((c.until_ms or now_ms) - c.at_ms, lang)
            + ("" if c.until_ms else f" ({_('current')})"),
        }
        for c in history.ip_changes(log)[:limit]
    ]


def quiet_text(account: Account, lang: str) -> str:
    _ = i18n.translator(lang)
    if not account.prefs.quiet_hours:
        return _("No quiet hours: SMS go out at any time.")
    return _("Quiet hours: {window} ({tz}).").format(window=account.prefs.quiet_hours, tz=account.prefs.tz)


def quiet_fields(account: Account) -> tuple[str, str]:
    """The quiet hours as the form's two ``HH:MM`` fields."""
    if not account.prefs.quiet_hours:
        return "", ""
    start, end = parse_quiet_hours(account.prefs.quiet_hours)
    return f"{start // 60:02d}:{start % 60:02d}", f"{end // 60:02d}:{end % 60:02d}"


def contacts(account: Account, lang: str) -> str:
    """E-mail addresses, phones and the webhook's host only (its URL may carry a secret)."""
    hook = [f"webhook {urlsplit(account.webhook).hostname}"] if account.webhook else []
    parts = [*account.emails, *account.phones, *hook]
    return ", ".join(parts) if parts else i18n.translator(lang)("no contacts")
