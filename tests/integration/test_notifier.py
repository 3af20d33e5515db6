"""Notifications end to end, on a real redis-server with real receivers: the notifier sends what
the sweeper records (both started by the test; the sweeper's own tests are in test_sweeper.py).

Plans are shortened with ``HBDNS_PLANS`` (an account neutralizes 0.6 s after its last beat). A recovery
beat uses a long expiry so the account stays live for the rest of the test.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable
from pathlib import Path

import redis

from hbdns import config, keys, notify_queue
from hbdns.liveness import BeatRequest
from hbdns.model import Account, NotifyPrefs
from hbdns.notices.locale import When, duration
from hbdns.store import Store
from notifier.consumer import GROUP
from notifier.events import Event
from notifier.main import Notifier
from sweeper.main import SweeperService
from sweeper.sweeper import Sweeper
from tests.support.clock import Clock
from tests.support.events import consumers as stream_consumers
from tests.support.servers import Process, wait_for
from tests.support.services import LONG, PHONE, add_account, beat, env_for, events, settled, spawn
from tests.support.sinks import HttpSink, SmtpSink

Sweepers = Callable[..., SweeperService]


# --- e-mail ---------------------------------------------------------------------------------------


def test_outage_gives_one_neutralized_and_one_email_recovery_one_email_with_length(
    real_redis: redis.Redis, redis_url: str, smtp: SmtpSink, notifiers: Callable[..., Notifier], sweepers: Sweepers
) -> None:
    settings = config.load(env_for(redis_url, smtp))
    store = Store(real_redis, settings)
    acct = add_account(store, "host", emails=["ops@example.org"], prefs=NotifyPrefs(tz="Europe/Berlin"))
    sweeper = sweepers(settings)
    notifiers(settings)
    beat(store, acct)

    [mail] = wait_for(lambda: smtp.mails_for("ops@example.org"), 15, what="outage e-mail")
    wait_for(lambda: settled(real_redis), 10, what="events acknowledged")
    assert sweeper.sweeper.step() == 0  # nothing left due: the one transition was recorded once
    [neut] = events(real_redis, "neutralized", acct.id)
    assert neut.get("reason") == "missed"
    assert real_redis.hget(keys.account(acct.id), "state") == "neutral"
    assert "host.example.test" in mail.subject and "offline" in mail.subject
    assert str(When(neut.at_ms, "Europe/Berlin", "en")) in mail.text  # the local time and its zone
    assert "No heartbeat or update arrived in time" in mail.text

    beat(store, acct, LONG)
    wait_for(lambda: len(smtp.mails_for("ops@example.org")) == 2, 15, what="recovery e-mail")
    wait_for(lambda: settled(real_redis), 10, what="events acknowledged")
    [rec] = [e for e in events(real_redis, "recovered", acct.id) if not e.first]
    recovery = smtp.mails_for("ops@example.org")[1]
    length = duration(int(rec.get("duration_ms")), "en")
    assert "back online" in recovery.subject and length in recovery.subject
    assert f"The outage lasted {length}" in recovery.text
    assert len(smtp.mails_for("ops@example.org")) == 2
    assert len(events(real_redis, "neutralized", acct.id)) == 1


# --- SMS and webhook ------------------------------------------------------------------------------


def test_sms_and_webhook_bodies_auth_and_signature(
    real_redis: redis.Redis, redis_url: str, http: HttpSink, notifiers: Callable[..., Notifier], sweepers: Sweepers
) -> None:
    settings = config.load(env_for(redis_url, sms=http))
    store = Store(real_redis, settings)
    prefs = NotifyPrefs(email="none", sms="outages", webhook="all", sms_min_outage=0)
    acct = add_account(store, "sms", phones=[PHONE], webhook=http.url + "/hook", prefs=prefs)
    sweepers(settings)
    notifiers(settings)
    beat(store, acct)

    [sms] = wait_for(lambda: http.ok("/sms"), 15, what="outage SMS")
    assert sms.method == "POST" and sms.basic_auth == ("gw", "gwpw")
    body = sms.json()
    assert body["to"] == PHONE and "sms.example.test OFFLINE" in body["text"]

    hooks = wait_for(lambda: len(http.ok("/hook")) >= 3 and http.ok("/hook"), 15, what="webhooks")
    for req in hooks:
        expected = "sha256=" + hmac.new(b"whsec-test", req.body, hashlib.sha256).hexdigest()
        assert req.headers["x-hbdns-signature"] == expected
    # level "all": the first beat ("online" and its first address), then the outage
    assert [h.json()["event"] for h in hooks] == ["recovered", "ip_changed", "neutralized"]
    assert hooks[0].json()["first"] is True and hooks[1].json()["new"] == "198.51.100.7"
    assert hooks[2].json()["reason"] == "missed"
    assert hooks[2].json()["account"] == {"id": acct.id, "fqdn": "sms.example.test"}

    beat(store, acct, LONG)
    wait_for(lambda: len(http.ok("/sms")) == 2 and len(http.ok("/hook")) == 4, 15, what="recovery SMS and webhook")
    recovery = http.ok("/sms")[1].json()
    assert recovery["to"] == PHONE and "back ONLINE" in recovery["text"] and " after " in recovery["text"]
    last = http.ok("/hook")[3].json()
    assert last["event"] == "recovered" and last["first"] is False and last["outage_ms"] > 0
    wait_for(lambda: settled(real_redis), 10, what="events acknowledged")
    assert len(http.log()) == 6


def test_gateway_500_three_times_then_200_is_one_delivery(
    real_redis: redis.Redis, redis_url: str, http: HttpSink, notifiers: Callable[..., Notifier], sweepers: Sweepers
) -> None:
    http.statuses = [500, 500, 500, 200]
    settings = config.load(env_for(redis_url, sms=http))
    store = Store(real_redis, settings)
    acct = add_account(store, "flaky", phones=[PHONE], prefs=NotifyPrefs(sms_min_outage=0))
    sweepers(settings)
    notifiers(settings)
    beat(store, acct)
    wait_for(lambda: http.ok("/sms"), 15, what="SMS delivered")
    wait_for(lambda: settled(real_redis) and real_redis.zcard(keys.pending_sms()) == 0, 10, what="queues empty")
    assert [r.status for r in http.log("/sms")] == [500, 500, 500, 200]
    assert notify_queue.dead_letters(real_redis) == []


def test_gateway_400_is_dead_lettered_without_retries(
    real_redis: redis.Redis, redis_url: str, http: HttpSink, notifiers: Callable[..., Notifier], sweepers: Sweepers
) -> None:
    http.default = 400
    settings = config.load(env_for(redis_url, sms=http))
    store = Store(real_redis, settings)
    acct = add_account(store, "rejected", phones=[PHONE], prefs=NotifyPrefs(sms_min_outage=0))
    sweepers(settings)
    notifiers(settings)
    beat(store, acct)
    [dead] = wait_for(lambda: notify_queue.dead_letters(real_redis), 15, what="dead letter")
    wait_for(lambda: settled(real_redis) and real_redis.zcard(keys.pending_sms()) == 0, 10, what="queues empty")
    assert dead["channel"] == "sms" and dead["recipient"] == PHONE and dead["fqdn"] == "rejected.example.test"
    assert dead["event_type"] == "neutralized" and "HTTP 400" in dead["reason"] and dead["event_id"]
    assert abs(dead["time"] - time.time()) < 60
    assert len(http.log("/sms")) == 1  # nothing left that could retry: one request, for good


# --- minimum outage and quiet hours (injected clock, steps called directly) -------------------------


def _outage(n: Notifier, store: Store, acct: Account) -> Event:
    beat(store, acct)
    sweeper = Sweeper(store.liveness)
    wait_for(lambda: sweeper.step() or events(store.r, "neutralized", acct.id), 10, what="neutralized")
    _drain(n)
    return events(store.r, "neutralized", acct.id)[-1]


def _drain(n: Notifier) -> None:
    while n.consumer.step(block_ms=50):
        pass


def test_min_outage_short_blip_sends_no_sms_long_outage_sends_both(
    real_redis: redis.Redis, redis_url: str, http: HttpSink
) -> None:
    clock = Clock()
    settings = config.load(env_for(redis_url, sms=http))
    store = Store(real_redis, settings)
    acct = add_account(store, "blip", phones=[PHONE], prefs=NotifyPrefs(sms_min_outage=60))
    n = Notifier(settings, clock=clock)
    try:
        # a blip: back after a moment, long before 60 s
        neut = _outage(n, store, acct)
        beat(store, acct)
        _drain(n)
        clock.now = neut.at_ms / 1000 + 30
        assert n.sms.step() == 0
        clock.now = neut.at_ms / 1000 + 61
        assert n.sms.step() == 0
        assert http.log() == [] and real_redis.zcard(keys.pending_sms()) == 0

        # a real outage: the SMS waits for 60 s, then goes out; the recovery SMS follows
        sweeper = Sweeper(store.liveness)
        wait_for(lambda: sweeper.step() or len(events(real_redis, "neutralized", acct.id)) == 2, 10, what="outage")
        _drain(n)
        neut = events(real_redis, "neutralized", acct.id)[-1]
        clock.now = neut.at_ms / 1000 + 59
        assert n.sms.step() == 0
        clock.now = neut.at_ms / 1000 + 60.5
        assert n.sms.step() == 1
        beat(store, acct, LONG)
        _drain(n)
        clock.now += 1
        assert n.sms.step() == 1
        texts = [r.json()["text"] for r in http.ok("/sms")]
        assert len(texts) == 2 and "OFFLINE" in texts[0] and "back ONLINE" in texts[1]
    finally:
        n.stop()


def _next_local(clock_now: float, hhmm: str, tz: str) -> float:
    from datetime import datetime, timedelta
    from zoneinfo import ZoneInfo

    zone = ZoneInfo(tz)
    local = datetime.fromtimestamp(clock_now, zone)
    h, m = (int(x) for x in hhmm.split(":"))
    t = local.replace(hour=h, minute=m, second=0, microsecond=0)
    if t <= local:
        t += timedelta(days=1)
    return t.timestamp()


def test_quiet_hours_hold_the_outage_sms_until_the_window_ends(
    real_redis: redis.Redis, redis_url: str, http: HttpSink
) -> None:
    clock = Clock()
    settings = config.load(env_for(redis_url, sms=http))
    store = Store(real_redis, settings)
    prefs = NotifyPrefs(sms_min_outage=0, quiet_hours="22:00-07:00", tz="Europe/Berlin")
    still_out = add_account(store, "night", phones=[PHONE], prefs=prefs)
    back = add_account(store, "back", phones=["+491709999999"], prefs=prefs)
    n = Notifier(settings, clock=clock)
    try:
        _outage(n, store, still_out)
        _outage(n, store, back)
        clock.now = _next_local(time.time(), "23:00", "Europe/Berlin")  # the night after the outage began
        assert n.sms.step() == 0
        end = _next_local(clock.now, "07:00", "Europe/Berlin")
        assert [s for _, s in real_redis.zrange(keys.pending_sms(), 0, -1, withscores=True)] == [end, end]
        beat(store, back, LONG)  # recovers during the night: no SMS at all
        _drain(n)
        clock.now = end - 60
        assert n.sms.step() == 0
        clock.now = end + 1
        assert n.sms.step() == 1
        [sms] = http.ok("/sms")
        assert sms.json()["to"] == PHONE and "night.example.test OFFLINE" in sms.json()["text"]
        assert real_redis.zcard(keys.pending_sms()) == 0
    finally:
        n.stop()


def test_quiet_hours_hold_a_queued_sms_retry_and_a_night_recovery_merges_with_it(
    real_redis: redis.Redis, redis_url: str, http: HttpSink
) -> None:
    """The gateway fails the outage SMS by day; it is back at night, but the retry waits for the
    window's end; the account recovers in the night: at 07:00 one merged SMS, not two."""
    clock = Clock()
    http.default = 503
    settings = config.load(env_for(redis_url, sms=http))
    store = Store(real_redis, settings)
    prefs = NotifyPrefs(sms_min_outage=0, quiet_hours="22:00-07:00", tz="Europe/Berlin")
    acct = add_account(store, "nightly", phones=[PHONE], prefs=prefs)
    n = Notifier(settings, clock=clock)
    try:
        _outage(n, store, acct)
        clock.now = _next_local(time.time(), "12:00", "Europe/Berlin")
        assert n.sms.step() == 0  # tried by day: 503, queued
        assert [r.status for r in http.log("/sms")] == [503]
        http.default = 200
        clock.now = _next_local(clock.now, "23:00", "Europe/Berlin")
        n.dispatcher.retry_step()
        assert http.ok("/sms") == []  # the gateway is back, but it is night
        [(_, due)] = real_redis.zrange(keys.notify_queue(), 0, -1, withscores=True)
        end = _next_local(clock.now, "07:00", "Europe/Berlin")
        assert due == end
        beat(store, acct, LONG)  # back in the night
        _drain(n)
        assert n.sms.step() == 0
        clock.now = end + 1
        n.schedule_step()
        n.schedule_step()
        [sms] = http.ok("/sms")
        assert "nightly.example.test was OFFLINE from" in sms.json()["text"]
        assert real_redis.zcard(keys.notify_queue()) == 0 and real_redis.zcard(keys.pending_sms()) == 0
    finally:
        n.stop()


def test_deferred_sms_survive_a_notifier_restart(real_redis: redis.Redis, redis_url: str, http: HttpSink) -> None:
    clock = Clock()
    settings = config.load(env_for(redis_url, sms=http))
    store = Store(real_redis, settings)
    acct = add_account(store, "restart", phones=[PHONE], prefs=NotifyPrefs(sms_min_outage=120))
    first = Notifier(settings, clock=clock)
    neut = _outage(first, store, acct)
    first.stop()
    second = Notifier(settings, clock=clock)  # a new process: the job is in Redis, not in memory
    try:
        clock.now = neut.at_ms / 1000 + 121
        assert second.sms.step() == 1
        assert len(http.ok("/sms")) == 1
    finally:
        second.stop()


# --- crashes, several processes ---------------------------------------------------------------------


def test_notifier_killed_between_read_and_ack_delivers_after_restart(
    real_redis: redis.Redis, redis_url: str, smtp: SmtpSink, tmp_path: Path, procs: list[Process], sweepers: Sweepers
) -> None:
    env = env_for(redis_url, smtp)
    settings = config.load(env)
    store = Store(real_redis, settings)
    acct = add_account(store, "crash", emails=["ops@example.org"])
    smtp.hold.set()  # the SMTP server takes the message but does not answer
    sweepers(settings)
    first = spawn("notifier", tmp_path, "first", env)
    procs.append(first)
    # running and idle first: on a busy machine a notifier still starting would read the beat's
    # events in the same batch as the outage, and they would wait with it unacknowledged
    wait_for(lambda: settled(real_redis), 30, what="the notifier idle")
    beat(store, acct)
    assert smtp.held.wait(20), first.log_text()
    [neut] = events(real_redis, "neutralized", acct.id)
    stream = keys.events(keys.shard_of(acct.id))
    entries = real_redis.xpending_range(stream, GROUP, min="-", max="+", count=10)
    pending = [(f"{keys.shard_of(acct.id)}/{p['message_id']}", p["consumer"]) for p in entries]
    assert pending == [(neut.id, "first")]  # read, not acknowledged
    first.kill()
    smtp.hold.clear()
    smtp.release.set()  # the held delivery fails: it never reached the mailbox

    second = spawn("notifier", tmp_path, "second", env)  # another name: takes the entry over with XAUTOCLAIM
    procs.append(second)
    wait_for(lambda: smtp.mails_for("ops@example.org"), 30, what="delivery after restart")
    wait_for(lambda: settled(real_redis), 15, what="acknowledged")
    [mail] = smtp.mails_for("ops@example.org")
    assert "crash.example.test" in mail.subject
    assert "took over unacknowledged events" in second.log_text()


def test_two_notifier_processes_send_each_message_once(
    real_redis: redis.Redis, redis_url: str, smtp: SmtpSink, tmp_path: Path, procs: list[Process]
) -> None:
    env = env_for(redis_url, smtp, HBDNS_NOTIFY_WORKERS="4")
    store = Store(real_redis, config.load(env))
    accts = [add_account(store, f"p{i}", emails=[f"p{i}@example.org"]) for i in range(30)]
    procs.append(spawn("sweeper", tmp_path, "sweeper", env))
    procs.extend(spawn("notifier", tmp_path, name, env) for name in ("one", "two"))
    wait_for(lambda: settled(real_redis) and len({c["name"] for c in stream_consumers(real_redis, GROUP)}) == 2, 30)
    store.liveness.beats(BeatRequest(account_id=a.id, zone=a.zone, expiry_ms=600, ipv4="198.51.100.9") for a in accts)
    wait_for(lambda: smtp.count() >= 30, 30, what="30 outage e-mails")
    store.liveness.beats(BeatRequest(account_id=a.id, zone=a.zone, expiry_ms=LONG, ipv4="198.51.100.9") for a in accts)
    wait_for(lambda: smtp.count() >= 60, 30, what="30 recovery e-mails")
    wait_for(lambda: settled(real_redis), 15, what="acknowledged")
    for a in accts:
        mails = smtp.mails_for(f"{a.fqdn.split('.')[0]}@example.org")
        assert sorted(m.header("X-Hbdns-Event") for m in mails) == ["neutralized", "recovered"], a.fqdn
    assert smtp.count() == 60
    assert len(events(real_redis, "neutralized")) == 30
    assert all(p.alive() for p in procs)


def test_odd_entries_are_acknowledged_not_retried_forever(
    real_redis: redis.Redis, redis_url: str, smtp: SmtpSink
) -> None:
    settings = config.load(env_for(redis_url, smtp))
    store = Store(real_redis, settings)
    gone = add_account(store, "gone", emails=["ops@example.org"])
    n = Notifier(settings)
    try:
        n.consumer.ensure_group()
        store.remove_account(gone.id)
        gone_events = keys.events(keys.shard_of(gone.id))
        real_redis.xadd(gone_events, {"type": "neutralized", "account": str(gone.id), "fqdn": gone.fqdn, "at": "1"})
        real_redis.xadd(keys.events(3), {"type": "something-new", "account": "x", "at": "y"})
        real_redis.xadd(
            keys.events(15), {"type": "neutralized", "account": "999999", "fqdn": "nobody.example.test", "at": "1"}
        )
        while n.consumer.step(block_ms=50):
            pass
        assert settled(real_redis) and smtp.count() == 0
    finally:
        n.stop()
