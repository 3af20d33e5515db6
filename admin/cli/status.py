"""``hbdns status``, and the live/neutral view of one account that ``account show`` prints too.

"live" is what DNS answers now (the account's ``alive`` keys, per address family); the recorded
state is what the sweeper last wrote, and lags by up to a sweep interval. The ingest line says
whether the listeners can store beats (their mark in every shard's ``keys.ingest(s)``, on Redis' clock) and when
the last ingest outage was: deadlines that fell in one are held back (docs/scaling.md).
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict
from typing import Any

from admin.cli.notify import LETTER_COLUMNS, letter_rows, queue_summary
from admin.cli.output import duration, emit, table, ts
from hbdns import keys, mass, notify_queue, provision, validate
from hbdns.event_trim import stream_status
from hbdns.model import Account
from hbdns.store import Store

RECENT_MS = 86_400_000  # a mass outage whose hold ended within this long is still shown


def account_text(store: Store, account: Account) -> str:
    st = store.status(account)
    d = account.public_dict()
    lines = [f"{k}: {v}" for k, v in d.items() if k not in ("created", "updated")]
    lines += [
        f"created: {ts(account.created)}",
        f"state: {'live' if st.live else 'neutral'}"
        f" (recorded: {st.state.state} since {ts(st.state.since_ms, ms=True)})",
        f"ipv4: {st.state.ipv4 or '-'} ({'live' if st.alive4_ms else 'neutral'})",
        f"ipv6: {st.state.ipv6 or '-'} ({'live' if st.alive6_ms else 'neutral'})",
        f"last beat: {ts(st.state.last_beat_ms, ms=True)}",
    ]
    return "\n".join(lines)


def status_dict(store: Store, account: Account) -> dict[str, Any]:
    return provision.status_dict(store.status(account))


def _ingest_marks(store: Store) -> tuple[str | None, str | None, str | None]:
    """mark, gap_ms and gaps of the shard whose copy of the ingest hash (keys.ingest) is oldest:
    the listeners mark every shard's, and a shard whose copy lags holds its deadlines."""
    pipe = store.r.pipeline(transaction=False)
    for shard in keys.all_shards():
        pipe.hmget(keys.ingest(shard), "mark", "gap_ms", "gaps")
    rows = [row for row in pipe.execute() if row[0] is not None]
    if not rows:
        return None, None, None
    mark, gap, gaps = min(rows, key=lambda row: int(row[0]))
    return mark, gap, gaps


def ingest_summary(store: Store) -> tuple[dict[str, Any], str]:
    """The listeners' ingest health as JSON and as the line ``hbdns status`` prints."""
    mark, gap, gaps = _ingest_marks(store)
    if mark is None:
        return {"tracked": False}, "ingest: not tracked (no heartbeat listener has marked it)"
    sec, usec = store.r.time()
    age = int(sec) * 1000 + int(usec) // 1000 - int(mark)
    down = age > int(gap or 2000)
    outages = json.loads(gaps or "[]")
    data = {"tracked": True, "down": down, "last_mark_s": round(age / 1000, 1), "outages": outages}
    text = f"ingest: {'DOWN' if down else 'healthy'}, last listener mark {duration(age)} ago"
    if down:
        text += ": deadlines falling now are held until the listeners are back for a whole window"
    if outages:
        start, end = outages[-1]
        text += f"; last outage {ts(start, ms=True)} for {duration(end - start)}"
    return data, text


def status(store: Store, args: argparse.Namespace) -> int:
    accounts = store.list_accounts(validate.hostname(args.zone) if args.zone else None)
    now_ms = int(time.time() * 1000)
    data = [status_dict(store, a) for a in accounts]
    rows = [
        {
            "fqdn": d["fqdn"],
            "plan": d["plan"],
            "state": d["state"],
            "since": duration(now_ms - d["since_ms"]) if d["since_ms"] else "-",
            "last_beat": ts(d["last_beat_ms"], ms=True),
            "ipv4": d["ipv4"] or "-",
            "ipv6": d["ipv6"] or "-",
        }
        for d in data
    ]
    dead = notify_queue.dead_letters(store.r, args.dead_letters)
    text = table(rows, ["fqdn", "plan", "state", "since", "last_beat", "ipv4", "ipv6"])
    live = sum(1 for d in data if d["live"])
    text += f"\n\n{live} live, {len(data) - live} neutral"
    ingest, ingest_text = ingest_summary(store)
    queue, queue_text = queue_summary(store)
    text += "\n\n" + ingest_text + "\n" + queue_text
    stream, stream_text = stream_summary(store)
    text += "\n" + stream_text
    masses, mass_text = mass_summary(store)
    text = (mass_text + "\n\n" + text) if mass_text else text
    if dead:
        text += f"\n\nfailed notifications (newest first, {len(dead)} shown; hbdns notify retry ID):\n"
        text += table(letter_rows(dead), LETTER_COLUMNS)
    emit(
        args,
        {
            "accounts": data,
            "ingest": ingest,
            "notifications": queue,
            "events": stream,
            "mass_outages": masses,
            "dead_letters": dead,
        },
        text,
    )
    return 0


def mass_summary(store: Store) -> tuple[list[dict[str, Any]], str]:
    """Mass outages: one in progress first (its customers' messages are held), then the last ones."""
    now_ms = int(time.time() * 1000)
    events = sorted(mass.load(store.r).values(), key=lambda e: -e.started_ms)
    held = int(store.r.zcard(keys.mass_held()))
    lines = []
    for e in events:
        if e.holding(now_ms):
            lines.append(
                f"MASS OUTAGE in {e.scope}: {e.silent} of {e.of} heartbeat accounts silent since "
                f"{ts(e.started_ms, ms=True)}; customers' outage messages held until {ts(e.hold_until_ms, ms=True)}"
                f" ({held} held)"
            )
        elif now_ms - e.hold_until_ms < RECENT_MS:
            back = f", {e.recovered} back, {e.still_down} still down" if e.over else ""
            lines.append(
                f"mass outage in {e.scope} at {ts(e.started_ms, ms=True)}: {e.silent} of {e.of} silent; "
                f"hold over at {ts(e.hold_until_ms, ms=True)}{back}"
            )
    data = [{**asdict(e), "holding": e.holding(now_ms)} for e in events]
    return data, "\n".join(lines)


def stream_summary(store: Store) -> tuple[dict[str, Any], str]:
    """The events stream: its length, each consumer group's lag, and the hard-cap alarm if it fired."""
    st = stream_status(store.r)
    parts = [f"{g['name']} lag {'?' if g['lag'] is None else g['lag']}, {g['pending']} pending" for g in st["groups"]]
    text = f"events stream: {st['length']} entries" + (f" ({'; '.join(parts)})" if parts else ", no consumer group")
    if st["capped"]:
        text += f"\nevents stream reached its hard cap: {st['capped']} entries removed"
        text += f", last at {ts(st['last_cap_ms'], ms=True)}"
    if st["unread"]:
        by = ", ".join(f"{g} {n}" for g, n in sorted(st["unread_by_group"].items()))
        text += f"\nALARM: {st['unread']} events removed before every consumer read them ({by})"
        text += f", last at {ts(st['last_unread_ms'], ms=True)}"
    return st, text


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    """The ``status`` command."""
    p = sub.add_parser("status", parents=[common], help="accounts with live/neutral state")
    p.add_argument("--zone")
    p.add_argument("--dead-letters", type=int, default=10, help="failed notifications to show")
    p.set_defaults(func=status)
