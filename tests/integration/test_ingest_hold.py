"""The rules that keep our own ingest outages from becoming customers' outages, on a real redis-server
with a fast plan (window 0.6 s) and the listener's real ingest mark (heartbeat_listener.ingest): the
sweeper holds a deadline that fell in an outage until ingest was healthy for a whole window and then
records it at the deadline it had; a deadline after a healthy window is not held; a beat that came
before its deadline but is written late (a held beat, with its age) is no outage; with no listener
marking at all (not tracked) nothing changes."""

from __future__ import annotations

import json

import pytest
import redis

from admin.cli.main import main as cli
from hbdns import config, keys, scripts
from hbdns.liveness import BeatRequest
from hbdns.model import Account
from hbdns.store import Store
from heartbeat_listener.ingest import IngestMark
from tests.support import services
from tests.support.servers import wait_for

WINDOW = 600  # ms: test-fast, 3 x 0.2 s
GAP = 300  # ms of silence that is an ingest outage here


def redis_ms(r: redis.Redis) -> int:
    sec, usec = r.time()
    return int(sec) * 1000 + int(usec) // 1000


def fast_store(r: redis.Redis) -> Store:
    return Store(r, config.load({"HBDNS_PLANS": services.PLANS}))


def marker(r: redis.Redis) -> IngestMark:
    return IngestMark(r, lambda: True, keep_ms=60_000, every=0.05, gap_ms=GAP)


def kinds(r: redis.Redis, a: Account) -> list[str]:
    """The account's liveness transitions (its address being recorded aside)."""
    return [e.type for e in services.events(r, account=a.id) if e.type != "ip_changed"]


def gone_and_due(r: redis.Redis, a: Account) -> bool:
    d = r.zscore(keys.deadlines(keys.shard_of(a.id)), keys.deadline_member(a.id, 4))
    return not r.exists(keys.alive(a.id, 4)) and d is not None and d <= redis_ms(r)


def silence(r: redis.Redis) -> None:
    """Wait until the listeners' silence is an ingest outage (no mark for longer than the gap; the
    listeners mark every shard's copy, shard 0's stands for all)."""
    wait_for(lambda: redis_ms(r) > int(r.hget(keys.ingest(0), "mark")) + GAP, 5, what="an ingest outage")


def held_account(r: redis.Redis, store: Store, mark: IngestMark, name: str) -> tuple[Account, int]:
    """An account whose deadline fell while the listeners were silent, held by the sweeper; and
    that deadline."""
    a = services.add_account(store, name)
    assert mark.step()
    services.beat(store, a)
    wait_for(lambda: gone_and_due(r, a), 5, what="deadline passed")
    deadline = int(r.zscore(keys.deadlines(keys.shard_of(a.id)), keys.deadline_member(a.id, 4)))
    silence(r)
    assert store.liveness.sweep() == [] and kinds(r, a) == ["created", "recovered"]
    assert r.hget(keys.account(a.id), "held4") == str(deadline)  # kept; the member moved on
    assert int(r.zscore(keys.deadlines(keys.shard_of(a.id)), keys.deadline_member(a.id, 4))) > deadline
    return a, deadline


def healthy_again(mark: IngestMark) -> None:
    mark._next = 0.0
    assert mark.step()  # the outage is closed


def test_a_deadline_in_an_outage_is_held_for_a_healthy_window_then_recorded_at_its_time(
    real_redis: redis.Redis,
) -> None:
    store, mark = fast_store(real_redis), marker(real_redis)
    # the listeners stop marking (ingest down); the account's deadline falls in the silence
    a, deadline = held_account(real_redis, store, mark, "held")
    healthy_again(mark)
    back = int(real_redis.hget(keys.ingest(0), "mark"))

    def swept() -> bool:
        mark.step()  # healthy: marks keep coming
        return bool(store.liveness.sweep())

    wait_for(swept, 5, what="the held deadline acted on")
    assert redis_ms(real_redis) >= back + WINDOW  # not before a whole healthy window
    [event] = services.events(real_redis, "neutralized", a.id)
    assert event.at_ms == deadline  # recorded at the deadline it had, once
    assert not real_redis.hexists(keys.account(a.id), "held4")


def test_a_deadline_after_a_healthy_window_is_not_held(real_redis: redis.Redis) -> None:
    store, mark = fast_store(real_redis), marker(real_redis)
    a = services.add_account(store, "real")
    assert mark.step()
    silence(real_redis)
    healthy_again(mark)
    assert real_redis.hget(keys.ingest(0), "gaps")  # an outage, closed
    services.beat(store, a)  # after it: this window was healthy all along

    def swept() -> bool:
        mark.step()
        return bool(store.liveness.sweep())

    wait_for(swept, 5, what="neutralized")
    assert kinds(real_redis, a) == ["created", "recovered", "neutralized"]


def test_beats_back_after_a_listener_outage_record_nothing(real_redis: redis.Redis) -> None:
    """Redis stayed up, every listener was down: the deadline is held, and the next beat (with
    ingest back) keeps the account live with no neutralized/recovered pair."""
    store, mark = fast_store(real_redis), marker(real_redis)
    a, _ = held_account(real_redis, store, mark, "quiet")
    healthy_again(mark)
    assert services.beat(store, a).changed  # DNS answered neutral meanwhile: purge
    assert real_redis.exists(keys.alive(a.id, 4)) and not real_redis.hexists(keys.account(a.id), "held4")
    assert kinds(real_redis, a) == ["created", "recovered"]


def test_an_offline_beat_during_a_hold_neutralizes_and_ends_it(real_redis: redis.Redis) -> None:
    store, mark = fast_store(real_redis), marker(real_redis)
    a, _ = held_account(real_redis, store, mark, "bye")
    store.liveness.beat(BeatRequest(a.id, a.zone, WINDOW, counter=redis_ms(real_redis), offline=True))
    assert kinds(real_redis, a) == ["created", "recovered", "neutralized"]  # the customer said so: at once
    assert not real_redis.hexists(keys.account(a.id), "held4")
    assert real_redis.zscore(keys.deadlines(keys.shard_of(a.id)), keys.deadline_member(a.id, 4)) is None


def test_a_beat_that_came_before_its_deadline_is_no_outage_however_late_it_is_written(
    real_redis: redis.Redis,
) -> None:
    store = fast_store(real_redis)  # no listener marks: ingest is not tracked, only the beat's age counts
    late, missed = services.add_account(store, "late"), services.add_account(store, "missed")
    lv = store.liveness
    for a in (late, missed):
        services.beat(store, a)
    wait_for(lambda: gone_and_due(real_redis, late) and gone_and_due(real_redis, missed), 5, what="deadlines passed")
    d = int(real_redis.zscore(keys.deadlines(keys.shard_of(late.id)), keys.deadline_member(late.id, 4)))

    def write(a: Account, received: int) -> None:
        req = BeatRequest(a.id, a.zone, WINDOW, ipv4="198.51.100.7", counter=redis_ms(real_redis))
        k, args = lv.beat_argv([req], ages=[max(1, redis_ms(real_redis) - received)])
        scripts.BEAT(real_redis, k, args)

    write(late, d - 100)  # received 100 ms before its deadline, written only now
    write(missed, redis_ms(real_redis))  # received now, after the deadline: a real outage
    assert kinds(real_redis, late) == ["created", "recovered"]
    assert kinds(real_redis, missed) == ["created", "recovered", "neutralized", "recovered"]
    # the late beat counts from when it came: its account stays live only that long
    assert real_redis.pttl(keys.alive(late.id, 4)) <= WINDOW - 100


def test_without_ingest_marks_nothing_is_held(real_redis: redis.Redis) -> None:
    store = fast_store(real_redis)
    a = services.add_account(store, "plain")
    services.beat(store, a)
    wait_for(lambda: gone_and_due(real_redis, a), 5, what="deadline passed")
    assert [n.account_id for n in store.liveness.sweep()] == [a.id]


def test_hbdns_status_shows_ingest_health(real_redis: redis.Redis, capsys: pytest.CaptureFixture[str]) -> None:
    def status() -> tuple[str, dict[str, object]]:
        assert cli(["status"], redis_client=real_redis) == 0
        text = capsys.readouterr().out
        assert cli(["--json", "status"], redis_client=real_redis) == 0
        return text, json.loads(capsys.readouterr().out)["ingest"]

    text, data = status()
    assert "ingest: not tracked" in text and data == {"tracked": False}
    mark = marker(real_redis)
    assert mark.step()
    text, data = status()
    assert "ingest: healthy, last listener mark 0s ago" in text and data["down"] is False
    silence(real_redis)
    text, data = status()
    assert "ingest: DOWN" in text and "held" in text and data["down"] is True
    healthy_again(mark)
    text, data = status()
    assert "ingest: healthy" in text and "last outage" in text and len(data["outages"]) == 1  # type: ignore[arg-type]
