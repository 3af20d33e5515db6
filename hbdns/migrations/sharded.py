"""The unsharded schema (:mod:`hbdns.keys_unsharded`) into the sharded one (:mod:`hbdns.keys`, issue 16).

Before: account keys tagged ``{a:<id>}``, one global deadline set, event stream (with the
notifier's and the flusher's consumer groups), live count, ingest marks, trim counts and mass
events. After: everything of an account in its shard's slot ``{s:<id % 16>}``, per-shard deadlines,
streams, counts, ingest marks and name confirmations (``keys.shard_names``). Zone serials need
nothing: the per-shard change counts start empty, so every zone keeps its serial.

Order (each piece one atomic call of ``hbdns/lua/migrate_sharded.lua``, all its keys in KEYS, so
this runs on a standalone Redis only; on a Redis Cluster a database in the old schema cannot be
copied across slots and the step refuses, while one in the new schema needs only its live counts):

1. copy, per account: its hash, alive keys (TTL kept to the ms), log, SMS and outage threads, ACME
   credentials to the new names, its deadline members into ``deadlines(shard)``, its names (those
   the global index still gives it) into ``shard_names(shard)``. The old keys stay for now, so
   backends of the old version keep answering every account while this runs.
2. events: every entry of the old stream (the trim keeps it bounded) is appended to its account's
   shard stream (mass-outage events to ``MASS_SHARD``'s) with ``legacy_id`` = its old id, so sent
   markers written before still match, and a dead letter's or queued message's event can still be
   found to build it again. The old groups are made on those streams with the same state: what a
   group acknowledged stays acknowledged, what it had pending is pending with the same consumer
   (idle time and delivery count kept), what it had not been delivered is delivered next; so every
   unacknowledged entry is delivered where and as often as it would have been, and no acknowledged
   one again. Copied in order in chunks; a map of old id -> new id (``keys.migrate_events_map``)
   makes each entry go over once. (A group's state is kept exactly on a shard stream its group had
   read to the end, as after stopping the services; were new services already writing there, the
   copies are delivered to it as new entries, once more: the sent markers make that harmless.)
3. globals: the ingest marks into every shard's (gaps merged), the trim counts into shard 0's,
   the mass events to their new key.
4. live: each shard's count of live accounts (``stats(shard)`` ``live``), counted from the copied
   hashes when the old count existed (the scripts kept it: it was right) or the shard has none.
5. remove, per copied account: its old keys and deadline members; then the old stream, count,
   deadlines (only members of accounts no longer in the account set are left there) and the map.

Idempotent: an account whose new hash exists is not copied again (a run interrupted between copy
and remove only removes), an entry in the map not appended again, a global key moved is gone.

Upgrade order (docs/upgrade.md): stop every writer of the old version (heartbeat listeners, update
APIs, sweepers, notifiers, flushers, admin API), run ``hbdns migrate``, then start the new
version's services and switch the DNS backends to it. During the copy, old backends answer every
account as before (no writer runs, and liveness flips on the alive keys' own expiry, which the
copies share to the ms); from an account's removal until the new backends run, an old backend no
longer finds it (its names are still indexed, the hash is gone) and answers no records for it, so
replace the backends right after the migration (PowerDNS' caches shorten the gap to whatever their
TTLs hold). New backends started before the migration answer an account only once it is copied.
Beats sent while the listeners are stopped are lost; the clients' next beats after the start put
them right, and an account whose alive key ran out meanwhile is neutralized by the new sweeper as
it would have been.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

import redis
import redis.cluster

from hbdns import keys, scripts
from hbdns import keys_unsharded as old
from hbdns.store import StoreError

SUMMARY = "the unsharded schema ({a:<id>} keys, global deadlines/events) into 16 shards; old writers stopped first"
CHUNK = 200


class Refused(StoreError):
    """The database cannot be migrated where it is (an old schema on a Redis Cluster)."""


def is_cluster(r: Any) -> bool:
    return isinstance(r, redis.cluster.RedisCluster)


def _s(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def _id_key(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def account_keys(account_id: int) -> list[str]:
    """KEYS of the copy/remove operations for one account."""
    shard = keys.shard_of(account_id)
    pairs = [
        (old.account(account_id), keys.account(account_id)),
        (old.alive(account_id, 4), keys.alive(account_id, 4)),
        (old.alive(account_id, 6), keys.alive(account_id, 6)),
        (old.alive_legacy(account_id), keys.alive_legacy(account_id)),
        (old.account_log(account_id), keys.account_log(account_id)),
        (old.sms_outage(account_id), keys.sms_outage(account_id)),
        (old.notify_outage(account_id), keys.notify_outage(account_id)),
        (old.acme_credentials(account_id), keys.acme_credentials(account_id)),
    ]
    head = [keys.names(), old.deadlines(), keys.deadlines(shard), keys.shard_names(shard)]
    return head + [k for pair in pairs for k in pair]


def old_data(r: Any, ids: Sequence[int]) -> bool:
    """Whether anything of the unsharded schema is left (single-key reads: works on a Cluster)."""
    globals_ = (old.deadlines(), old.events(), old.stats(), old.ingest(), old.events_trim(), old.mass_events())
    if any(r.exists(k) for k in globals_):
        return True
    for start in range(0, len(ids), 1000):
        pipe = r.pipeline(transaction=False)
        for i in ids[start : start + 1000]:
            pipe.exists(old.account(i))
        if any(pipe.execute()):
            return True
    return False


def _names_by_id(r: redis.Redis) -> dict[int, list[str]]:
    out: dict[int, list[str]] = defaultdict(list)
    for name, raw in r.hscan_iter(keys.names(), count=1000):
        if _s(raw).isdigit():
            out[int(_s(raw))].append(_s(name))
    return out


def _accounts(r: redis.Redis, op: str, ids: Sequence[int], names: dict[int, list[str]], dry: str) -> list[int]:
    done = []
    for start in range(0, len(ids), CHUNK):
        chunk = ids[start : start + CHUNK]
        pipe = r.pipeline(transaction=False)
        for i in chunk:
            extra = names.get(i, []) if op == "copy" else []
            scripts.MIGRATE_SHARDED(pipe, account_keys(i), [op, dry, str(i), *extra])
        done += [i for i, n in zip(chunk, pipe.execute(), strict=True) if int(n)]
    return done


def _entries(r: redis.Redis) -> tuple[list[tuple[str, str]], dict[str, list[tuple[int, str, int, int]]]]:
    """The old stream's groups (name, last delivered id) and the entries to copy (all it holds):
    id -> its pending deliveries (group index, consumer, idle ms, delivery count)."""
    stream = old.events()
    if not r.exists(stream):
        return [], {}
    groups = [(_s(g["name"]), _s(g["last-delivered-id"])) for g in r.xinfo_groups(stream)]
    todo: dict[str, list[tuple[int, str, int, int]]] = {}
    start = "-"
    while True:
        batch: Any = r.xrange(stream, min=start, max="+", count=1000)
        for entry_id, _fields in batch:
            todo.setdefault(_s(entry_id), [])
        if len(batch) < 1000:
            break
        start = "(" + _s(batch[-1][0])
    for g, (name, _last) in enumerate(groups):
        cursor = "-"
        while True:
            pending = r.xpending_range(stream, name, min=cursor, max="+", count=1000)
            for p in pending:
                todo.setdefault(_s(p["message_id"]), []).append(
                    (g, _s(p["consumer"]), int(p["time_since_delivered"]), int(p["times_delivered"]))
                )
            if len(pending) < 1000:
                break
            cursor = "(" + _s(pending[-1]["message_id"])
    return groups, todo


def _events(r: redis.Redis, dry: str) -> int:
    groups, todo = _entries(r)
    if not todo:
        return 0
    head = ["events", dry, str(keys.SHARDS), str(keys.MASS_SHARD), str(len(groups))]
    head += [x for g in groups for x in g]
    stream_keys = [old.events(), keys.migrate_events_map(), *(keys.events(s) for s in keys.all_shards())]
    ordered = sorted(todo, key=_id_key)
    moved = 0
    for start in range(0, len(ordered), CHUNK):
        args = list(head)
        for entry_id in ordered[start : start + CHUNK]:
            args += [entry_id, str(len(todo[entry_id]))]
            for g, consumer, idle, n in todo[entry_id]:
                args += [str(g + 1), consumer, str(idle), str(n)]
        moved += int(scripts.MIGRATE_SHARDED(r, stream_keys, args))
    return moved


def _globals(r: redis.Redis, dry: str) -> int:
    ks = [old.ingest(), old.events_trim(), old.mass_events(), keys.events_trim(0), keys.mass_events()]
    return int(scripts.MIGRATE_SHARDED(r, ks + [keys.ingest(s) for s in keys.all_shards()], ["globals", dry]))


def _live(r: Any, ids: Iterable[int], dry: str, recount: bool) -> int:
    by_shard: dict[int, list[int]] = defaultdict(list)
    for i in ids:
        by_shard[keys.shard_of(i)].append(i)
    changed = 0
    for s in keys.all_shards():
        ks = [keys.stats(s), *(keys.account(i) for i in by_shard[s])]
        changed += int(scripts.MIGRATE_SHARDED(r, ks, ["live", dry, "1" if recount else "0"]))
    return changed


def apply(r: Any, *, dry_run: bool = False) -> int:
    """Accounts copied or removed, entries copied, global keys moved, shard counts written (or,
    with ``dry_run``, to do; a dry run on an unmigrated database counts each account once)."""
    dry = "1" if dry_run else "0"
    ids = sorted(int(x) for x in r.smembers(keys.accounts()))
    if is_cluster(r):
        if old_data(r, ids):
            raise Refused(
                "this database is in the unsharded schema: 'hbdns migrate' copies it across slots, which a"
                " Redis Cluster refuses. Migrate it on a standalone Redis, then load it into the cluster."
            )
        return _live(r, ids, dry, recount=False)
    names = _names_by_id(r)
    copied = set(_accounts(r, "copy", ids, names, dry))
    moved = _events(r, dry) + _globals(r, dry)
    recount = r.hexists(old.stats(), "live")
    moved += _live(r, ids, dry, recount=bool(recount))
    removed = set(_accounts(r, "remove", ids, names, dry))
    finish = [old.events(), keys.migrate_events_map(), old.stats(), old.deadlines()]
    moved += int(scripts.MIGRATE_SHARDED(r, finish, ["finish", dry]))
    return len(copied | removed) + moved
