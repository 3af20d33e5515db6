"""Upgrading a deployed database to the notification queue of issue 14 (``hbdns migrate``).

``tests/data/notify_v1_db.json`` is a Redis database written by the notifier before the change
(commit c671ae6), dumped key by key: five accounts on the fast test plan, all neutralized, with

- ``queued``: its outage e-mail refused with 451 -> a retry in ``hbdns:notify:retry``;
- ``hooked``: its outage webhook answered 503 -> a retry there too;
- ``smsqueued``: its outage SMS answered 503 -> a retry there too (with the old SMS outage mark);
- ``rejected``: its outage e-mail refused with 550 -> a dead letter in ``hbdns:deadletter``;
- ``smsout``: its outage SMS delivered -> its phone marked in ``hbdns:sms:outage:{a:2}``.

After the upgrade (which since issue 16 ends with the step ``sharded``: the accounts, the SMS outage
marks and the event stream in the sharded schema) every pending retry goes out once, the dead
letter can be retried from the CLI (its event was copied with its old id), and the SMS outage open
across the upgrade still gets its plain "back online". The retry horizon is
set to ten years here so that the fixture's age never dead-letters its retries.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from admin.cli.main import main as cli
from hbdns import config, keys, migrations, notify_queue
from hbdns.liveness import BeatRequest
from hbdns.store import Store
from notifier.main import Notifier
from tests.support.services import LONG, env_for, settled
from tests.support.sinks import HttpSink, SmtpSink

FIXTURE = Path(__file__).resolve().parents[1] / "data" / "notify_v1_db.json"
FIXTURE_HOOK = "127.0.0.1:57841"  # the webhook sink of the run that wrote the fixture
TEN_YEARS = str(10 * 365 * 86400)


def load(r: redis.Redis, hook: HttpSink) -> dict[str, int]:
    """Write the dumped database into ``r`` (the webhook URL pointed at ``hook``); the accounts' ids."""
    dump: dict[str, Any] = json.loads(FIXTURE.read_text().replace(FIXTURE_HOOK, hook.url.split("//")[1]))
    for key, item in dump["keys"].items():
        kind, value, pttl = item["type"], item["value"], item["pttl"]
        if kind == "string":
            r.set(key, value, px=pttl if pttl > 0 else None)
        elif kind == "hash":
            r.hset(key, mapping=value)
        elif kind == "list":
            r.rpush(key, *value)
        elif kind == "set":
            r.sadd(key, *value)
        elif kind == "zset":
            r.zadd(key, dict(value))
        elif kind == "stream":
            for entry_id, fields in value["entries"]:
                r.xadd(key, fields, id=entry_id)
            for g in value["groups"]:
                r.xgroup_create(key, g["name"], id=g["last_delivered_id"])
    return dict(dump["accounts"])


@pytest.fixture
def upgraded(real_redis: redis.Redis, http: HttpSink) -> dict[str, int]:
    return load(real_redis, http)


@pytest.fixture
def notifier(real_redis: redis.Redis, redis_url: str, smtp: SmtpSink, http: HttpSink) -> Iterator[Notifier]:
    env = env_for(redis_url, smtp, sms=http, HBDNS_NOTIFY_RETRY_HORIZON=TEN_YEARS, HBDNS_NOTIFY_BACKOFF="0.05")
    n = Notifier(config.load(env))
    yield n
    n.stop()


def run(r: redis.Redis, capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    assert cli(["--json", *argv], redis_client=r) == 0
    return json.loads(capsys.readouterr().out)


NOTIFIER_STEPS = ("legacy_notify_queue", "legacy_dead_letters", "legacy_sms_outage")


def migrate(r: redis.Redis, capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, int]:
    """The notifier's steps (the other registered steps convert what else that version stored)."""
    out = run(r, capsys, "migrate", *argv)
    return {step: out[step] for step in NOTIFIER_STEPS}


def drain(n: Notifier) -> None:
    for _ in range(20):
        n.consume_step()
        n.schedule_step()
        if settled(n.r) and n.sms.jobs.size() == 0:
            return
    raise AssertionError("the notifier did not settle")


def recover(r: redis.Redis, account_id: int) -> None:
    store = Store(r, config.load(env_for("redis://unused")))
    store.liveness.beat(BeatRequest(account_id=account_id, zone="example.test", expiry_ms=LONG, ipv4="198.51.100.7"))


def test_migrate_converts_the_old_layout_and_every_message_survives(
    real_redis: redis.Redis,
    capsys: pytest.CaptureFixture[str],
    upgraded: dict[str, int],
    notifier: Notifier,
    smtp: SmtpSink,
    http: HttpSink,
) -> None:
    r = real_redis
    assert migrate(r, capsys, "--dry-run") == {
        "legacy_notify_queue": 3,
        "legacy_dead_letters": 1,
        "legacy_sms_outage": 1,
    }
    assert r.zcard(keys.notify_retry()) == 3  # a dry run changes nothing
    assert migrate(r, capsys) == {"legacy_notify_queue": 3, "legacy_dead_letters": 1, "legacy_sms_outage": 1}
    assert not r.exists(keys.notify_retry()) and not r.exists(keys.dead_letters())
    jobs = {job.message["fqdn"]: job for job, _ in notify_queue.queued_jobs(r) if job.message}
    assert sorted(jobs) == ["hooked.example.test", "queued.example.test", "smsqueued.example.test"]
    assert all(j.attempts == 1 and j.message and j.message["outage_ms"] > 0 for j in jobs.values())
    sms_out = upgraded["smsout"]
    [thread] = r.hgetall(keys.notify_outage(sms_out)).items()
    assert thread[0].startswith("sms:") and thread[1].endswith(" sent")
    status = run(r, capsys, "status")["notifications"]
    assert (status["queued"], status["dead_letters"], status["legacy_entries"]) == (3, 1, 0)
    assert migrate(r, capsys) == {"legacy_notify_queue": 0, "legacy_dead_letters": 0, "legacy_sms_outage": 0}

    drain(notifier)  # the three retries go out, each once
    assert [m.rcpts for m in smtp.mails] == [["a@example.org"]]
    assert "queued.example.test is offline" in smtp.mails[0].subject
    assert [req.json()["event"] for req in http.ok("/hook")] == ["neutralized"]
    assert [req.json()["to"] for req in http.ok("/sms")] == ["+491709999999"]

    [letter] = run(r, capsys, "notify", "dead-letters")
    assert letter["recipient"] == "nobody@example.org" and "550" in letter["reason"] and letter["message"] is None
    assert run(r, capsys, "notify", "retry", letter["id"]) == {"requeued": [letter["id"]]}
    drain(notifier)  # built again from its event, which is still in the stream; the relay accepts it now
    assert [m.rcpts for m in smtp.mails][-1] == ["nobody@example.org"] and len(smtp.mails) == 2

    recover(r, sms_out)  # the outage whose SMS went out before the upgrade: a plain recovery SMS
    recover(r, upgraded["smsqueued"])  # the one whose SMS went out after it: plain too
    drain(notifier)
    texts = {req.json()["to"]: req.json()["text"] for req in http.ok("/sms")[1:]}
    assert sorted(texts) == ["+491701234567", "+491709999999"]
    assert all("back ONLINE" in t for t in texts.values())
    assert notify_queue.stats(r).dead == 0 and len(http.ok("/sms")) == 3 and len(smtp.mails) == 2


def test_retries_an_older_notifier_queued_after_the_migration_are_drained(
    real_redis: redis.Redis, upgraded: dict[str, int], notifier: Notifier, smtp: SmtpSink, http: HttpSink
) -> None:
    """An older notifier stopped late (after ``hbdns migrate`` moved the database to the sharded
    schema) may still have queued retries in its layout: the new notifier converts them itself."""
    r = real_redis
    late: list[tuple[str, float]] = r.zrange(keys.notify_retry(), 0, -1, withscores=True)  # type: ignore[assignment]
    r.delete(keys.notify_retry())
    assert run_steps(r)["sharded"] > 0
    r.zadd(keys.notify_retry(), dict(late))
    drain(notifier)
    assert [m.rcpts for m in smtp.mails] == [["a@example.org"]]
    assert len(http.ok("/hook")) == 1 and len(http.ok("/sms")) == 1
    assert not real_redis.exists(keys.notify_retry())


def run_steps(r: redis.Redis) -> dict[str, int]:
    return {step.name: n for step, n in migrations.run(r)}
