"""``hbdns migrate`` (step ``live_count``) on a database written by the version before the count of
live accounts (issue 17's accounts live/neutral metrics).

The old data is made by the old code itself: its beat script, kept verbatim in
tests/data/live_count_v1 (hbdns/lua at 2a0cb7e), with its call layout (no stats key), on a real
redis-server; the old store never wrote ``hbdns:stats``. The migration then counts the live
accounts, the new scripts keep the count through every transition, a rerun changes nothing, and an
old writer still running (a rolling upgrade) is put right by the next run.
"""

from __future__ import annotations

import time
from pathlib import Path

import redis

from hbdns import keys, migrations
from hbdns.liveness import BeatRequest
from hbdns.migrations import live_count
from hbdns.model import Account, Zone
from hbdns.scripts import Script
from hbdns.store import Store
from sweeper.metrics import liveness_counts

OLD = Path(__file__).resolve().parents[1] / "data" / "live_count_v1"
ZONE = "old.test"
OLD_BEAT = Script("v1-beat", (OLD / "lib.lua").read_text() + "\n" + (OLD / "beat.lua").read_text())
_last = 0


def old_beat(r: redis.Redis, a: Account, ipv4: str = "", offline: bool = False) -> None:
    """One beat as the old listener sent it: KEYS deadlines events zone, then acct alive4 alive6
    alive_legacy log; ARGV skew maxlen logcap source nzones zone, then id ipv4 ipv6 counter ttl
    offline fp fams."""
    global _last
    _last = max(_last + 1, time.time_ns() // 1_000_000)  # counters must grow, as the client's do
    k = [keys.deadlines(), keys.events(), keys.zone(ZONE), keys.account(a.id), keys.alive(a.id, 4),
         keys.alive(a.id, 6), keys.alive_legacy(a.id), keys.account_log(a.id)]  # fmt: skip
    args = ["300000", "1000", "200", "beat", "1", ZONE, str(a.id), ipv4, "", str(_last), "600000",
            "1" if offline else "0", "", ""]  # fmt: skip
    OLD_BEAT(r, k, args)


def counted(r: redis.Redis) -> int | None:
    raw = r.hget(keys.stats(), "live")
    return None if raw is None else int(raw)


def test_the_count_of_live_accounts_after_an_upgrade(store: Store, real_redis: redis.Redis) -> None:
    r = real_redis
    store.add_zone(Zone(ZONE, ("ns1.old.test",), "hostmaster.old.test", "192.0.2.1"))
    a, b, c, d = (store.add_account(store.new_account(f"{n}.{ZONE}", "heartbeat-c")) for n in "abcd")
    r.delete(keys.stats())  # the old store never wrote it
    old_beat(r, a, "203.0.113.1")
    old_beat(r, b, "203.0.113.2")
    old_beat(r, c, "203.0.113.3")
    old_beat(r, c, offline=True)  # c: live, then offline
    assert counted(r) is None and liveness_counts(r)["live"] is None  # the metrics wait for the count

    assert live_count.apply(r, dry_run=True) == 1 and counted(r) is None  # a dry run writes nothing
    results = {step.name: n for step, n in migrations.run(r)}
    assert results["live_count"] == 1
    assert counted(r) == 2  # a and b
    assert liveness_counts(r)["live"] == 2 and liveness_counts(r)["neutral"] == 2
    assert {step.name: n for step, n in migrations.run(r)}["live_count"] == 0  # idempotent

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
    assert live_count.apply(r) == 0  # the kept count is the true one

    # an old writer beside the new ones (rolling upgrade) does not move it; the next migrate does
    old_beat(r, a, "203.0.113.1")
    assert counted(r) == 1
    assert live_count.apply(r) == 1 and counted(r) == 2
