"""The per-shard event streams as their readers see them: event ids, finding an event, group totals.

Transitions go to their account's shard's stream (:func:`hbdns.keys.events`), mass-outage events to
shard :data:`hbdns.keys.MASS_SHARD`'s. Stream entry ids are unique within one stream only, so an
event's id (the base of every notification's idempotency key: sent markers, queue jobs, dead
letters) is ``<shard>/<entry id>`` (:func:`event_id`). An entry that ``hbdns migrate`` copied from
the stream before sharding carries its old id in the field :data:`LEGACY_FIELD`, and that stays its
id, so markers and jobs written before the migration keep matching. Readers: the notifier's
consumers (notifier/streams.py), the admin CLI, metrics and tests.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import redis

from hbdns import keys

LEGACY_FIELD = "legacy_id"
LEGACY_SCAN = 10_000  # entries per shard searched for a legacy id not found at its own entry id


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def event_id(shard: int, entry_id: Any, fields: Mapping[Any, Any] | None = None) -> str:
    """The id of the event in ``shard``'s stream at ``entry_id`` with ``fields``."""
    if fields:
        legacy = fields.get(LEGACY_FIELD, fields.get(LEGACY_FIELD.encode()))
        if legacy:
            return _text(legacy)
    keys.shard_tag(shard)  # ValueError for a shard that does not exist
    return f"{shard}/{_text(entry_id)}"


def parse(eid: str) -> tuple[int | None, str]:
    """(shard, entry id) of an event id; shard None for an id from before sharding (``<ms>-<seq>``).
    ValueError for anything else."""
    head, sep, entry = eid.partition("/")
    if not sep:
        head, entry = "", eid
    ms, dash, seq = entry.partition("-")
    if not (ms.isdigit() and dash and seq.isdigit()) or (sep and not (head.isdigit() and int(head) < keys.SHARDS)):
        raise ValueError(f"not an event id: {eid!r}")
    return (int(head) if sep else None), entry


def event_ms(eid: str) -> int | None:
    """When the event was recorded (Unix ms: its entry id's time), None for an unreadable id."""
    try:
        return int(parse(eid)[1].partition("-")[0])
    except ValueError:
        return None


def find(r: redis.Redis, eid: str) -> dict[str, str] | None:
    """The fields of the event ``eid`` while its stream still holds it, else None (one read for a
    sharded id; a legacy id is looked for at its entry id in every shard, then among the first
    :data:`LEGACY_SCAN` entries of each: copied entries may have been given new entry ids)."""
    try:
        shard, entry = parse(eid)
    except ValueError:
        return None
    if shard is not None:
        got = r.xrange(keys.events(shard), min=entry, max=entry)
        fields = _fields(got)
        return fields if fields and not fields.get(LEGACY_FIELD) else None
    pipe = r.pipeline(transaction=False)
    for s in keys.all_shards():
        pipe.xrange(keys.events(s), min=entry, max=entry)
    for got in pipe.execute():
        fields = _fields(got)
        if fields and fields.get(LEGACY_FIELD) == eid:
            return fields
    for s in keys.all_shards():
        for _entry_id, raw in r.xrange(keys.events(s), count=LEGACY_SCAN) or []:
            fields = {_text(k): _text(v) for k, v in (raw or {}).items()}
            if fields.get(LEGACY_FIELD) == eid:
                return fields
    return None


def _fields(got: Any) -> dict[str, str] | None:
    if not got or not got[0][1]:
        return None
    return {_text(k): _text(v) for k, v in got[0][1].items()}


@dataclass(frozen=True)
class GroupTotals:
    """One consumer group over every shard's stream: ``found`` when some shard has it; ``lag`` None
    when Redis cannot tell for some shard (entries deleted from its stream)."""

    found: bool
    pending: int
    lag: int | None
    shards: int  # how many shard streams have the group


def group_totals(r: redis.Redis, group: str, shards: Iterable[int] | None = None) -> GroupTotals:
    """``group``'s pending and lag summed over the shard streams (one pipelined read)."""
    shard_list = list(keys.all_shards() if shards is None else shards)
    pipe = r.pipeline(transaction=False)
    for s in shard_list:
        pipe.xinfo_groups(keys.events(s))
    pending, lag, found = 0, 0, 0
    unknown = False
    for reply in pipe.execute(raise_on_error=False):
        if isinstance(reply, redis.ResponseError):
            continue  # no such stream yet: nothing recorded there
        if isinstance(reply, Exception):
            raise reply
        g = next((g for g in reply if _text(g["name"]) == group), None)
        if g is None:
            continue
        found += 1
        pending += int(g.get("pending") or 0)
        if g.get("lag") is None:
            unknown = True
        else:
            lag += int(g["lag"])
    return GroupTotals(found=found > 0, pending=pending, lag=None if unknown else lag, shards=found)
