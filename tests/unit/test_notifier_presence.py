"""Notifier liveness: who counts as dead, and the guards against calling a live one dead (fakeredis, hand clock)."""

from __future__ import annotations

import pytest
import redis

from hbdns import config, keys
from notifier.consumer import GROUP
from notifier.main import Notifier
from notifier.presence import Presence
from tests.support.clock import Clock
from tests.support.servers import wait_for


def test_an_owner_is_dead_once_its_deadline_passed(fake_redis: redis.Redis) -> None:
    clock = Clock(1000.0)
    a, b = (Presence(fake_redis, name, ttl=5, clock=clock) for name in ("a", "b"))
    a.join()
    b.join()
    b.beat()
    assert b.dead_names() == frozenset() and a.token in b.live()
    clock.now += 4
    b.beat()
    assert b.dead_names() == frozenset()  # a's last refresh is 4 s old: alive
    clock.now += 2
    b.beat()
    assert b.dead_names() == {"a"} and a.token not in b.live()


def test_a_restart_under_the_same_name_ends_the_previous_incarnation_at_once(fake_redis: redis.Redis) -> None:
    clock = Clock(1000.0)
    old, watcher = Presence(fake_redis, "a", ttl=5, clock=clock), Presence(fake_redis, "w", ttl=5, clock=clock)
    old.join()
    new = Presence(fake_redis, "a", ttl=5, clock=clock)
    new.join()
    watcher.join()
    watcher.beat()
    live = watcher.live()
    assert new.token in live and old.token not in live  # the old one's in-flight sends are free now
    assert watcher.dead_names() == frozenset()  # the name itself lives on


def test_judging_waits_for_one_full_liveness_after_joining_or_a_redis_error(fake_redis: redis.Redis) -> None:
    clock = Clock(1000.0)
    p = Presence(fake_redis, "a", ttl=5, clock=clock)
    p.join()
    assert not p.may_judge()
    clock.now += 5
    assert p.may_judge()

    class Down(redis.Redis):
        def pipeline(self, *a: object, **kw: object) -> redis.client.Pipeline:
            raise redis.ConnectionError("down")

    p.r = Down()
    with pytest.raises(redis.ConnectionError):
        p.beat()
    assert not p.may_judge()  # everyone's deadline passed during the outage: do not take over yet
    p.r = fake_redis
    p.beat()
    clock.now += 4.9
    assert not p.may_judge()
    clock.now += 0.2
    assert p.may_judge()


def test_a_dead_consumers_entries_are_taken_over_one_that_never_registered_is_left_alone(
    fake_redis: redis.Redis,
) -> None:
    clock = Clock(1000.0)
    n = Notifier(config.load({}), r=fake_redis, clock=clock, transports={})
    try:
        n.consumer.ensure_group()
        fake_redis.xadd(keys.events(1), {"type": "ip_changed", "account": "1", "fqdn": "h.example.test", "at": "1"})
        fake_redis.xreadgroup(GROUP, "old-version", {keys.events(1): ">"})  # read, never acknowledged
        n.join()
        clock.now += 5
        n.presence.beat()
        assert n.consumer.takeover_step(n.presence) == 0  # an older notifier, maybe mid-send: not judged
        fake_redis.zadd(keys.notify_owners(), {"old-version/1234": clock.now - 1})  # it did register, and died
        n.presence.beat()
        # taken once idle for TAKEOVER_MIN_IDLE_MS (real time), so two notifiers do not both take it
        assert wait_for(lambda: n.consumer.takeover_step(n.presence), 5, what="takeover") == 1
        [pending] = fake_redis.xpending_range(keys.events(1), GROUP, min="-", max="+", count=10)
        assert pending["consumer"] == n.name
    finally:
        n.stop()


def test_a_liveness_shorter_than_two_refreshes_is_refused() -> None:
    with pytest.raises(ValueError, match="HBDNS_NOTIFY_LIVENESS"):
        Notifier(config.load({"HBDNS_NOTIFY_LIVENESS": "1.5"}))
