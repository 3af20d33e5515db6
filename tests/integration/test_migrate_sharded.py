"""``hbdns migrate`` (step ``sharded``) on a database written by the version before sharding (issue 16).

The old data is made as the old code made it: its beat and record scripts, kept verbatim in
tests/data/unsharded_v1 (hbdns/lua at d0e5244), run with their call layout on the old key names
(:mod:`hbdns.keys_unsharded`) on a real redis-server, and the old store's writes
(tests/support/unsharded.py). The notifier's and the flusher's consumer groups are made with some
entries acknowledged, some pending, some not yet delivered. After the migration the new schema's
names (:mod:`hbdns.keys`) hold every account, TTL, deadline, name and event, each group gets
exactly what it had not acknowledged, zone serials are unchanged (:mod:`hbdns.zone_serial`),
nothing of the old schema is left, and a second run (or a run after one interrupted halfway)
changes nothing more.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
import redis

from admin.cli.main import main as cli
from admin.cli.output import EXIT_REFUSED
from hbdns import keys, migrations, scripts, zone_serial
from hbdns import keys_unsharded as old
from hbdns.migrations import sharded
from hbdns.model import Account
from hbdns.store import Store
from tests.support import unsharded

ZONE = "old.test"
NOTIFIER, FLUSH = "hbdns-notifier", "hbdns-flush"
OLD_BEAT = unsharded.old_script(unsharded.V1, "beat")
_last = 0


def old_account(store: Store, r: redis.Redis, name: str, **kw: Any) -> Account:
    return unsharded.add_account(store, f"{name}.{ZONE}", **kw)


def old_beat(r: redis.Redis, a: Account, ttl_ms: int, ipv4: str = "", ipv6: str = "", offline: bool = False) -> None:
    """One beat as the old listener sent it: KEYS deadlines events stats ingest zone, then acct
    alive4 alive6 alive_legacy log; ARGV skew maxlen logcap source nzones zone, then id ipv4 ipv6
    counter ttl offline fp fams age."""
    global _last
    _last = max(_last + 1, time.time_ns() // 1_000_000)
    k = [old.deadlines(), old.events(), old.stats(), old.ingest(), keys.zone(ZONE), old.account(a.id),
         old.alive(a.id, 4), old.alive(a.id, 6), old.alive_legacy(a.id), old.account_log(a.id)]  # fmt: skip
    args = ["300000", "1000", "200", "beat", "1", ZONE, str(a.id), ipv4, ipv6, str(_last), str(ttl_ms),
            "1" if offline else "0", "", "", ""]  # fmt: skip
    OLD_BEAT(r, k, args)


def _value(r: redis.Redis, k: str, kind: str) -> Any:
    if kind == "string":
        return r.get(k)
    if kind == "hash":
        return r.hgetall(k)
    if kind == "list":
        return r.lrange(k, 0, -1)
    if kind == "set":
        return sorted(r.smembers(k))
    if kind == "zset":
        return r.zrange(k, 0, -1, withscores=True)
    groups = [(g["name"], g["last-delivered-id"], g["pending"]) for g in r.xinfo_groups(k)]
    return r.xrange(k), groups


def snapshot(r: redis.Redis) -> dict[str, Any]:
    """Every key's type and value (TTLs as "has one"): what a no-op run must leave as it was."""
    out: dict[str, Any] = {}
    for k in sorted(r.scan_iter(count=1000)):
        if k != keys.migrations():
            kind = r.type(k)
            out[k] = (kind, _value(r, k, kind), r.pttl(k) > 0)
    return out


def old_database(store: Store, r: redis.Redis) -> dict[str, Any]:
    """A database of the version before sharding, and what is to survive of it."""
    unsharded.add_zone(store, ZONE)
    stray = [k for k in r.scan_iter() if k not in (keys.zone(ZONE), keys.zones())]
    if stray:  # only the zone's keys: no schema change there
        r.delete(*stray)
    r.hset(keys.zone(ZONE), "serial", 41)
    accts = [old_account(store, r, n, aliases=[f"{n}-alias.{ZONE}"] if n == "a" else ()) for n in "abcdefghijklmnopqrs"]
    live = accts[:12]
    for n, a in enumerate(live):
        old_beat(r, a, 600_000 + n * 1000, ipv4=f"203.0.113.{n + 1}", ipv6="2001:db8::1" if n % 3 == 0 else "")
    neutral = accts[12:15]
    for a in neutral:
        old_beat(r, a, 600_000, ipv4="203.0.113.99")
        old_beat(r, a, 600_000, offline=True)
    legacy = accts[15]  # an account the per-family step left a legacy key to (a rolling upgrade's)
    r.set(old.alive_legacy(legacy.id), "1", px=300_000)
    r.hset(old.sms_outage(neutral[0].id), "+15550001", "1700000000000")
    r.hset(old.notify_outage(neutral[0].id), "email:abc", "1700000000000 sent")
    r.hset(old.acme_credentials(live[0].id), live[0].fqdn, "cred1")
    r.hset(old.ingest(), mapping={"mark": str(int(time.time() * 1000)), "gap_ms": "3000", "gaps": "[[1,2],[5,9]]"})
    r.hset(old.events_trim(), mapping={"removed": "7", "capped": "2", "unread": "1", "unread:hbdns-notifier": "1",
                                      "last_cap_ms": "1700000000001"})  # fmt: skip
    r.hset(old.mass_events(), "system", json.dumps({"scope": "system", "started_ms": 1}))

    # the stream's consumers: the flusher saw everything so far; the notifier read a part, acked a
    # part of that; then more events, and a mass outage, nobody has read
    r.xgroup_create(old.events(), NOTIFIER, id="0")
    r.xgroup_create(old.events(), FLUSH, id="$")
    ids = [e for e, _ in r.xrange(old.events())]
    got = r.xreadgroup(NOTIFIER, "n1", {old.events(): ">"}, count=len(ids) - 10)
    read = [e for e, _ in got[0][1]]
    r.xack(old.events(), NOTIFIER, *read[: len(read) // 2])
    pending = read[len(read) // 2 :]
    old_beat(r, live[1], 600_000, ipv4="203.0.113.200")  # ip_changed
    old_beat(r, accts[18], 600_000, ipv4="203.0.113.201")  # recovered
    r.xadd(old.events(), {"type": "mass_started", "account": "0", "fqdn": "", "at": "1", "scope": "system"})
    flush_new = [e for e, _ in r.xrange(old.events(), min="(" + ids[-1])]
    flushed = r.xreadgroup(FLUSH, "f1", {old.events(): ">"}, count=1)[0][1][0][0]  # the flusher: one pending
    unread = [e for e in ids[len(read) :]] + flush_new
    return {
        "accounts": accts, "live": [*live, accts[18]], "neutral": neutral, "legacy": legacy,
        "pending": pending, "unread": unread, "flush_pending": flushed, "flush_new": flush_new[1:],
        "hashes": {a.id: r.hgetall(old.account(a.id)) for a in accts},
        "pttl": {(a.id, f): r.pttl(old.alive(a.id, f)) for a in accts for f in (4, 6)},
        "legacy_pttl": r.pttl(old.alive_legacy(legacy.id)),
        "deadlines": dict(r.zrange(old.deadlines(), 0, -1, withscores=True)),
        "logs": {a.id: r.lrange(old.account_log(a.id), 0, -1) for a in accts},
        "names": r.hgetall(keys.names()),
        "events": {e: f for e, f in r.xrange(old.events())},
        "serial": zone_serial.read(r, ZONE),
    }  # fmt: skip


def delivered(
    r: redis.Redis, group: str, consumer: str, skip: int | None = None
) -> tuple[list[tuple[str, str, int]], list[str]]:
    """Over every shard stream: the group's pending entries (legacy id, consumer, deliveries), and
    the legacy ids of what it reads next (as ``consumer``)."""
    pending: list[tuple[str, str, int]] = []
    fresh: list[str] = []
    for s in keys.all_shards():
        stream = keys.events(s)
        if not r.exists(stream) or s == skip:
            continue
        for p in r.xpending_range(stream, group, "-", "+", 1000):
            for _e, f in r.xrange(stream, p["message_id"], p["message_id"]):
                pending.append((f["legacy_id"], p["consumer"], p["times_delivered"]))
        for _stream, entries in r.xreadgroup(group, consumer, {stream: ">"}) or []:
            fresh += [f["legacy_id"] for _e, f in entries]
    return sorted(pending), sorted(fresh)


def test_an_unsharded_database_upgrades_without_losing_anything(store: Store, real_redis: redis.Redis) -> None:
    r = real_redis
    was = old_database(store, r)
    accts = was["accounts"]
    assert len(was["pending"]) >= 5 and len(was["unread"]) >= 10 and len(was["flush_new"]) >= 2
    assert {was["hashes"][a.id]["state"] for a in was["neutral"]} == {"neutral"}
    assert {was["hashes"][a.id]["state"] for a in was["live"]} == {"live"}
    before = snapshot(r)
    dry = {s.name: n for s, n in migrations.run(r, dry_run=True)}
    assert dry["sharded"] >= len(accts) and snapshot(r) == before  # a dry run counts and writes nothing

    results = {s.name: n for s, n in migrations.run(r)}
    assert results["sharded"] >= len(accts) + len(was["events"])

    # every account: hash, liveness TTLs (the copies run out with the old keys), deadlines, log, names
    for a in accts:
        assert r.hgetall(keys.account(a.id)) == was["hashes"][a.id]
        for f in (4, 6):
            then, now = was["pttl"][(a.id, f)], r.pttl(keys.alive(a.id, f))
            if a.id != was["legacy"].id:
                assert (then < 0 and now == -2) or 0 < then - now < 30_000, (a.id, f, then, now)
        assert r.lrange(keys.account_log(a.id), 0, -1) == was["logs"][a.id]
        assert keys.parse_alive(keys.alive(a.id, 4)) == (a.id, 4)
    assert 0 < was["legacy_pttl"] - r.pttl(keys.alive_legacy(was["legacy"].id)) < 30_000
    new_deadlines: dict[str, float] = {}
    for s in keys.all_shards():
        for m, score in r.zrange(keys.deadlines(s), 0, -1, withscores=True):
            assert keys.shard_of(keys.parse_deadline_member(m)[0]) == s
            new_deadlines[m] = score
    legacy = was["legacy"]
    assert {m: v for m, v in new_deadlines.items() if not m.startswith(f"{legacy.id}:")} == was["deadlines"]
    for name, account_id in was["names"].items():
        assert r.hget(keys.shard_names(keys.shard_of(int(account_id))), name) == account_id
    assert r.hgetall(keys.names()) == was["names"]  # the discovery index stays
    assert sum(int(r.hget(keys.stats(s), "live") or 0) for s in keys.all_shards()) == len(was["live"])
    assert all(r.hexists(keys.stats(s), "live") for s in keys.all_shards())
    n0 = was["neutral"][0]
    assert r.hgetall(keys.sms_outage(n0.id)) == {"+15550001": "1700000000000"}
    assert r.hget(keys.notify_outage(n0.id), "email:abc") == "1700000000000 sent"
    assert r.hgetall(keys.acme_credentials(was["live"][0].id)) == {was["live"][0].fqdn: "cred1"}
    assert zone_serial.read(r, ZONE) == was["serial"]
    for s in keys.all_shards():
        assert r.hget(keys.ingest(s), "gaps") == "[[1,2],[5,9]]" and r.hget(keys.ingest(s), "gap_ms") == "3000"
    assert r.hgetall(keys.events_trim(0)) == {"removed": "7", "capped": "2", "unread": "1",
                                              "unread:hbdns-notifier": "1", "last_cap_ms": "1700000000001"}  # fmt: skip
    assert json.loads(r.hget(keys.mass_events(), "system"))["started_ms"] == 1

    # the events: the notifier's pending ones pending with n1, its unread ones delivered next, once;
    # the flusher's one pending, its acked ones not again; each in its account's shard
    copies = {}
    for s in keys.all_shards():
        for _e, f in r.xrange(keys.events(s)) if r.exists(keys.events(s)) else []:
            account = int(f["account"])
            assert s == (keys.shard_of(account) if account else keys.MASS_SHARD)
            copies[f["legacy_id"]] = {k: v for k, v in f.items() if k != "legacy_id"}
    assert copies == was["events"]  # every entry, acknowledged ones too (a dead letter's event, say)
    pending, fresh = delivered(r, NOTIFIER, "n2")
    assert pending == sorted((i, "n1", 1) for i in was["pending"])
    assert fresh == sorted(was["unread"])
    pending, fresh = delivered(r, FLUSH, "f2")
    assert pending == [(was["flush_pending"], "f1", 1)] and fresh == sorted(was["flush_new"])

    # nothing of the old schema is left; a second run changes nothing
    assert not [k for k in r.scan_iter() if "{a:" in k]
    assert not r.exists(old.deadlines(), old.events(), old.stats(), old.ingest(), old.events_trim(),
                        old.mass_events(), keys.migrate_events_map())  # fmt: skip
    after = snapshot(r)
    again = {s.name: n for s, n in migrations.run(r)}
    assert not any(again.values()), again
    assert snapshot(r) == after


def test_a_run_interrupted_halfway_completes(
    store: Store, real_redis: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    r = real_redis
    was = old_database(store, r)
    for step in migrations.STEPS[:-1]:
        step.apply(r)
    calls = {"n": 0}
    real = scripts.MIGRATE_SHARDED

    def flaky(client: Any, ks: Any, args: Any) -> Any:
        if args[0] == "events":
            calls["n"] += 1
            if calls["n"] == 3:
                raise redis.ConnectionError("gone")
        return real(client, ks, args)

    monkeypatch.setattr(sharded, "CHUNK", 3)
    monkeypatch.setattr(scripts, "MIGRATE_SHARDED", flaky)
    with pytest.raises(redis.ConnectionError):
        sharded.apply(r)
    assert r.exists(old.events()) and r.hlen(keys.migrate_events_map()) == 6  # two chunks went over
    assert sharded.apply(r) > 0
    copies = [f["legacy_id"] for s in keys.all_shards() for _e, f in r.xrange(keys.events(s))]
    assert sorted(copies) == sorted(was["events"])  # each once
    assert all(r.exists(keys.account(a.id)) and not r.exists(old.account(a.id)) for a in was["accounts"])
    assert sharded.apply(r) == 0


def test_an_interrupted_copy_is_finished_not_redone(store: Store, real_redis: redis.Redis) -> None:
    r = real_redis
    was = old_database(store, r)
    first = was["accounts"][0]
    names = sharded._names_by_id(r)
    assert sharded._accounts(r, "copy", [first.id], names, "0") == [first.id]
    r.hset(keys.account(first.id), "note", "written by the new version meanwhile")
    assert sharded._accounts(r, "copy", [first.id], names, "0") == []  # copied once: not again
    assert sharded.apply(r) > 0
    assert r.hget(keys.account(first.id), "note") == "written by the new version meanwhile"
    assert not r.exists(old.account(first.id))


def test_the_progress_key_is_pinned() -> None:
    """The one key the step adds (a change to it is a data migration: an interrupted run resumes by it)."""
    assert keys.migrate_events_map() == "hbdns:migrate:sharded:events"


def test_a_new_database_gets_its_live_counts_and_nothing_else(
    store: Store, real_redis: redis.Redis, capsys: pytest.CaptureFixture[str]
) -> None:
    r = real_redis
    assert cli(["--json", "migrate", "--dry-run"], redis_client=r) == 0
    assert json.loads(capsys.readouterr().out)["sharded"] == keys.SHARDS
    results = {s.name: n for s, n in migrations.run(r)}
    assert results == {s.name: 0 for s in migrations.STEPS} | {"sharded": keys.SHARDS}
    assert all(r.hget(keys.stats(s), "live") == "0" for s in keys.all_shards())
    assert not r.exists(old.stats())
    assert not any({s.name: n for s, n in migrations.run(r)}.values())
    assert cli(["--json", "migrate", "--status"], redis_client=r) == 0
    assert json.loads(capsys.readouterr().out)["sharded"]["converted"] == 0


def test_new_entries_already_on_a_shard_stream_lose_nothing(store: Store, real_redis: redis.Redis) -> None:
    """The wrong order (a new writer and notifier ran before the migration): the group on that shard
    stream has not read it to the end, so its state cannot be kept exactly; every copied entry is
    delivered to it as new (the acknowledged ones once more: the sent markers make that harmless)
    and the new entry is not skipped."""
    r = real_redis
    was = old_database(store, r)
    account = int(was["events"][was["unread"][0]]["account"])  # a shard with entries owed
    shard = keys.shard_of(account)
    r.xgroup_create(keys.events(shard), NOTIFIER, id="0", mkstream=True)
    early = r.xadd(keys.events(shard), {"type": "created", "account": str(account)})
    migrations.run(r)
    copied = {f["legacy_id"] for _e, f in r.xrange(keys.events(shard)) if "legacy_id" in f}
    got = r.xreadgroup(NOTIFIER, "n2", {keys.events(shard): ">"}, count=10_000)[0][1]
    assert early in [e for e, _f in got]
    assert {f["legacy_id"] for _e, f in got if "legacy_id" in f} == copied
    owed = set(was["pending"]) | set(was["unread"])
    assert owed & copied and owed & copied <= {f["legacy_id"] for _e, f in got if "legacy_id" in f}
    pending, fresh = delivered(r, NOTIFIER, "n3", skip=shard)  # the other shards: exact as ever
    assert {i for i, _c, _n in pending} | set(fresh) == owed - copied


def test_a_cluster_refuses_an_unsharded_database(
    real_redis: redis.Redis, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """On a Redis Cluster the copy across slots is impossible: a clear refusal, nothing written.
    (The real cluster is the cluster helper's fixture; here the check that routes it.)"""
    r = real_redis
    r.sadd(keys.accounts(), 1)
    r.hset(old.account(1), "fqdn", "a.old.test")
    monkeypatch.setattr(sharded, "is_cluster", lambda _r: True)
    before = snapshot(r)
    with pytest.raises(sharded.Refused, match="standalone"):
        migrations.run(r)
    assert cli(["migrate"], redis_client=r) == EXIT_REFUSED
    assert "unsharded schema" in capsys.readouterr().err
    assert snapshot(r) == before
    r.delete(old.account(1))
    r.hset(keys.account(1), mapping={"fqdn": "a.old.test", "state": "live"})
    assert {s.name: n for s, n in migrations.run(r)}["sharded"] == keys.SHARDS
    assert r.hget(keys.stats(1), "live") == "1"
