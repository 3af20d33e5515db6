"""Upgrading to ingest health on a database written by the version before it.

Nothing stored before changes meaning (``hbdns:ingest`` and the accounts' ``held*`` fields are new),
so there is no migration step; this pins that. The old data is made by the old code itself: its
beat and neutralize scripts, kept verbatim in tests/data/ingest_v0 (hbdns/lua at 2a0cb7e), run with
their call layout on a real redis-server. Then: the new sweeper acts on the old deadlines as
before while no listener has marked ingest; a new listener's first mark records no outage; and an
old sweeper still running during the upgrade does not act early on a deadline the new one holds.
"""

from __future__ import annotations

from pathlib import Path

import redis

from hbdns import config, keys
from hbdns.model import Account
from hbdns.scripts import Script
from hbdns.store import Store
from heartbeat_listener.ingest import IngestMark
from tests.support import services
from tests.support.servers import wait_for

OLD = Path(__file__).resolve().parents[1] / "data" / "ingest_v0"
OLD_BEAT, OLD_NEUTRALIZE = (
    Script(f"v0-{n}", (OLD / "lib.lua").read_text() + "\n" + (OLD / f"{n}.lua").read_text())
    for n in ("beat", "neutralize")
)
GAP = 300


def redis_ms(r: redis.Redis) -> int:
    sec, usec = r.time()
    return int(sec) * 1000 + int(usec) // 1000


def old_beat(r: redis.Redis, a: Account, ttl_ms: int) -> None:
    """One beat as the old listener sent it: KEYS deadlines events zone, then acct alive4 alive6
    alive_legacy log; ARGV skew maxlen logcap source nzones zone, then id ipv4 ipv6 counter ttl
    offline fp fams (8 per beat, no age)."""
    k = [keys.deadlines(), keys.events(), keys.zone(a.zone), keys.account(a.id), keys.alive(a.id, 4),
         keys.alive(a.id, 6), keys.alive_legacy(a.id), keys.account_log(a.id)]  # fmt: skip
    args = ["300000", "1000", "200", "beat", "1", a.zone, str(a.id), "198.51.100.7", "", str(redis_ms(r)),
            str(ttl_ms), "0", "", ""]  # fmt: skip
    OLD_BEAT(r, k, args)


def old_sweep_one(r: redis.Redis, a: Account) -> str:
    k = [keys.account(a.id), keys.alive(a.id, 4), keys.alive(a.id, 6), keys.alive_legacy(a.id), keys.deadlines(),
         keys.events(), keys.account_log(a.id), keys.zone(a.zone)]  # fmt: skip
    return str(OLD_NEUTRALIZE(r, k, [str(a.id), "4", "1000", "200"])[0])


def kinds(r: redis.Redis, a: Account) -> list[str]:
    return [e.type for e in services.events(r, account=a.id) if e.type != "ip_changed"]


def due(r: redis.Redis, a: Account) -> bool:
    d = r.zscore(keys.deadlines(), keys.deadline_member(a.id, 4))
    return not r.exists(keys.alive(a.id, 4)) and d is not None and d <= redis_ms(r)


def test_an_old_database_is_swept_as_before_until_a_listener_marks(real_redis: redis.Redis) -> None:
    store = Store(real_redis, config.load({"HBDNS_PLANS": services.PLANS}))
    ending, live = services.add_account(store, "ending"), services.add_account(store, "live")
    old_beat(real_redis, ending, 600)
    old_beat(real_redis, live, 600_000)
    wait_for(lambda: due(real_redis, ending), 5, what="the old deadline passed")
    assert [n.account_id for n in store.liveness.sweep()] == [ending.id]  # not tracked: nothing held
    assert kinds(real_redis, ending) == ["created", "recovered", "neutralized"]
    mark = IngestMark(real_redis, lambda: True, keep_ms=60_000, every=0.0, gap_ms=GAP)
    assert mark.step()  # the first mark ever: no outage recorded
    assert real_redis.hget(keys.ingest(), "gaps") is None
    assert real_redis.exists(keys.alive(live.id, 4)) and kinds(real_redis, live) == ["created", "recovered"]


def test_an_old_sweeper_does_not_act_early_on_a_held_deadline(real_redis: redis.Redis) -> None:
    store = Store(real_redis, config.load({"HBDNS_PLANS": services.PLANS}))
    a = services.add_account(store, "held")
    mark = IngestMark(real_redis, lambda: True, keep_ms=60_000, every=0.0, gap_ms=GAP)
    assert mark.step()
    old_beat(real_redis, a, 600)
    wait_for(lambda: due(real_redis, a), 5, what="the deadline passed")
    wait_for(lambda: redis_ms(real_redis) > int(real_redis.hget(keys.ingest(), "mark")) + GAP, 5, what="a gap")
    assert store.liveness.sweep() == []  # the new sweeper holds it ...
    assert old_sweep_one(real_redis, a) == "notdue"  # ... and the old one finds it not due yet
    assert kinds(real_redis, a) == ["created", "recovered"]
