"""``hbdns migrate`` on a database written by the version before per-family liveness.

The old data is made by the old code itself: its beat and neutralize scripts, kept verbatim in
tests/data/alive_v1 (hbdns/lua at b2f6fc5), run with its call layout on a real redis-server, and
its account hash (no ``live`` field). Then the migration runs, and the new code must see every
account as before: live ones live (with the legacy key's remaining TTL), neutral ones neutral,
deadlines kept, one transition per real outage; an old writer still running keeps working.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import redis

from admin.cli.main import main as cli
from hbdns import keys, migrations
from hbdns.model import Account, Zone
from hbdns.scripts import Script
from hbdns.store import Store
from pdns_backend.accounts import AccountReader
from pdns_backend.answers import ACCOUNT_FIELDS
from tests.support.servers import wait_for

OLD = Path(__file__).resolve().parents[1] / "data" / "alive_v1"
ZONE = "old.test"


def old_script(name: str) -> Script:
    return Script(f"v1-{name}", (OLD / "lib.lua").read_text() + "\n" + (OLD / f"{name}.lua").read_text())


OLD_BEAT, OLD_NEUTRALIZE = old_script("beat"), old_script("neutralize")
_last = 0


def old_beat(r: redis.Redis, a: Account, ttl_ms: int, ipv4: str = "", ipv6: str = "", offline: bool = False) -> None:
    """One beat as the old listener sent it: KEYS deadlines events zone acct alive log, ARGV skew
    maxlen logcap source nzones zone, then id ipv4 ipv6 counter ttl offline fp."""
    global _last
    _last = max(_last + 1, time.time_ns() // 1_000_000)  # counters must grow, as the client's do
    counter = str(_last)
    k = [keys.deadlines(), keys.events(), keys.zone(ZONE), keys.account(a.id), keys.alive_legacy(a.id),
         keys.account_log(a.id)]  # fmt: skip
    args = ["300000", "1000", "200", "beat", "1", ZONE, str(a.id), ipv4, ipv6, counter, str(ttl_ms),
            "1" if offline else "0", ""]  # fmt: skip
    OLD_BEAT(r, k, args)


def old_account(store: Store, name: str) -> Account:
    """An account as the old store wrote it (no ``live`` field)."""
    a = store.add_account(store.new_account(f"{name}.{ZONE}", "heartbeat-c"))
    store.r.hdel(keys.account(a.id), "live")
    return a


def steps(converted: dict[str, int], live_count: int | None = 1) -> int:
    """What ``alive_per_family`` converted; every other step converts nothing here but
    ``live_count`` (the old beats did not keep the count of live accounts: ``live_count`` items,
    None: not checked)."""
    out = dict(converted)
    count = out.pop("live_count")
    assert live_count is None or count == live_count, count
    n = out.pop("alive_per_family")
    assert not any(out.values()), out
    return n


def live_mask(r: redis.Redis, a: Account) -> int:
    return int(AccountReader(r).fetch([a.fqdn])[0][len(ACCOUNT_FIELDS)])  # after the fields: the mask


def events(r: redis.Redis, a: Account) -> list[str]:
    return [f["type"] for _, f in r.xrange(keys.events()) if f["account"] == str(a.id)]


def test_deployed_accounts_survive_the_upgrade(
    store: Store, real_redis: redis.Redis, capsys: pytest.CaptureFixture[str]
) -> None:
    r = real_redis
    store.add_zone(Zone(ZONE, ("ns1.old.test",), "hostmaster.old.test", "192.0.2.1"))
    v4, dual, gone, ending, never = (old_account(store, n) for n in ("v4", "dual", "gone", "ending", "never"))
    old_beat(r, v4, 60_000, ipv4="203.0.113.4")
    old_beat(r, dual, 60_000, ipv4="203.0.113.5")
    old_beat(r, dual, 60_000, ipv6="2001:db8::5")
    old_beat(r, gone, 60_000, ipv4="203.0.113.6")
    old_beat(r, gone, 60_000, offline=True)
    old_beat(r, ending, 2_500, ipv4="203.0.113.7")
    assert r.exists(keys.alive_legacy(v4.id)) and not r.exists(keys.alive(v4.id, 4))
    before = {a.id: (r.zscore(keys.deadlines(), str(a.id)), r.pttl(keys.alive_legacy(a.id))) for a in (v4, dual)}
    ending_deadline = r.zscore(keys.deadlines(), str(ending.id))
    n_events = {a.id: len(events(r, a)) for a in (v4, dual, gone, ending, never)}

    # the new readers take the old layout as "both families" before anything is migrated
    assert [live_mask(r, a) for a in (v4, dual, gone, never)] == [3, 3, 0, 0]

    assert cli(["--json", "migrate", "--dry-run"], redis_client=r) == 0
    assert steps(json.loads(capsys.readouterr().out)) == 5  # no hash has 'live' yet
    assert r.exists(keys.alive_legacy(v4.id)) and not r.exists(keys.alive(v4.id, 4))  # a dry run writes nothing
    assert steps({s.name: n for s, n in migrations.run(r)}) == 5

    for a, fams in ((v4, (4,)), (dual, (4, 6))):
        deadline, legacy_ttl = before[a.id]
        for f in fams:
            assert 0 < r.pttl(keys.alive(a.id, f)) <= legacy_ttl  # the legacy key's remaining TTL
            assert r.zscore(keys.deadlines(), keys.deadline_member(a.id, f)) == deadline  # deadline kept
        assert r.zscore(keys.deadlines(), str(a.id)) is None
    assert not r.exists(keys.alive(v4.id, 6))  # no IPv6 address: no IPv6 liveness
    assert [store.status(a).state.live for a in (v4, dual, gone, ending, never)] == ["4", "46", "", "4", ""]
    assert store.status(dual).state.state == "live" and store.status(gone).state.state == "neutral"
    r.delete(keys.alive_legacy(dual.id))  # expired: from now on the new keys alone
    r.delete(keys.alive(dual.id, 6))  # and dual's IPv6 went
    assert [live_mask(r, a) for a in (v4, dual, gone, never)] == [3, 1, 0, 0]  # live stay live, neutral neutral

    # idempotent: nothing left to convert (the legacy keys that remain expire on their own)
    assert steps({s.name: n for s, n in migrations.run(r)}, live_count=0) == 0
    assert cli(["migrate", "--status"], redis_client=r) == 0
    assert "alive_per_family" in capsys.readouterr().out

    # the account whose deadline falls after the upgrade is neutralized once, at its deadline
    new_deadline = r.zscore(keys.deadlines(), keys.deadline_member(ending.id, 4))
    assert new_deadline == ending_deadline
    wait_for(
        lambda: not r.exists(keys.alive(ending.id, 4), keys.alive_legacy(ending.id)) and store.liveness.due(),
        10,
        what="the ending account's keys expired and its deadline due",
    )
    swept = store.liveness.sweep()
    assert [(n.account_id, n.lost) for n in swept] == [(ending.id, False)]
    assert events(r, ending)[n_events[ending.id] :] == ["neutralized"]
    assert store.liveness.sweep() == []
    assert [events(r, a)[n_events[a.id] :] for a in (v4, dual, gone, never)] == [[], [], [], []]

    # an old writer that still runs: its beat refreshes the legacy key, which the new code reads
    old_beat(r, v4, 60_000, ipv4="203.0.113.4")
    old_beat(r, dual, 60_000, ipv4="203.0.113.5")  # its legacy key had expired: it records that (as before)
    assert events(r, dual)[n_events[dual.id] :] == ["neutralized", "recovered"]
    del n_events[dual.id]
    assert live_mask(r, v4) == 3 and store.status(v4).live
    assert steps({s.name: n for s, n in migrations.run(r)}, live_count=None) == 2  # plain members, again
    assert events(r, v4)[n_events[v4.id] :] == []


def test_the_old_sweeper_script_and_the_new_one_agree_on_an_old_outage(store: Store, real_redis: redis.Redis) -> None:
    """An outage of the old layout is recorded once, whichever sweeper gets there first."""
    r = real_redis
    store.add_zone(Zone(ZONE, ("ns1.old.test",), "hostmaster.old.test", "192.0.2.1"))
    a = old_account(store, "a")
    old_beat(r, a, 1, ipv4="203.0.113.9", ipv6="2001:db8::9")
    wait_for(lambda: not r.exists(keys.alive_legacy(a.id)) and store.liveness.due(), 10, what="old key expired")
    swept = store.liveness.sweep()  # the new sweeper reads the plain member as both families
    assert [(n.account_id, n.family, n.lost) for n in swept] == [(a.id, 0, False)]
    k = [keys.account(a.id), keys.alive_legacy(a.id), keys.deadlines(), keys.events(), keys.account_log(a.id),
         keys.zone(ZONE)]  # fmt: skip
    assert OLD_NEUTRALIZE(r, k, [str(a.id), "1000", "200"])[0] == "none"  # and the old one finds it done
    [neutralized] = [f for _, f in r.xrange(keys.events()) if f["type"] == "neutralized"]
    assert neutralized["family"] == "4,6"
