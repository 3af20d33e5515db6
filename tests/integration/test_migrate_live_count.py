"""``hbdns migrate`` (step ``live_count``) on a database written by the version before the count of
live accounts (issue 17's accounts live/neutral metrics).

The old data is made by the old code itself: its beat script, kept verbatim in
tests/data/live_count_v1 (hbdns/lua at 2a0cb7e), with its call layout (no stats key) on the key
names of then (:mod:`hbdns.keys_unsharded`), on a real redis-server; the old store never wrote
``hbdns:stats``. The migration then counts the live accounts (``live_count``, on the unsharded
schema) and splits the count over the shards (``sharded``), the new scripts keep it through every
transition, and a rerun changes nothing. (An old writer running beside new ones no longer is a
case: since sharding the old and the new version do not read each other's keys.)
"""

from __future__ import annotations

import time
from pathlib import Path

import redis

from hbdns import keys, migrations
from hbdns import keys_unsharded as old
from hbdns.liveness import BeatRequest
from hbdns.migrations import live_count
from hbdns.model import Account
from hbdns.store import Store
from sweeper.metrics import liveness_counts
from tests.support import unsharded

OLD = Path(__file__).resolve().parents[1] / "data" / "live_count_v1"
ZONE = "old.test"
OLD_BEAT = unsharded.old_script(OLD, "beat")
_last = 0


def old_beat(r: redis.Redis, a: Account, ipv4: str = "", offline: bool = False) -> None:
    """One beat as the old listener sent it: KEYS deadlines events zone, then acct alive4 alive6
    alive_legacy log; ARGV skew maxlen logcap source nzones zone, then id ipv4 ipv6 counter ttl
    offline fp fams."""
    global _last
    _last = max(_last + 1, time.time_ns() // 1_000_000)  # counters must grow, as the client's do
    k = [old.deadlines(), old.events(), keys.zone(ZONE), old.account(a.id), old.alive(a.id, 4),
         old.alive(a.id, 6), old.alive_legacy(a.id), old.account_log(a.id)]  # fmt: skip
    args = ["300000", "1000", "200", "beat", "1", ZONE, str(a.id), ipv4, "", str(_last), "600000",
            "1" if offline else "0", "", ""]  # fmt: skip
    OLD_BEAT(r, k, args)


def counted(r: redis.Redis) -> int | None:
    """The count over every shard (None: not counted yet)."""
    raw = [r.hget(keys.stats(s), "live") for s in keys.all_shards()]
    return None if None in raw else sum(int(x or 0) for x in raw)


def old_counted(r: redis.Redis) -> int | None:
    raw = r.hget(old.stats(), "live")
    return None if raw is None else int(raw)


def test_the_count_of_live_accounts_after_an_upgrade(store: Store, real_redis: redis.Redis) -> None:
    r = real_redis
    unsharded.add_zone(store, ZONE)
    a, b, c, d = (unsharded.add_account(store, f"{n}.{ZONE}") for n in "abcd")
    r.delete(old.stats())  # the old store never wrote it
    old_beat(r, a, "203.0.113.1")
    old_beat(r, b, "203.0.113.2")
    old_beat(r, c, "203.0.113.3")
    old_beat(r, c, offline=True)  # c: live, then offline
    assert counted(r) is None and old_counted(r) is None

    assert live_count.apply(r, dry_run=True) == 1 and old_counted(r) is None  # a dry run writes nothing
    assert live_count.apply(r) == 1 and old_counted(r) == 2  # a and b, counted on the old schema
    results = {step.name: n for step, n in migrations.run(r)}
    assert results["live_count"] == 0 and results["sharded"] > 0
    assert counted(r) == 2 and not r.exists(old.stats())  # split over the shards
    assert liveness_counts(r)["live"] == 2 and liveness_counts(r)["neutral"] == 2
    assert not any(n for _step, n in migrations.run(r))  # idempotent
    assert live_count.apply(r) == 0 and not r.exists(old.stats())  # nothing of the old schema is made again

    # the new code keeps it: a recovery, an offline beat, a live account removed, a neutral one removed
    new = store.liveness
    new.beat(BeatRequest(account_id=d.id, zone=ZONE, expiry_ms=600_000, ipv4="203.0.113.4"))
    assert counted(r) == 3
    new.beat(BeatRequest(account_id=a.id, zone=ZONE, expiry_ms=600_000, offline=True))
    assert counted(r) == 2
    store.remove_account(b.id)
    assert counted(r) == 1
    store.remove_account(c.id)
    assert counted(r) == 1
    assert not any(n for _step, n in migrations.run(r))  # the kept count is the true one
