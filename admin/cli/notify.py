"""``hbdns notify``: the notification queue and the dead letters (list, retry); ``preview`` and
``test`` (what a customer would be sent, and a real test message) are :mod:`admin.cli.preview`'s.

``notify queue`` shows what waits for another attempt and the receivers held after failures;
``notify dead-letters`` the messages that failed for good; ``notify retry ID... | --all`` puts dead
letters back in the queue, due at once (an unknown id refuses the whole command and moves nothing).
A message whose outage ended meanwhile is not sent as "offline" after all: the notifier drops it as
moot (the recovery then goes out merged).
"""

from __future__ import annotations

import argparse
import time
from dataclasses import asdict
from typing import Any

from admin.cli import preview
from admin.cli.output import Refused, duration, emit, table, ts
from hbdns import notify_queue
from hbdns.store import Store


def queue_summary(store: Store) -> tuple[dict[str, Any], str]:
    """The queue's figures as JSON and as the lines ``hbdns status`` prints."""
    st = notify_queue.stats(store.r)
    data = {
        "queued": st.queued,
        "oldest_s": round(st.oldest_s, 1),
        "next_due_s": round(st.next_due_s, 1),
        "in_flight": st.in_flight,
        "dead_letters": st.dead,
        "dead_letters_dropped": st.dead_dropped,
        "held": st.holds,
        "legacy_entries": st.legacy,
    }
    text = f"notification queue: {st.queued} waiting"
    if st.queued:
        text += f", oldest {duration(int(st.oldest_s * 1000))}"
    text += f", {st.in_flight} in flight; {st.dead} dead letters"
    if st.dead_dropped:
        text += f" ({st.dead_dropped} older ones dropped at the cap)"
    for dest, hold in sorted(st.holds.items()):
        since = float(hold.get("since", 0)) / 1000
        text += f"\nheld: {dest} failing since {ts(since)}: {str(hold.get('reason', ''))[:80]}"
    if st.legacy:
        text += f"\n{st.legacy} entries in the layout of an older version: run 'hbdns migrate'"
    return data, text


def notify_queue_cmd(store: Store, args: argparse.Namespace) -> int:
    summary, text = queue_summary(store)
    now = time.time()
    jobs = notify_queue.queued_jobs(store.r, args.limit)
    rows = [
        {
            "id": job.id,
            "due": "now" if due <= now else "in " + duration(int((due - now) * 1000)),
            "attempts": job.attempts,
            "age": duration(int((now - job.first) * 1000)) if job.first else "-",
            "error": job.error[:60],
        }
        for job, due in jobs
    ]
    data = {**summary, "jobs": [{**asdict(job), "due": due} for job, due in jobs]}
    emit(args, data, text + "\n\n" + table(rows, ["id", "due", "attempts", "age", "error"]))
    return 0


def letter_rows(letters: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            "id": d.get("id", ""),
            "time": ts(float(d.get("time", 0))),
            "channel": d.get("channel", ""),
            "recipient": d.get("recipient", ""),
            "account": d.get("fqdn", d.get("account", "")),
            "event": d.get("event_type", ""),
            "reason": str(d.get("reason", ""))[:60],
        }
        for d in letters
    ]


LETTER_COLUMNS = ["id", "time", "channel", "recipient", "account", "event", "reason"]


def dead_letters_cmd(store: Store, args: argparse.Namespace) -> int:
    letters = notify_queue.dead_letters(store.r, args.limit)
    emit(args, letters, table(letter_rows(letters), LETTER_COLUMNS))
    return 0


def retry_cmd(store: Store, args: argparse.Namespace) -> int:
    if args.all == bool(args.ids):
        raise Refused("give dead-letter ids or --all")
    try:
        moved = notify_queue.retry_dead(store.r, None if args.all else args.ids)
    except KeyError as exc:
        raise Refused(f"no dead letter {exc.args[0]!r} (see hbdns notify dead-letters)") from None
    emit(args, {"requeued": moved}, f"{len(moved)} dead letters queued again")
    return 0


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    """The ``notify`` subcommands."""
    notify = sub.add_parser("notify", help="notification queue, dead letters, previews and tests").add_subparsers(
        dest="cmd", required=True
    )
    p = notify.add_parser("queue", parents=[common], help="messages waiting for another attempt")
    p.add_argument("--limit", type=int, default=20)
    p.set_defaults(func=notify_queue_cmd)
    p = notify.add_parser("dead-letters", parents=[common], help="messages that failed for good")
    p.add_argument("--limit", type=int, default=50)
    p.set_defaults(func=dead_letters_cmd)
    p = notify.add_parser("retry", parents=[common], help="queue dead letters again")
    p.add_argument("ids", nargs="*", metavar="ID")
    p.add_argument("--all", action="store_true", help="every dead letter")
    p.set_defaults(func=retry_cmd)
    preview.register(notify, common)
