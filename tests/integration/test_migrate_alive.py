"""``hbdns migrate`` on a database written by the version before per-family liveness.

The old data is made by the old code itself: its beat and neutralize scripts, kept verbatim in
tests/data/alive_v1 (hbdns/lua at b2f6fc5), run with its call layout on the key names of then
(:mod:`hbdns.keys_unsharded`) on a real redis-server, and its account hash (no ``live`` field,
tests/support/unsharded.py). Then the migration runs (``alive_per_family`` on the unsharded schema,
then ``sharded``), and the new code must see every account as before: live ones live (with the
legacy key's remaining TTL), neutral ones neutral, deadlines kept, one transition per real outage.
(Old writers beside new ones are no longer a case: since sharding neither reads the other's keys.)
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import redis

from admin.cli.main import main as cli
from hbdns import keys, migrations
from hbdns import keys_unsharded as old
from hbdns.model import Account
from hbdns.store import Store
from pdns_backend.accounts import AccountReader
from pdns_backend.answers import ACCOUNT_FIELDS
from tests.support import unsharded
from tests.support.servers import wait_for

OLD = Path(__file__).resolve().parents[1] / "data" / "alive_v1"
ZONE = "old.test"


OLD_BEAT = unsharded.old_script(OLD, "beat")
_last = 0


def old_beat(r: redis.Redis, a: Account, ttl_ms: int, ipv4: str = "", ipv6: str = "", offline: bool = False) -> None:
    """One beat as the old listener sent it: KEYS deadlines events zone acct alive log, ARGV skew
    maxlen logcap source nzones zone, then id ipv4 ipv6 counter ttl offline fp."""
    global _last
    _last = max(_last + 1, time.time_ns() // 1_000_000)  # counters must grow, as the client's do
    counter = str(_last)
    k = [old.deadlines(), old.events(), keys.zone(ZONE), old.account(a.id), old.alive_legacy(a.id),
         old.account_log(a.id)]  # fmt: skip
    args = ["300000", "1000", "200", "beat", "1", ZONE, str(a.id), ipv4, ipv6, counter, str(ttl_ms),
            "1" if offline else "0", ""]  # fmt: skip
    OLD_BEAT(r, k, args)


def old_account(store: Store, name: str) -> Account:
    """An account as the old store wrote it (no ``live`` field)."""
    return unsharded.add_account(store, f"{name}.{ZONE}", live_field=False)


def steps(converted: dict[str, int], live_count: int | None = 1, moved: bool = True) -> int:
    """What ``alive_per_family`` converted; every other step converts nothing here but
    ``live_count`` (the old beats did not keep the count of live accounts: ``live_count`` items,
    None: not checked) and ``sharded`` (``moved``: something, else nothing)."""
    out = dict(converted)
    count = out.pop("live_count")
    assert live_count is None or count == live_count, count
    assert bool(out.pop("sharded")) == moved
    n = out.pop("alive_per_family")
    assert not any(out.values()), out
    return n


def live_mask(r: redis.Redis, a: Account) -> int:
    return int(AccountReader(r).fetch([a.fqdn])[0][len(ACCOUNT_FIELDS)])  # after the fields: the mask


def events(r: redis.Redis, a: Account) -> list[str]:
    """The account's transitions, from the stream of the schema it is in."""
    stream = keys.events(keys.shard_of(a.id)) if r.exists(keys.account(a.id)) else old.events()
    return [f["type"] for _, f in r.xrange(stream) if f["account"] == str(a.id)]


def test_deployed_accounts_survive_the_upgrade(
    store: Store, real_redis: redis.Redis, capsys: pytest.CaptureFixture[str]
) -> None:
    r = real_redis
    unsharded.add_zone(store, ZONE)
    v4, dual, gone, ending, never = (old_account(store, n) for n in ("v4", "dual", "gone", "ending", "never"))
    old_beat(r, v4, 60_000, ipv4="203.0.113.4")
    old_beat(r, dual, 60_000, ipv4="203.0.113.5")
    old_beat(r, dual, 60_000, ipv6="2001:db8::5")
    old_beat(r, gone, 60_000, ipv4="203.0.113.6")
    old_beat(r, gone, 60_000, offline=True)
    old_beat(r, ending, 2_500, ipv4="203.0.113.7")
    assert r.exists(old.alive_legacy(v4.id)) and not r.exists(old.alive(v4.id, 4))
    before = {a.id: (r.zscore(old.deadlines(), str(a.id)), r.pttl(old.alive_legacy(a.id))) for a in (v4, dual)}
    ending_deadline = r.zscore(old.deadlines(), str(ending.id))
    n_events = {a.id: len(events(r, a)) for a in (v4, dual, gone, ending, never)}

    assert cli(["--json", "migrate", "--dry-run"], redis_client=r) == 0
    assert steps(json.loads(capsys.readouterr().out)) == 5  # no hash has 'live' yet
    assert r.exists(old.alive_legacy(v4.id)) and not r.exists(old.alive(v4.id, 4))  # a dry run writes nothing
    assert steps({s.name: n for s, n in migrations.run(r)}) == 5

    def deadline(a: Account, f: int) -> float | None:
        return r.zscore(keys.deadlines(keys.shard_of(a.id)), keys.deadline_member(a.id, f))

    for a, fams in ((v4, (4,)), (dual, (4, 6))):
        was, legacy_ttl = before[a.id]
        for f in fams:
            assert 0 < r.pttl(keys.alive(a.id, f)) <= legacy_ttl  # the legacy key's remaining TTL
            assert deadline(a, f) == was  # deadline kept
        assert deadline(a, 0) is None
    assert not r.exists(keys.alive(v4.id, 6))  # no IPv6 address: no IPv6 liveness
    assert [store.status(a).state.live for a in (v4, dual, gone, ending, never)] == ["4", "46", "", "4", ""]
    assert store.status(dual).state.state == "live" and store.status(gone).state.state == "neutral"
    assert [live_mask(r, a) for a in (v4, dual, gone, never)] == [3, 3, 0, 0]  # the legacy keys, copied
    r.delete(keys.alive_legacy(dual.id))  # expired: from now on the new keys alone
    r.delete(keys.alive(dual.id, 6))  # and dual's IPv6 went
    assert [live_mask(r, a) for a in (v4, dual, gone, never)] == [3, 1, 0, 0]  # live stay live, neutral neutral

    # idempotent: nothing left to convert (the legacy keys that remain expire on their own)
    assert steps({s.name: n for s, n in migrations.run(r)}, live_count=0, moved=False) == 0
    assert cli(["migrate", "--status"], redis_client=r) == 0
    assert "alive_per_family" in capsys.readouterr().out

    # the account whose deadline falls after the upgrade is neutralized once, at its deadline
    assert deadline(ending, 4) == ending_deadline
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


def test_an_old_outage_not_swept_before_the_upgrade_is_recorded_once(store: Store, real_redis: redis.Redis) -> None:
    """The old sweeper had not got to it: the legacy key ran out, the plain member is due. After the
    upgrade the new sweeper reads the plain member as both families and records it once."""
    r = real_redis
    unsharded.add_zone(store, ZONE)
    a = old_account(store, "a")
    old_beat(r, a, 1, ipv4="203.0.113.9", ipv6="2001:db8::9")
    wait_for(lambda: not r.exists(old.alive_legacy(a.id)), 10, what="old key expired")
    assert steps({s.name: n for s, n in migrations.run(r)}) == 1  # its live field; a due plain member is the sweeper's
    assert r.zscore(keys.deadlines(keys.shard_of(a.id)), str(a.id)) is not None
    wait_for(lambda: store.liveness.due(), 10, what="the plain member due")
    swept = store.liveness.sweep()
    assert [(n.account_id, n.family, n.lost) for n in swept] == [(a.id, 0, False)]
    assert store.liveness.sweep() == []
    [neutralized] = [f for _, f in r.xrange(keys.events(keys.shard_of(a.id))) if f["type"] == "neutralized"]
    assert neutralized["family"] == "4,6"
