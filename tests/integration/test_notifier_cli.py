"""``hbdns status`` and ``hbdns notify`` against a real Redis: the queue's size and oldest age, held
receivers, dead letters and their retry (all or nothing)."""

from __future__ import annotations

import json
import re
import time

import pytest
import redis

from admin.cli.main import main
from hbdns import config, notify_queue
from notifier.channel import Transport, TransportError
from notifier.dispatch import Dispatcher
from notifier.messages import Message
from notifier.presence import Presence


class Failing(Transport):
    channel = "email"

    def __init__(self, error: TransportError) -> None:
        self.error = error

    def notify(self, message: Message) -> None:
        raise self.error


def message(n: int) -> Message:
    return Message("email", f"u{n}@example.org", "s", "t", n, f"h{n}.example.test", "ip_changed", f"{n}-0")


def dispatcher(r: redis.Redis, error: TransportError) -> Dispatcher:
    presence = Presence(r, "cli-test", ttl=5)
    presence.join()
    return Dispatcher(r, {"email": Failing(error)}, config.load({}), presence=presence)


def run(r: redis.Redis, capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv), redis_client=r)
    out, err = capsys.readouterr()
    return code, out, err


def test_status_shows_the_queue_its_oldest_age_and_the_held_relay(
    real_redis: redis.Redis, capsys: pytest.CaptureFixture[str]
) -> None:
    d = dispatcher(real_redis, TransportError("smtp: ConnectionRefusedError", destination=True))
    try:
        d.send_all([message(1), message(2)])
    finally:
        d.close()
    real_redis.zadd("hbdns:{notify}:since", {message(1).key: time.time() - 3725})  # queued an hour ago
    code, out, _ = run(real_redis, capsys, "status")
    assert code == 0
    assert re.search(r"notification queue: 2 waiting, oldest 62m0\ds, 0 in flight; 0 dead letters", out), out
    assert "held: email failing since" in out and "ConnectionRefusedError" in out
    code, out, _ = run(real_redis, capsys, "--json", "status")
    data = json.loads(out)["notifications"]
    assert data["queued"] == 2 and data["oldest_s"] >= 3725 and list(data["held"]) == ["email"]
    code, out, _ = run(real_redis, capsys, "notify", "queue")
    assert code == 0 and message(1).key in out and message(2).key in out


def test_dead_letters_listed_and_retried_all_or_nothing(
    real_redis: redis.Redis, capsys: pytest.CaptureFixture[str]
) -> None:
    d = dispatcher(real_redis, TransportError("recipient refused: 550 no such user", permanent=True))
    try:
        d.send_all([message(1), message(2)])
    finally:
        d.close()
    code, out, _ = run(real_redis, capsys, "notify", "dead-letters")
    assert code == 0 and out.count("550 no such user") == 2 and message(1).key in out
    code, out, err = run(real_redis, capsys, "notify", "retry", message(1).key, "1-0:email:nonsense")
    assert code == 2 and "no dead letter '1-0:email:nonsense'" in err
    assert len(notify_queue.dead_letters(real_redis)) == 2 and notify_queue.stats(real_redis).queued == 0
    code, _, err = run(real_redis, capsys, "notify", "retry")
    assert code == 2 and "ids or --all" in err
    code, out, _ = run(real_redis, capsys, "--json", "notify", "retry", message(1).key)
    assert code == 0 and json.loads(out) == {"requeued": [message(1).key]}
    code, out, _ = run(real_redis, capsys, "notify", "retry", "--all")
    assert code == 0 and "1 dead letters queued again" in out
    assert notify_queue.dead_letters(real_redis) == [] and notify_queue.stats(real_redis).queued == 2
    [(job, _), _] = notify_queue.queued_jobs(real_redis)
    assert job.requeued and job.message and job.message["recipient"].endswith("@example.org")
