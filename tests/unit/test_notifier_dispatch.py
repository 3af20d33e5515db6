"""Idempotency, retries and dead letters of the dispatcher (pure logic: fakeredis and a scripted transport)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

import pytest
import redis

from hbdns import config, keys
from notifier.dispatch import DEAD, DEFERRED, DUPLICATE, RETRY, SENT, Dispatcher
from notifier.messages import Message
from notifier.transports import Transport, TransportError
from tests.support.clock import Clock


class Scripted(Transport):
    channel = "sms"

    def __init__(self, *errors: TransportError | None) -> None:
        self.errors = list(errors)
        self.calls: list[Message] = []

    def notify(self, message: Message) -> None:
        self.calls.append(message)
        err = self.errors.pop(0) if self.errors else None
        if err is not None:
            raise err


Factory = Callable[..., Dispatcher]
MSG = Message("sms", "+491701234567", "s", "t", 7, "h.example.test", "neutralized", "1-0")


@pytest.fixture
def clock() -> Clock:
    return Clock(1_000_000.0)


def make(r: redis.Redis, transport: Transport, clock: Clock, **env: str) -> Dispatcher:
    settings = config.load({"HBDNS_NOTIFY_BACKOFF": "2", "HBDNS_NOTIFY_MAX_ATTEMPTS": "3", **env})
    return Dispatcher(r, {"sms": transport}, settings, clock=clock)


@pytest.fixture
def dispatcher_factory(fake_redis: redis.Redis, clock: Clock) -> Iterator[Factory]:
    made: list[Dispatcher] = []

    def factory(transport: Transport, **env: str) -> Dispatcher:
        d = make(fake_redis, transport, clock, **env)
        made.append(d)
        return d

    yield factory
    for d in made:
        d.close()


def test_sent_once(dispatcher_factory: Factory, fake_redis: redis.Redis) -> None:
    t = Scripted()
    d = dispatcher_factory(t)
    assert d.send(MSG).status == SENT
    assert d.send(MSG).status == DUPLICATE
    assert len(t.calls) == 1
    assert fake_redis.get(keys.sent(MSG.key)) == "sent"
    assert 0 < fake_redis.ttl(keys.sent(MSG.key)) <= 604800


def test_transient_failures_back_off_exponentially_then_succeed(
    dispatcher_factory: Factory, fake_redis: redis.Redis, clock: Clock
) -> None:
    t = Scripted(TransportError("500"), TransportError("500"))
    d = dispatcher_factory(t)
    assert d.send(MSG).status == RETRY
    [(job, due)] = fake_redis.zrange(keys.notify_retry(), 0, -1, withscores=True)
    assert due == clock.now + 2 and json.loads(job)["attempt"] == 2
    assert d.retry_step() == 0  # not due yet
    clock.now += 2
    assert d.retry_step() == 1
    [(job, due)] = fake_redis.zrange(keys.notify_retry(), 0, -1, withscores=True)
    assert due == clock.now + 4 and json.loads(job)["attempt"] == 3
    clock.now += 4
    assert d.retry_step() == 1
    assert fake_redis.zcard(keys.notify_retry()) == 0
    assert len(t.calls) == 3 and fake_redis.get(keys.sent(MSG.key)) == "sent"
    assert fake_redis.llen(keys.dead_letters()) == 0


def test_permanent_failure_is_dead_lettered_once(
    dispatcher_factory: Factory, fake_redis: redis.Redis, clock: Clock
) -> None:
    t = Scripted(TransportError("HTTP 400 bad number", permanent=True))
    d = dispatcher_factory(t)
    out = d.send(MSG)
    assert out.status == DEAD and "400" in out.reason
    [entry] = [json.loads(x) for x in fake_redis.lrange(keys.dead_letters(), 0, -1)]
    assert entry == {
        "time": clock.now,
        "channel": "sms",
        "recipient": "+491701234567",
        "account": 7,
        "fqdn": "h.example.test",
        "event_type": "neutralized",
        "event_id": "1-0",
        "reason": "HTTP 400 bad number",
    }
    assert d.send(MSG).status == DUPLICATE  # a redelivered event does not start over
    assert len(t.calls) == 1 and fake_redis.zcard(keys.notify_retry()) == 0


def test_gives_up_after_max_attempts(dispatcher_factory: Factory, fake_redis: redis.Redis, clock: Clock) -> None:
    t = Scripted(*[TransportError("timeout")] * 5)
    d = dispatcher_factory(t)
    d.send(MSG)
    for _ in range(5):
        clock.now += 100
        d.retry_step()
    assert len(t.calls) == 3
    [entry] = [json.loads(x) for x in fake_redis.lrange(keys.dead_letters(), 0, -1)]
    assert entry["reason"] == "gave up after 3 attempts: timeout"


def test_unexpected_transport_exception_counts_as_transient(
    dispatcher_factory: Factory, fake_redis: redis.Redis
) -> None:
    class Broken(Transport):
        def notify(self, message: Message) -> None:
            raise KeyError("bug")

    d = dispatcher_factory(Broken())
    assert d.send(MSG).status == RETRY


def test_in_flight_elsewhere_is_deferred_to_the_end_of_its_lease(
    dispatcher_factory: Factory, fake_redis: redis.Redis, clock: Clock
) -> None:
    t = Scripted()
    d = dispatcher_factory(t, HBDNS_NOTIFY_CLAIM_IDLE="30")
    fake_redis.set(keys.sent(MSG.key), "sending:other", px=30_000)
    assert d.send(MSG).status == DEFERRED
    assert t.calls == []
    [(_, due)] = fake_redis.zrange(keys.notify_retry(), 0, -1, withscores=True)
    assert clock.now + 29 < due <= clock.now + 30.1
    fake_redis.delete(keys.sent(MSG.key))  # the other sender died; its lease ran out
    clock.now = due
    d.retry_step()
    assert len(t.calls) == 1 and fake_redis.get(keys.sent(MSG.key)) == "sent"


def test_marks_are_written_only_after_success(dispatcher_factory: Factory, fake_redis: redis.Redis) -> None:
    marked = Message(**{**MSG.__dict__, "marks": ((keys.sms_outage(7), "+491701234567", "123"),)})
    d = dispatcher_factory(Scripted(TransportError("x", permanent=True)))
    d.send(marked)
    assert fake_redis.hgetall(keys.sms_outage(7)) == {}
    fake_redis.flushall()
    d2 = dispatcher_factory(Scripted())
    d2.send(marked)
    assert fake_redis.hgetall(keys.sms_outage(7)) == {"+491701234567": "123"}


def test_retry_claims_are_leased(dispatcher_factory: Factory, fake_redis: redis.Redis, clock: Clock) -> None:
    d = dispatcher_factory(Scripted(TransportError("x")))
    d.send(MSG)
    clock.now += 10
    assert d.retries.claim(clock.now, 60) != []
    assert d.retries.claim(clock.now, 60) == []  # leased to the first claimer
    clock.now += 61
    assert d.retries.claim(clock.now, 60) != []  # its claimer died: due again
