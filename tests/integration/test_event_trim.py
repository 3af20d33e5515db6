"""Trimming the events stream on a real redis-server (issue 20): writers never cap it; the trim step
removes only what every consumer group (whatever its name) delivered and acknowledged; the hard cap
removes the oldest anyway and counts each entry some group had not read. Each shard has its stream
(issue 16); most tests here use one shard's, the trim step and status cover all
(tests/integration/test_sweeper_shards.py has several at once)."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
import redis

from admin.cli.main import main
from hbdns import config, keys, migrations
from hbdns.event_trim import EventTrimmer, stream_status
from hbdns.liveness import Liveness
from sweeper.main import SweeperService
from tests.integration.test_notifier_migrate import load
from tests.support.servers import wait_for
from tests.support.services import env_for
from tests.support.sinks import HttpSink

SHARD = 3
STREAM = keys.events(SHARD)
NOTIFIER, FLUSH = "hbdns-notifier", "hbdns-mta-flush"  # the names do not matter: every group counts


def _add(r: redis.Redis, n: int, start: int = 0) -> None:
    pipe = r.pipeline(transaction=False)
    for i in range(start, start + n):
        pipe.xadd(STREAM, {"type": "ip_changed", "account": str(i), "fqdn": f"a{i}.example.test", "at": "1"})
    pipe.execute()


def _read(r: redis.Redis, group: str, count: int, *, ack: bool = True) -> list[tuple[str, dict[str, Any]]]:
    """Up to ``count`` new entries for ``group`` (acknowledged unless ``ack`` is false)."""
    reply: Any = r.xreadgroup(group, "c", {STREAM: ">"}, count=count) or []
    entries = [e for _, items in reply for e in items]
    if entries and ack:
        r.xack(STREAM, group, *[i for i, _ in entries])
    return entries


def _total(r: redis.Redis) -> int:
    return sum(int(r.xlen(keys.events(s))) for s in keys.all_shards())


def test_writers_do_not_cap_the_stream(real_redis: redis.Redis) -> None:
    lv = Liveness(real_redis, events_maxlen=10)
    for i in range(50):
        lv.record(keys.SHARDS * i + SHARD, "example.test", f"a{i}.example.test", "created")
    assert real_redis.xlen(STREAM) == 50 and _total(real_redis) == 50


def test_a_group_lagging_by_250000_while_300000_are_added_loses_none(real_redis: redis.Redis) -> None:
    for g in (NOTIFIER, FLUSH):
        real_redis.xgroup_create(STREAM, g, id="0", mkstream=True)
    trimmer = EventTrimmer(real_redis, keep=1000, cap=1_000_000)
    lagging: list[str] = []
    added = 0
    while added < 300_000:
        _add(real_redis, 10_000, added)
        added += 10_000
        while _read(real_redis, FLUSH, 10_000):  # the flush consumer keeps up
            pass
        if added <= 50_000:  # the notifier keeps up for the first 50,000, then stops reading
            while got := _read(real_redis, NOTIFIER, 10_000):
                lagging += [f["account"] for _, f in got]
        trimmer.step()
    lag = {g["name"]: g["lag"] for g in real_redis.xinfo_groups(STREAM)}
    assert lag == {NOTIFIER: 250_000, FLUSH: 0}
    assert real_redis.xlen(STREAM) == 250_000  # what the notifier needs: the read ones went
    while got := _read(real_redis, NOTIFIER, 10_000):  # it catches up
        lagging += [f["account"] for _, f in got]
    assert len(lagging) == 300_000 and sorted(map(int, lagging)) == list(range(300_000))
    assert trimmer.step().removed == 249_000 and real_redis.xlen(STREAM) == 1000
    st = stream_status(real_redis)
    assert st["capped"] == 0 and st["unread"] == 0 and st["removed"] == 299_000


def test_pending_entries_are_kept_until_acknowledged(real_redis: redis.Redis) -> None:
    real_redis.xgroup_create(STREAM, NOTIFIER, id="0", mkstream=True)
    _add(real_redis, 100)
    held = _read(real_redis, NOTIFIER, 10, ack=False)  # a notifier that died holding 10 entries
    _read(real_redis, NOTIFIER, 1000)
    trimmer = EventTrimmer(real_redis, keep=0, cap=1000)
    assert trimmer.step().removed == 0  # the oldest entry is still pending
    real_redis.xack(STREAM, NOTIFIER, *[i for i, _ in held[:5]])
    assert trimmer.step().removed == 5
    first = real_redis.xrange(STREAM, count=1)[0][0]
    assert first == held[5][0]


def test_without_any_group_every_entry_is_kept_until_the_cap(real_redis: redis.Redis) -> None:
    _add(real_redis, 300)
    res = EventTrimmer(real_redis, keep=10, cap=1000).step()
    assert res.removed == 0 and real_redis.xlen(STREAM) == 300  # the first notifier reads from 0


def test_the_hard_cap_removes_anyway_counts_the_unread_and_alarms(
    real_redis: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    for g in (NOTIFIER, FLUSH):
        real_redis.xgroup_create(STREAM, g, id="0", mkstream=True)
    _add(real_redis, 20)
    _read(real_redis, NOTIFIER, 10)  # read and acknowledged
    _read(real_redis, NOTIFIER, 10, ack=False)  # read, still pending
    _add(real_redis, 480, 20)
    _read(real_redis, FLUSH, 1000)  # everything
    with caplog.at_level(logging.ERROR, "hbdns.event_trim"):
        res = EventTrimmer(real_redis, keep=10, cap=100, chunk=150).step()
    # the 10 both groups acknowledged go first; then 390 at the cap, none of which the notifier had
    # acknowledged (10 pending + 380 never delivered)
    assert (res.removed, res.capped, res.unread, res.length) == (10, 390, 390, 100)
    st = stream_status(real_redis)
    assert (st["capped"], st["unread"], st["unread_by_group"]) == (390, 390, {NOTIFIER: 390})
    assert st["last_unread_ms"] > 0 and {g["name"] for g in st["groups"]} == {NOTIFIER, FLUSH}
    [alarm] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert "hard cap" in alarm.getMessage() and alarm.__dict__["dropped_unread"] == 390


def test_a_cap_below_the_kept_length_is_refused() -> None:
    with pytest.raises(config.ConfigError, match="HBDNS_EVENTS_HARD_CAP"):
        config.load({"HBDNS_EVENTS_MAXLEN": "1000", "HBDNS_EVENTS_HARD_CAP": "999"})


def test_the_sweeper_trims_in_its_own_loop(real_redis: redis.Redis, redis_url: str) -> None:
    # 80 for all shards: 5 in each
    settings = config.load(env_for(redis_url, HBDNS_EVENTS_MAXLEN="80", HBDNS_EVENTS_TRIM_INTERVAL="0.1"))
    real_redis.xgroup_create(STREAM, NOTIFIER, id="0", mkstream=True)
    _add(real_redis, 50)
    service = SweeperService(settings, r=real_redis).start()
    try:
        assert "trim" in service.loops.names
        _read(real_redis, NOTIFIER, 30)
        wait_for(lambda: real_redis.xlen(STREAM) == 20, 10, what="the read entries trimmed, the unread kept")
        _read(real_redis, NOTIFIER, 30)
        wait_for(lambda: real_redis.xlen(STREAM) == 5, 10, what="the rest trimmed")
    finally:
        service.stop()


def test_hbdns_status_shows_the_lag_and_the_alarm(real_redis: redis.Redis, capsys: pytest.CaptureFixture[str]) -> None:
    real_redis.xgroup_create(STREAM, NOTIFIER, id="0", mkstream=True)
    _add(real_redis, 30)
    assert main(["status"], redis_client=real_redis) == 0
    assert f"events stream: 30 entries ({NOTIFIER} lag 30, 0 pending)" in capsys.readouterr().out
    EventTrimmer(real_redis, keep=5, cap=10).step()
    assert main(["status"], redis_client=real_redis) == 0
    out = capsys.readouterr().out
    assert "hard cap: 20 entries removed" in out
    assert f"ALARM: 20 events removed before every consumer read them ({NOTIFIER} 20)" in out
    assert main(["--json", "status"], redis_client=real_redis) == 0
    assert json.loads(capsys.readouterr().out)["events"]["unread"] == 20


def test_a_database_of_the_version_before_keeps_every_unread_entry(real_redis: redis.Redis, http: HttpSink) -> None:
    """Upgrade: the stream and group the notifier before sharding wrote (the v1 fixture, whose
    writers capped at write time), moved by ``hbdns migrate``, then events of this version's
    writers, trimmed to nothing kept: what the group read goes, every entry it has not read stays."""
    load(real_redis, http)
    migrations.run(real_redis)
    lv = Liveness(real_redis)
    new = {f"n{i}.example.test" for i in range(5)}
    for i, fqdn in enumerate(sorted(new)):
        lv.record(900 + i, "example.test", fqdn, "created")
    for s in keys.all_shards():  # the notifier makes its group on each shard's stream as it starts
        try:
            real_redis.xgroup_create(keys.events(s), NOTIFIER, id="0", mkstream=True)
        except redis.ResponseError as exc:
            assert "BUSYGROUP" in str(exc)
    res = EventTrimmer(real_redis, keep=0, cap=1_000_000).step()
    assert res.unread == 0 and res.length == _total(real_redis)
    unread: list[str] = []
    for s in keys.all_shards():
        reply: Any = real_redis.xreadgroup(NOTIFIER, "c", {keys.events(s): ">"}) or []
        unread += [f["fqdn"] for _, items in reply for _, f in items]
    assert len(unread) == res.length  # every entry left is one the group still needed
    assert new <= set(unread)
