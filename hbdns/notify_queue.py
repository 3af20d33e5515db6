"""The stored form of the notification queue and the dead letters, for every reader of it.

The notifier writes both (``notifier/queue.py`` holds the scripts that move a job atomically); the
admin CLI shows them and puts dead letters back, ``hbdns migrate`` converts the layout before it.
A service must not import another, so the format lives here in the core, and the message inside a
job stays a plain JSON object (``notifier.messages.Message`` as a dict) that only the notifier reads.

Keys (all with the hash tag ``{notify}``, see :mod:`hbdns.keys`): ``notify_queue`` (id -> due),
``notify_jobs`` (id -> job JSON), ``notify_queued_since`` (id -> first queued), ``notify_inflight``
(id -> owner), ``notify_holds``, ``notify_dead`` (id -> letter JSON) with ``notify_dead_index``.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import redis

from hbdns import keys

DEAD_LETTER_CAP = 10_000  # newest kept; the oldest beyond are dropped and counted (keys.notify_dead_dropped)


def thread(channel: str, recipient: str) -> str:
    """A recipient on its channel, as stored (the recipient hashed: URLs and addresses vary in length)."""
    return f"{channel}:{hashlib.sha256(recipient.encode()).hexdigest()[:16]}"


def message_key(event_id: str, channel: str, recipient: str) -> str:
    """A message's idempotency key: its sent marker, its job id and its dead-letter id."""
    return f"{event_id}:{thread(channel, recipient)}"


@dataclass(frozen=True)
class Job:
    """One message waiting for another attempt. ``id`` is the message's idempotency key."""

    id: str
    message: dict[str, Any] | None  # the notifier's Message as JSON; None only with ``rebuild``
    attempts: int = 0  # transport attempts made so far (a held message waits without one)
    first: float = 0.0  # when it first failed or was held (Unix s): the retry horizon counts from here
    error: str = ""  # the last failure
    requeued: bool = False  # put back from the dead letters: it may take over a "dead" sent marker
    rebuild: dict[str, str] = field(default_factory=dict)  # {event_id, channel, recipient}: build it anew

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, raw: str | bytes) -> Job:
        d = json.loads(raw)
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


def dead_letter(job: Job, reason: str, now: float, summary: dict[str, Any]) -> str:
    """A dead letter's JSON: the job (so it can be retried) plus what an operator reads first."""
    entry = {
        "id": job.id,
        "time": now,
        "reason": reason,
        "attempts": job.attempts,
        "first": job.first,
        "message": job.message,
        "rebuild": job.rebuild,
        **summary,  # channel, recipient, account, fqdn, event_type, event_id
    }
    return json.dumps(entry, sort_keys=True, separators=(",", ":"))


@dataclass(frozen=True)
class QueueStats:
    queued: int
    oldest_s: float  # age of the oldest queued job (0: none)
    next_due_s: float  # seconds until the next is due (negative: overdue; 0: none)
    in_flight: int
    dead: int
    dead_dropped: int
    holds: dict[str, dict[str, Any]]  # destination -> {since, until, reason, failures}
    legacy: int  # entries still in the layout before the queue (run ``hbdns migrate``)


def stats(r: redis.Redis, now: float | None = None) -> QueueStats:
    now = time.time() if now is None else now
    pipe = r.pipeline(transaction=False)
    pipe.zcard(keys.notify_queue())
    pipe.zrange(keys.notify_queued_since(), 0, 0, withscores=True)
    pipe.zrange(keys.notify_queue(), 0, 0, withscores=True)
    pipe.hlen(keys.notify_inflight())
    pipe.zcard(keys.notify_dead_index())
    pipe.get(keys.notify_dead_dropped())
    pipe.hgetall(keys.notify_holds())
    pipe.zcard(keys.notify_retry())
    pipe.llen(keys.dead_letters())
    queued, oldest, first_due, inflight, dead, dropped, holds, legacy_retry, legacy_dead = pipe.execute()
    return QueueStats(
        queued=int(queued),
        oldest_s=max(0.0, now - float(oldest[0][1])) if oldest else 0.0,
        next_due_s=float(first_due[0][1]) - now if first_due else 0.0,
        in_flight=int(inflight),
        dead=int(dead),
        dead_dropped=int(dropped or 0),
        holds={str(k): json.loads(v) for k, v in holds.items()},
        legacy=int(legacy_retry) + int(legacy_dead),
    )


def queued_jobs(r: redis.Redis, limit: int = 50) -> list[tuple[Job, float]]:
    """The next ``limit`` jobs by due time, with their due times."""
    due: list[tuple[str, float]] = list(r.zrange(keys.notify_queue(), 0, limit - 1, withscores=True))  # type: ignore[arg-type]
    if not due:
        return []
    raw = r.hmget(keys.notify_jobs(), [m for m, _ in due])
    return [(Job.from_json(j), float(s)) for (_, s), j in zip(due, raw, strict=True) if j]


def dead_letters(r: redis.Redis, limit: int = 20) -> list[dict[str, Any]]:
    """Dead letters, newest first."""
    ids: list[str] = list(map(str, r.zrevrange(keys.notify_dead_index(), 0, limit - 1)))
    if not ids:
        return []
    return [json.loads(x) for x in r.hmget(keys.notify_dead(), ids) if x]


def retry_dead(r: redis.Redis, ids: list[str] | None, now: float | None = None) -> list[str]:
    """Put dead letters back in the queue, due at once (``ids`` None: all); returns the ids moved.

    Raises KeyError naming the first unknown id before anything is moved. One MULTI/EXEC per letter
    (all keys in one slot): a letter is either still dead or queued, never lost, and a second retry
    of the same id finds nothing (or writes the same job again).
    """
    now = time.time() if now is None else now
    wanted = list(map(str, r.zrange(keys.notify_dead_index(), 0, -1))) if ids is None else list(dict.fromkeys(ids))
    raw = r.hmget(keys.notify_dead(), wanted) if wanted else []
    for letter_id, letter in zip(wanted, raw, strict=True):
        if letter is None and ids is not None:
            raise KeyError(letter_id)
    moved = []
    for letter_id, letter in zip(wanted, raw, strict=True):
        if letter is None:
            continue
        d = json.loads(letter)
        job = Job(id=letter_id, message=d.get("message"), first=now, requeued=True, rebuild=d.get("rebuild") or {})
        pipe = r.pipeline(transaction=True)
        pipe.hset(keys.notify_jobs(), letter_id, job.to_json())
        pipe.zadd(keys.notify_queue(), {letter_id: now})
        pipe.zadd(keys.notify_queued_since(), {letter_id: now})
        pipe.hdel(keys.notify_dead(), letter_id)
        pipe.zrem(keys.notify_dead_index(), letter_id)
        pipe.execute()
        moved.append(letter_id)
    return moved


def delivery(r: redis.Redis, message_keys: list[str]) -> dict[str, tuple[str, str]]:
    """Where each message (by idempotency key) is: ``sent``, ``dead`` (with the reason), ``moot``,
    ``sending``, ``queued`` (with the last error, e.g. a hold or quiet hours) or ``waiting`` (no
    notifier has taken it yet); one round trip. ``hbdns notify test`` follows its messages with it."""
    pipe = r.pipeline(transaction=False)
    for key in message_keys:
        pipe.get(keys.sent(key))
        pipe.hget(keys.notify_jobs(), key)
        pipe.hget(keys.notify_dead(), key)
    replies = pipe.execute()
    out: dict[str, tuple[str, str]] = {}
    for i, key in enumerate(message_keys):
        marker, job, letter = replies[3 * i : 3 * i + 3]
        if marker == "sent":
            out[key] = ("sent", "")
        elif marker == "dead" or (letter and not job):
            out[key] = ("dead", str(json.loads(letter).get("reason", "")) if letter else "")
        elif marker == "moot":
            out[key] = ("moot", "")
        elif job:
            out[key] = ("queued", Job.from_json(job).error)
        elif marker:
            out[key] = ("sending", "")
        else:
            out[key] = ("waiting", "")
    return out
