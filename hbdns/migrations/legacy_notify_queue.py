"""Retries of the notifier before issue 14 into the notification queue.

Before: ``hbdns:notify:retry``, a ZSET of JSON members ``{"attempt": <next attempt>, "message": {...}}``
scored by due time. After: one job per message in ``hbdns:{notify}:queue``/``jobs``/``since``
(:mod:`hbdns.notify_queue`), keyed by the message's idempotency key, with the attempts made so far,
the time it first failed (the event's time: the old member did not keep it) and the outage it
belongs to (``outage_ms``, from its event, or from an old SMS's outage mark) so it merges as a new
one would. An offline SMS also marks its outage thread ``queued``, so its recovery SMS is merged
rather than skipped. Each member: the job is written (unless there already), then the member
removed, in one MULTI/EXEC.
"""

from __future__ import annotations

import json
from typing import Any

import redis

from hbdns import keys
from hbdns import keys_unsharded as old
from hbdns.notify_queue import Job, message_key, thread

SUMMARY = "notifier retries (hbdns:notify:retry) into the queue (hbdns:{notify}:queue)"
CHUNK = 500


def _event(r: redis.Redis, event_id: str) -> dict[str, str]:
    if not event_id:
        return {}
    entries = r.xrange(old.events(), min=event_id, max=event_id)
    return {str(k): str(v) for k, v in entries[0][1].items()} if entries and entries[0][1] else {}


def outage_ms(r: redis.Redis, message: dict[str, Any]) -> int:
    """The start of the outage an old offline/recovery message is about; 0 when unknown."""
    kind = message.get("event_type")
    if kind not in ("neutralized", "recovered"):
        return 0
    event = _event(r, str(message.get("event_id", "")))
    if kind == "neutralized" and event.get("at"):
        return int(event["at"])
    if kind == "recovered" and event.get("first") != "1" and event.get("neutral_since"):
        return int(event["neutral_since"])
    for _key, _field, value in message.get("marks") or ():  # an old outage SMS: the outage it marks
        if kind == "neutralized" and str(value).isdigit():
            return int(value)
    return 0


def convert(r: redis.Redis, member: str) -> tuple[Job, int] | None:
    """The job for one old member, and the outage it opens (0: none); None if unreadable."""
    try:
        old = json.loads(member)
        message = dict(old["message"])
        attempt = int(old.get("attempt", 1))
        key = message_key(str(message["event_id"]), str(message["channel"]), str(message["recipient"]))
    except (ValueError, KeyError, TypeError):
        return None
    outage = outage_ms(r, message)
    message["outage_ms"] = outage
    message["marks"] = []  # the old SMS outage marks: the outage thread replaces them
    first = int(str(message["event_id"]).partition("-")[0] or 0) / 1000
    job = Job(id=key, message=message, attempts=max(0, attempt - 1), first=first, error="queued by an older version")
    return job, outage if message.get("event_type") == "neutralized" else 0


def apply(r: redis.Redis, *, dry_run: bool = False) -> int:
    if not r.exists(keys.notify_retry()):
        return 0
    if dry_run:
        return int(r.zcard(keys.notify_retry()))
    moved = 0
    while True:
        members: list[tuple[str, float]] = r.zrange(keys.notify_retry(), 0, CHUNK - 1, withscores=True)  # type: ignore[assignment]
        if not members:
            return moved
        for member, due in members:
            converted = convert(r, member)
            pipe = r.pipeline(transaction=True)
            if converted is not None:
                job, opens = converted
                message = job.message or {}
                if opens and message.get("channel") == "sms":
                    _mark_queued(r, int(message["account"]), thread("sms", str(message["recipient"])), opens)
                pipe.hsetnx(keys.notify_jobs(), job.id, job.to_json())
                pipe.zadd(keys.notify_queue(), {job.id: due}, nx=True)
                pipe.zadd(keys.notify_queued_since(), {job.id: job.first}, nx=True)
            pipe.zrem(keys.notify_retry(), member)
            pipe.execute()
            moved += 1


def _mark_queued(r: redis.Redis, account_id: int, field: str, outage: int) -> None:
    """The outage thread says ``queued`` unless it knows this outage (or a later one) already. The
    thread is the account's in whichever schema holds it: before the step ``sharded`` moved the
    account, the unsharded one (which that step then moves); after it (the notifier runs this step
    every minute), the sharded one."""
    key = old.notify_outage(account_id) if r.exists(old.account(account_id)) else keys.notify_outage(account_id)
    current = r.hget(key, field)
    if current is None or int(str(current).split(" ")[0]) < outage:
        r.hset(key, field, f"{outage} queued")
