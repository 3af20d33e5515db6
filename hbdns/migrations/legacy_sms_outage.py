"""Which phone got which outage's SMS, from the notifier before issue 14, into the outage threads.

Before: ``hbdns:sms:outage:{a:<id>}``, HASH phone -> start (ms) of the outage whose SMS reached it;
the recovery SMS went only to those phones. After: ``hbdns:notify:outage:{a:<id>}`` field
``sms:<phone digest>`` = ``<start> sent`` (notifier/outage.py), from which the recovery goes plain.
A field that knows this outage or a later one already is left alone; the old hash stays for an older
notifier still running (it is small and no longer read).
"""

from __future__ import annotations

import redis

from hbdns import keys
from hbdns import keys_unsharded as old
from hbdns.notify_queue import thread

SUMMARY = "outage SMS marks (hbdns:sms:outage:*) into the outage threads (hbdns:notify:outage:*)"
CHUNK = 1000


def apply(r: redis.Redis, *, dry_run: bool = False) -> int:
    ids = sorted(int(x) for x in r.smembers(keys.accounts()))
    changed = 0
    for start in range(0, len(ids), CHUNK):
        chunk = ids[start : start + CHUNK]
        pipe = r.pipeline(transaction=False)
        for account_id in chunk:
            pipe.hgetall(old.sms_outage(account_id))
            pipe.hgetall(old.notify_outage(account_id))
        replies = pipe.execute()
        write = r.pipeline(transaction=False)
        for n, account_id in enumerate(chunk):
            marks, threads = replies[2 * n], replies[2 * n + 1]
            for phone, outage in marks.items():
                field = thread("sms", str(phone))
                current = threads.get(field)
                if current is not None and int(str(current).split(" ")[0]) >= int(outage):
                    continue
                changed += 1
                write.hset(old.notify_outage(account_id), field, f"{int(outage)} sent")
        if not dry_run:
            write.execute()
    return changed
