"""Dead letters of the notifier before issue 14 into the retryable dead letters.

Before: ``hbdns:deadletter``, a LIST (newest first, capped at 1000) of JSON summaries without the
message. After: ``hbdns:{notify}:dead`` (id -> letter) and its index by time, the id being the
message's idempotency key; the letter carries ``rebuild`` ({event_id, channel, recipient}) so that
``hbdns notify retry`` builds the message again from its event while that is still in the stream.
Each entry: the letter is written (unless there already), then the old entry removed.
"""

from __future__ import annotations

import json
from typing import cast

import redis

from hbdns import keys
from hbdns.notify_queue import Job, dead_letter, message_key

SUMMARY = "notifier dead letters (hbdns:deadletter) into retryable ones (hbdns:{notify}:dead)"


def apply(r: redis.Redis, *, dry_run: bool = False) -> int:
    if dry_run:
        return int(r.llen(keys.dead_letters()))
    moved = 0
    while True:
        raw = cast(str | None, r.lindex(keys.dead_letters(), -1))  # oldest first: the index keeps their order
        if raw is None:
            return moved
        pipe = r.pipeline(transaction=True)
        try:
            old = json.loads(raw)
            spec = {k: str(old[k]) for k in ("event_id", "channel", "recipient")}
        except (ValueError, KeyError, TypeError):
            spec = {}
        if spec:
            letter_id = message_key(spec["event_id"], spec["channel"], spec["recipient"])
            at = float(old.get("time") or 0)
            job = Job(id=letter_id, message=None, first=at, rebuild=spec)
            summary = {k: old.get(k, "") for k in ("channel", "recipient", "account", "fqdn", "event_type", "event_id")}
            pipe.hsetnx(keys.notify_dead(), letter_id, dead_letter(job, str(old.get("reason", "")), at, summary))
            pipe.zadd(keys.notify_dead_index(), {letter_id: at}, nx=True)
        pipe.lrem(keys.dead_letters(), -1, raw)
        pipe.execute()
        moved += 1
