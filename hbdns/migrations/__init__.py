"""``hbdns migrate``: bring data written by an older version to the layout this version reads.

One module per change, each with ``apply(r, dry_run=False) -> int`` (how many items it converted,
or would convert) and a one-line ``SUMMARY``. Every step is idempotent and, but for ``sharded``
(which wants the old version's writers stopped: its docstring, docs/upgrade.md), safe while
services run: it converts item by item, each in one MULTI/EXEC or script call (or in an order that
leaves an item either old or new, never lost), skips what is converted already, and leaves data
that an older process may still read in place. So ``hbdns migrate`` runs every step every time; a
step with nothing left converts 0. The last run of each step is recorded in ``keys.migrations()``
for ``hbdns migrate --status``.

Steps (in order):

- ``legacy_notify_queue``: retries of the notifier before issue 14 (``hbdns:notify:retry``) into
  the queue (``hbdns:{notify}:*``). The notifier also runs it once a minute, so retries an older
  notifier still writes during a rolling upgrade are not stranded.
- ``legacy_dead_letters``: dead letters of that version (``hbdns:deadletter``, without the message)
  into the new dead letters, retryable (the message is built again from its event).
- ``legacy_sms_outage``: which phone got which outage's SMS (``hbdns:sms:outage:*``) into the
  notifier's outage threads, so the recovery SMS of an outage open across the upgrade goes out.
- ``zone_ents``: the empty non-terminal index of every zone, built from its accounts' names.
- ``alive_per_family``: the one ``alive`` key and deadline of each account into one per address
  family (issue 13: liveness per family).
- ``live_count``: the count of accounts recorded live (``hbdns:stats``), which the transition
  scripts keep from then on (issue 17: the accounts live/neutral metrics).
- ``sharded``: everything above into the sharded schema (issue 16: Redis Cluster), last. The steps
  before it work on the unsharded schema (:mod:`hbdns.keys_unsharded`), so a database of any older
  version upgrades step by step; on a sharded database they find nothing to convert. Run it with
  the old version's writers stopped (the order and what DNS answers meanwhile: its docstring,
  docs/operations.md). On a Redis Cluster only ``sharded`` runs (a new database's live counts); it
  refuses a database in the unsharded schema there.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass

import redis

from hbdns import keys
from hbdns.migrations import (
    alive_per_family,
    legacy_dead_letters,
    legacy_notify_queue,
    legacy_sms_outage,
    live_count,
    sharded,
    zone_ents,
)


@dataclass(frozen=True)
class Step:
    name: str
    summary: str
    apply: Callable[..., int]
    unsharded: bool  # works on the unsharded schema: skipped on a Redis Cluster


_OLD_SCHEMA = (legacy_notify_queue, legacy_dead_letters, legacy_sms_outage, zone_ents, alive_per_family, live_count)
STEPS: tuple[Step, ...] = tuple(
    Step(m.__name__.rpartition(".")[2], m.SUMMARY, m.apply, m in _OLD_SCHEMA) for m in (*_OLD_SCHEMA, sharded)
)


def run(r: redis.Redis, *, dry_run: bool = False) -> list[tuple[Step, int]]:
    """Run every step in order; returns (step, items converted or, with ``dry_run``, to convert).
    On a Redis Cluster the unsharded steps convert nothing (no such database can be there: the step
    ``sharded`` refuses one, before anything is written)."""
    cluster = sharded.is_cluster(r)
    if cluster and sharded.old_data(r, sorted(int(x) for x in r.smembers(keys.accounts()))):
        sharded.apply(r, dry_run=True)  # raises sharded.Refused with the reason
    done = []
    for step in STEPS:
        n = 0 if cluster and step.unsharded else step.apply(r, dry_run=dry_run)
        if not dry_run:
            r.hset(keys.migrations(), step.name, json.dumps({"at": time.time(), "converted": n}))
        done.append((step, n))
    return done


def last_runs(r: redis.Redis) -> dict[str, dict[str, float]]:
    return {str(k): json.loads(v) for k, v in r.hgetall(keys.migrations()).items()}
