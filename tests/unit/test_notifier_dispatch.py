"""The dispatcher's rules, step by step (fakeredis runs the scripts; a scripted transport; a hand-moved clock):
idempotency, backoff until the horizon, holds with one probe, takeover of a dead owner's sends, merging."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace

import pytest
import redis

from hbdns import config, keys, notify_queue
from notifier.channel import Transport, TransportError
from notifier.dispatch import Dispatcher
from notifier.messages import Message
from notifier.outcomes import DEAD, DEFERRED, DROPPED, DUPLICATE, HELD, QUEUED, SENT, Item
from notifier.presence import Presence
from tests.support.clock import Clock

AT = 1_000_000_000  # ms: the outage's start in the merge tests


class Scripted(Transport):
    """Fails with the scripted errors in order, then succeeds; records every attempt."""

    def __init__(self, channel: str, *errors: TransportError | None) -> None:
        self.channel = channel
        self.errors = list(errors)
        self.calls: list[Message] = []

    def notify(self, message: Message) -> None:
        self.calls.append(message)
        err = self.errors.pop(0) if self.errors else None
        if err is not None:
            raise err


def msg(n: int = 1, channel: str = "sms", kind: str = "ip_changed", outage: int = 0, **kw: object) -> Message:
    base = Message(channel, f"+4917012345{n:02d}", "s", "t", 7, "h.example.test", kind, f"{n}-0", outage_ms=outage)
    return replace(base, **kw)  # type: ignore[arg-type]


DOWN = TransportError("connection refused", destination=True)
Factory = Callable[..., Dispatcher]


@pytest.fixture
def clock() -> Clock:
    return Clock(1_000_000.0)


@pytest.fixture
def make(fake_redis: redis.Redis, clock: Clock) -> Iterator[Factory]:
    made: list[Dispatcher] = []

    def factory(*transports: Transport, name: str = "n1", **env: str) -> Dispatcher:
        settings = config.load(
            {
                "HBDNS_NOTIFY_BACKOFF": "2",
                "HBDNS_NOTIFY_BACKOFF_MAX": "60",
                "HBDNS_NOTIFY_PROBE_MAX": "30",
                "HBDNS_NOTIFY_RETRY_HORIZON": "3600",
                # the sending rate counts on Redis' clock, not the hand-moved one (tested in test_mass_scale)
                "HBDNS_NOTIFY_EMAIL_RATE": "0",
                "HBDNS_NOTIFY_SMS_RATE": "0",
                **env,
            }
        )
        presence = Presence(fake_redis, name, ttl=5, clock=clock)
        presence.join()
        d = Dispatcher(fake_redis, {t.channel: t for t in transports}, settings, presence=presence, clock=clock)
        made.append(d)
        return d

    yield factory
    for d in made:
        d.close()


def queued(r: redis.Redis) -> dict[str, tuple[notify_queue.Job, float]]:
    return {job.id: (job, due) for job, due in notify_queue.queued_jobs(r, 100)}


def test_sent_once(make: Factory, fake_redis: redis.Redis) -> None:
    t = Scripted("sms")
    d = make(t)
    assert d.send(msg()).status == SENT
    assert d.send(msg()).status == DUPLICATE
    assert len(t.calls) == 1 and fake_redis.get(keys.sent(msg().key)) == "sent"


def test_backoff_doubles_to_the_cap_and_a_65_s_outage_loses_nothing(
    make: Factory, fake_redis: redis.Redis, clock: Clock
) -> None:
    t = Scripted("sms", *[TransportError("451 try later")] * 7)  # per message: no hold
    d = make(t)
    start = clock.now
    assert d.send(msg()).status == QUEUED
    dues = []
    for _ in range(7):
        [(_, due)] = queued(fake_redis).values()
        dues.append(round(due - start))
        clock.now = due
        d.retry_step()
    assert dues == [2, 4, 8, 16, 32, 64, 124]  # next attempt after the time it has been failing, capped at 60
    assert len(t.calls) == 8 and fake_redis.get(keys.sent(msg().key)) == "sent"
    assert notify_queue.dead_letters(fake_redis) == [] and queued(fake_redis) == {}


def test_only_the_horizon_gives_up_on_a_transient_failure(make: Factory, fake_redis: redis.Redis, clock: Clock) -> None:
    t = Scripted("sms", *[TransportError("451 try later")] * 1000)
    d = make(t)
    d.send(msg())
    start = clock.now
    while queued(fake_redis):
        [(_, due)] = queued(fake_redis).values()
        clock.now = due
        d.retry_step()
    [letter] = notify_queue.dead_letters(fake_redis)
    assert letter["reason"].startswith("undeliverable for 1 h 0 min: 451 try later")
    assert clock.now - start >= 3600 and letter["attempts"] == len(t.calls) == 66  # 6 until 60 s, then every 60 s
    assert letter["message"]["recipient"] == msg().recipient  # kept whole: it can be retried


def test_permanent_failure_is_dead_lettered_at_once_and_the_cli_retry_sends_it(
    make: Factory, fake_redis: redis.Redis, clock: Clock
) -> None:
    t = Scripted("sms", TransportError("HTTP 400 bad number", permanent=True))
    d = make(t)
    assert d.send(msg()).status == DEAD
    [letter] = notify_queue.dead_letters(fake_redis)
    assert (letter["id"], letter["reason"], letter["channel"], letter["event_type"]) == (
        msg().key,
        "HTTP 400 bad number",
        "sms",
        "ip_changed",
    )
    assert d.send(msg()).status == DUPLICATE  # a redelivered event does not start over
    with pytest.raises(KeyError):
        notify_queue.retry_dead(fake_redis, [msg().key, "nonsense"])  # all or nothing
    assert notify_queue.retry_dead(fake_redis, [msg().key], now=clock.now) == [msg().key]
    assert notify_queue.dead_letters(fake_redis) == []
    assert d.retry_step() == 1
    assert len(t.calls) == 2 and fake_redis.get(keys.sent(msg().key)) == "sent"


def test_a_receiver_down_is_held_with_one_probe_per_step(make: Factory, fake_redis: redis.Redis, clock: Clock) -> None:
    t = Scripted("sms", DOWN, DOWN)
    d = make(t, HBDNS_NOTIFY_WORKERS="1")  # in parallel, the first attempts already running fail together
    out = d.send_all([msg(i) for i in range(5)])
    assert sorted(o.status for o in out) == [HELD] * 4 + [QUEUED] and len(t.calls) == 1
    hold = notify_queue.stats(fake_redis, clock.now).holds["sms"]
    assert hold["reason"] == "connection refused" and hold["until"] == (clock.now + 2) * 1000
    clock.now += 1
    assert d.retry_step() == 0  # held: nothing due before the next probe
    clock.now += 1
    d.retry_step()
    assert len(t.calls) == 2  # one probe for all five; it failed, the hold grows
    assert all(due == clock.now + 2 for _, due in queued(fake_redis).values())
    clock.now += 2
    d.retry_step()  # the probe gets through and the others follow in the same step
    assert len(t.calls) == 7 and queued(fake_redis) == {}
    assert notify_queue.stats(fake_redis, clock.now).holds == {}
    assert all(fake_redis.get(keys.sent(msg(i).key)) == "sent" for i in range(5))


def test_a_failure_of_one_recipient_does_not_hold_the_receiver(make: Factory, clock: Clock) -> None:
    t = Scripted("sms", TransportError("452 mailbox full"))
    d = make(t)
    out = d.send_all([msg(1), msg(2)])
    assert sorted(o.status for o in out) == [QUEUED, SENT] and len(t.calls) == 2


def test_a_dead_owners_send_is_taken_over_at_once_a_live_ones_waits(
    make: Factory, fake_redis: redis.Redis, clock: Clock
) -> None:
    t = Scripted("sms")
    other = Presence(fake_redis, "n2", ttl=5, clock=clock)
    other.join()
    d = make(t)
    fake_redis.set(keys.sent(msg(1).key), f"sending:{other.token}", px=60_000)
    assert d.send(msg(1)).status == DEFERRED and t.calls == []
    clock.now += 6  # n2 stopped refreshing: its liveness ended
    d.presence.beat()
    [(_, due)] = queued(fake_redis).values()
    clock.now = max(clock.now, due)
    assert d.retry_step() == 1 and len(t.calls) == 1  # not the 60 s lease: at once
    assert fake_redis.get(keys.sent(msg(1).key)) == "sent"


def test_queued_jobs_of_a_dead_owner_are_due_at_once(make: Factory, fake_redis: redis.Redis, clock: Clock) -> None:
    first = make(Scripted("sms", TransportError("451")), name="n1")
    first.send(msg())
    clock.now += 2
    assert len(first.queue.claim(clock.now, 60, 10, first.presence.token)) == 1  # claimed, then n1 dies
    second = make(Scripted("sms"), name="n2")
    assert second.retry_step() == 0  # leased for 60 s
    clock.now += 6
    second.presence.beat()
    assert second.queue.takeover(clock.now, second.presence.live()) == 1
    assert second.retry_step() == 1 and queued(fake_redis) == {}


def test_an_owner_taken_for_dead_cannot_undo_its_successor(
    make: Factory, fake_redis: redis.Redis, clock: Clock
) -> None:
    d = make(Scripted("sms", TransportError("451")))
    d.send(msg())
    clock.now += 2
    [job] = d.queue.claim(clock.now, 60, 10, "n1/old")
    [job] = d.queue.claim(clock.now, 60, 10, "n2/new") if d.queue.takeover(clock.now, ["n2/new"]) else []
    assert not d.queue.put(job, clock.now + 99, "n1/old")  # the one taken for dead comes back: no effect
    assert not d.queue.finish(job.id, "n1/old", letter='{"id": "x"}', now=clock.now)
    assert queued(fake_redis)[job.id][1] == clock.now + 60  # still n2's, as it claimed it
    assert fake_redis.hget(keys.notify_dead(), job.id) == '{"id": "x"}'  # but its dead letter is kept
    assert d.queue.finish(job.id, "n2/new")


# --- merging the two messages of one outage ----------------------------------------------------------


def neutral(r: redis.Redis, since: int = AT) -> None:
    r.hset(keys.account(7), mapping={"state": "neutral", "since": str(since)})


def live(r: redis.Redis) -> None:
    r.hset(keys.account(7), mapping={"state": "live", "since": str(AT + 278_000)})


OFF = msg(1, "email", "neutralized", AT, recipient="ops@example.org")
BACK = msg(2, "email", "recovered", AT, recipient="ops@example.org", merged=("was offline", "from .. to ..", ""))


def test_offline_still_queued_when_the_account_is_back_becomes_one_merged_message(
    make: Factory, fake_redis: redis.Redis, clock: Clock
) -> None:
    neutral(fake_redis)
    t = Scripted("email", TransportError("451 later"))
    d = make(t)
    assert d.send(OFF).status == QUEUED
    live(fake_redis)
    out = d.send(BACK)
    assert (out.status, out.merged, out.message.subject) == (SENT, True, "was offline")
    clock.now += 100
    assert d.retry_step() == 1
    assert [c.subject for c in t.calls] == ["s", "was offline"]  # the offline one never went out after it
    assert queued(fake_redis) == {} and fake_redis.get(keys.sent(OFF.key)) == "moot"


def test_offline_sent_then_recovery_goes_plain(make: Factory, fake_redis: redis.Redis) -> None:
    neutral(fake_redis)
    t = Scripted("email")
    d = make(t)
    assert d.send(OFF).status == SENT
    live(fake_redis)
    out = d.send(BACK)
    assert out.status == SENT and not out.merged and [c.subject for c in t.calls] == ["s", "s"]


def test_offline_read_after_the_recovery_is_moot(make: Factory, fake_redis: redis.Redis) -> None:
    """A second notifier (or a lagging one) handles the recovery before the offline message."""
    live(fake_redis)
    t = Scripted("email")
    d = make(t)
    assert d.send(BACK).merged
    assert d.send(OFF).status == DROPPED
    assert [c.subject for c in t.calls] == ["was offline"]


def test_offline_moot_once_the_account_is_back_even_before_the_recovery_is_read(
    make: Factory, fake_redis: redis.Redis
) -> None:
    neutral(fake_redis, AT + 1)  # a later outage: the one the message is about is over
    d = make(Scripted("email"))
    assert d.send(OFF).status == DROPPED


def test_recovery_waits_while_the_offline_message_is_in_flight(
    make: Factory, fake_redis: redis.Redis, clock: Clock
) -> None:
    live(fake_redis)
    other = Presence(fake_redis, "n2", ttl=5, clock=clock)
    other.join()
    fake_redis.hset(keys.notify_outage(7), OFF.thread, f"{AT} sending {other.token}@{clock.now + 60}")
    t = Scripted("email")
    d = make(t)
    assert d.send(BACK).status == DEFERRED and t.calls == []
    fake_redis.hset(keys.notify_outage(7), OFF.thread, f"{AT} sent")  # it went out
    clock.now += 3
    d.retry_step()
    assert [c.subject for c in t.calls] == ["s"]  # so the recovery goes plain


def test_sms_recovery_without_an_attempted_outage_sms_sends_nothing(make: Factory, fake_redis: redis.Redis) -> None:
    live(fake_redis)
    t = Scripted("sms")
    d = make(t)
    back = msg(2, "sms", "recovered", AT, merged=("", "was OFFLINE", ""))
    assert d.send(back).status == DROPPED and t.calls == []


def test_deliver_items_from_the_queue_keep_their_job(make: Factory, fake_redis: redis.Redis, clock: Clock) -> None:
    d = make(Scripted("sms", TransportError("451")))
    job = notify_queue.Job(id="x", message=None, attempts=3, first=clock.now - 10)
    d.deliver([Item(msg(), job)])
    [(stored, due)] = queued(fake_redis).values()
    assert (stored.id, stored.attempts, stored.first, due) == ("x", 4, clock.now - 10, clock.now + 10)
