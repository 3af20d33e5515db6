"""``hbdns status``, and the live/neutral view of one account that ``account show`` prints too.

"live" is what DNS answers now (the account's ``alive`` keys, per address family); the recorded
state is what the sweeper last wrote, and lags by up to a sweep interval.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from admin.cli.notify import LETTER_COLUMNS, letter_rows, queue_summary
from admin.cli.output import duration, emit, table, ts
from hbdns import notify_queue, provision, validate
from hbdns.model import Account
from hbdns.store import Store


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
    queue, queue_text = queue_summary(store)
    text += "\n\n" + queue_text
    if dead:
        text += f"\n\nfailed notifications (newest first, {len(dead)} shown; hbdns notify retry ID):\n"
        text += table(letter_rows(dead), LETTER_COLUMNS)
    emit(args, {"accounts": data, "notifications": queue, "dead_letters": dead}, text)
    return 0


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    """The ``status`` command."""
    p = sub.add_parser("status", parents=[common], help="accounts with live/neutral state")
    p.add_argument("--zone")
    p.add_argument("--dead-letters", type=int, default=10, help="failed notifications to show")
    p.set_defaults(func=status)
