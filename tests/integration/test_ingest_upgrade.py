"""Upgrading to ingest health on a database written by the version before it, and keeping the
ingest marks across the sharding of the schema (issue 16).

Ingest health itself needed no migration step (``hbdns:ingest`` and the accounts' ``held*`` fields
were new); since sharding, ``hbdns migrate`` moves such a database to the sharded schema, and the
ingest marks of the last unsharded version go into every shard's. The old data is made by the old
code itself, on the key names of then (:mod:`hbdns.keys_unsharded`): the beat script of the version
before ingest health, kept verbatim in tests/data/ingest_v0 (hbdns/lua at 2a0cb7e), and the beat and
ingest mark scripts of the last unsharded version (tests/data/unsharded_v1), on a real
redis-server. Then: the new sweeper acts on the old deadlines as before while no listener has
marked ingest; a new listener's first mark records no outage; and an ingest outage recorded before
the upgrade still holds the deadlines it covers after it.
"""

from __future__ import annotations

from pathlib import Path

import redis

from hbdns import config, keys, migrations
from hbdns import keys_unsharded as old
from hbdns.model import Account
from hbdns.store import Store
from heartbeat_listener.ingest import IngestMark
from tests.support import services, unsharded
from tests.support.servers import wait_for

V0 = Path(__file__).resolve().parents[1] / "data" / "ingest_v0"
OLD_BEAT = unsharded.old_script(V0, "beat")
V1_BEAT, V1_MARK = unsharded.old_script(unsharded.V1, "beat"), unsharded.old_script(unsharded.V1, "ingest_mark")
GAP = 300


def redis_ms(r: redis.Redis) -> int:
    sec, usec = r.time()
    return int(sec) * 1000 + int(usec) // 1000


def old_beat(r: redis.Redis, a: Account, ttl_ms: int) -> None:
    """One beat as the listener before ingest health sent it: KEYS deadlines events zone, then acct
    alive4 alive6 alive_legacy log; ARGV skew maxlen logcap source nzones zone, then id ipv4 ipv6
    counter ttl offline fp fams (8 per beat, no age)."""
    k = [old.deadlines(), old.events(), keys.zone(a.zone), old.account(a.id), old.alive(a.id, 4),
         old.alive(a.id, 6), old.alive_legacy(a.id), old.account_log(a.id)]  # fmt: skip
    args = ["300000", "1000", "200", "beat", "1", a.zone, str(a.id), "198.51.100.7", "", str(redis_ms(r)),
            str(ttl_ms), "0", "", ""]  # fmt: skip
    OLD_BEAT(r, k, args)


def v1_beat(r: redis.Redis, a: Account, ttl_ms: int) -> None:
    """One beat as the last unsharded listener sent it: KEYS deadlines events stats ingest zone, then
    acct alive4 alive6 alive_legacy log; ARGV ... then id ipv4 ipv6 counter ttl offline fp fams age."""
    k = [old.deadlines(), old.events(), old.stats(), old.ingest(), keys.zone(a.zone), old.account(a.id),
         old.alive(a.id, 4), old.alive(a.id, 6), old.alive_legacy(a.id), old.account_log(a.id)]  # fmt: skip
    args = ["300000", "1000", "200", "beat", "1", a.zone, str(a.id), "198.51.100.7", "", str(redis_ms(r)),
            str(ttl_ms), "0", "", "", ""]  # fmt: skip
    V1_BEAT(r, k, args)


def old_account(store: Store, name: str) -> Account:
    unsharded.add_zone(store, services.ZONE)
    return unsharded.add_account(store, f"{name}.{services.ZONE}", "test-fast")


def kinds(r: redis.Redis, a: Account) -> list[str]:
    return [e.type for e in services.events(r, account=a.id) if e.type != "ip_changed"]


def due(r: redis.Redis, a: Account) -> bool:
    d = r.zscore(keys.deadlines(keys.shard_of(a.id)), keys.deadline_member(a.id, 4))
    return not r.exists(keys.alive(a.id, 4)) and d is not None and d <= redis_ms(r)


def migrate(r: redis.Redis) -> None:
    assert dict((s.name, n) for s, n in migrations.run(r))["sharded"] > 0
    assert not r.exists(old.deadlines(), old.events(), old.ingest())


def test_an_old_database_is_swept_as_before_until_a_listener_marks(real_redis: redis.Redis) -> None:
    store = Store(real_redis, config.load({"HBDNS_PLANS": services.PLANS}))
    ending, live = old_account(store, "ending"), old_account(store, "live")
    old_beat(real_redis, ending, 600)
    old_beat(real_redis, live, 600_000)
    migrate(real_redis)
    wait_for(lambda: due(real_redis, ending), 5, what="the old deadline passed")
    assert [n.account_id for n in store.liveness.sweep()] == [ending.id]  # not tracked: nothing held
    assert kinds(real_redis, ending) == ["created", "recovered", "neutralized"]
    mark = IngestMark(real_redis, lambda: True, keep_ms=60_000, every=0.0, gap_ms=GAP)
    assert mark.step()  # the first mark ever: no outage recorded
    assert all(real_redis.hget(keys.ingest(s), "gaps") is None for s in keys.all_shards())
    assert real_redis.exists(keys.alive(live.id, 4)) and kinds(real_redis, live) == ["created", "recovered"]


def test_an_ingest_outage_recorded_before_the_upgrade_holds_after_it(real_redis: redis.Redis) -> None:
    r = real_redis
    store = Store(r, config.load({"HBDNS_PLANS": services.PLANS}))
    a = old_account(store, "held")
    V1_MARK(r, [old.ingest()], [GAP, 60_000])
    v1_beat(r, a, 600)
    wait_for(lambda: redis_ms(r) > int(r.hget(old.ingest(), "mark")) + GAP, 5, what="a gap")
    V1_MARK(r, [old.ingest()], [GAP, 60_000])  # the listener is back: the gap is recorded
    assert r.hget(old.ingest(), "gaps")
    migrate(r)
    assert all(r.hget(keys.ingest(s), "gaps") == r.hget(keys.ingest(0), "gaps") for s in keys.all_shards())
    wait_for(lambda: due(r, a), 5, what="the deadline passed")
    assert store.liveness.sweep() == []  # held: its window overlaps the outage from before the upgrade
    assert kinds(r, a) == ["created", "recovered"]
