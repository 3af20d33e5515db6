"""Mass outages on a real redis-server, through the sweeper's and the notifier's step functions
(issue 20): DNS neutralizes every silent account, the operator is alarmed at once, customers whose
account comes back within the hold get no message, the others one message when the hold ends."""

from __future__ import annotations

import time

import pytest
import redis

from admin.cli.main import main
from hbdns import config, keys, mass
from hbdns.store import Store
from notifier.main import Notifier
from sweeper.main import SweeperService
from tests.support.servers import wait_for
from tests.support.services import LONG, ZONE, add_account, beat, env_for, events
from tests.support.sinks import SmtpSink

NOC = "noc@provider.test"


def _drain(notifier: Notifier) -> None:
    while notifier.consumer.step(block_ms=10):
        pass


def _silent(r: redis.Redis, accounts: list) -> bool:
    return not any(r.exists(keys.alive(a.id, 4), keys.alive(a.id, 6)) for a in accounts)


def _settings(redis_url: str, smtp: SmtpSink, **extra: str) -> config.Settings:
    env = {"HBDNS_MASS_MIN_ACCOUNTS": "5", "HBDNS_MASS_SHARE": "0.5", "HBDNS_OPERATOR_EMAILS": NOC, **extra}
    return config.load(env_for(redis_url, smtp, **env))


def test_a_mass_outage_alarms_the_operator_and_holds_the_customers(
    real_redis: redis.Redis, redis_url: str, smtp: SmtpSink, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = _settings(redis_url, smtp, HBDNS_MASS_HOLD="4")
    store = Store(real_redis, settings)
    accts = [add_account(store, f"m{i}", emails=[f"c{i}@example.org"]) for i in range(10)]
    sweeper, notifier = SweeperService(settings, r=real_redis), Notifier(settings, r=real_redis)
    for a in accts[6:]:
        beat(store, a, LONG)
    for a in accts[:6]:  # 6 of 10 stop at once
        beat(store, a)
    assert sweeper.watch.census_step() == {mass.SYSTEM: 10, mass.zone_scope(ZONE): 10}
    _drain(notifier)  # their first "online": not sent at the default level
    wait_for(lambda: _silent(real_redis, accts[:6]), 10, what="six accounts silent")
    assert sweeper.sweeper.step() == 6  # DNS neutralizes them all
    types = [e.type for e in events(real_redis)]
    assert types.index(mass.STARTED) < types.index("neutralized")  # the hold is known first
    [started] = mass.load(real_redis).values()  # one alarm: the system's covers the zone's
    assert (started.scope, started.silent, started.of) == (mass.SYSTEM, 6, 10)

    for a in accts[:2]:  # two come back within the hold
        beat(store, a, LONG)
    _drain(notifier)
    [alarm] = wait_for(lambda: smtp.mails_for(NOC), 10, what="the operator's alarm")
    assert "mass outage" in alarm.subject and "6 of 10" in alarm.subject
    assert all(not smtp.mails_for(f"c{i}@example.org") for i in range(10))
    assert real_redis.zcard(keys.mass_held()) == 6
    assert main(["status"], redis_client=real_redis) == 0
    assert "MASS OUTAGE in system: 6 of 10 heartbeat accounts silent" in capsys.readouterr().out

    wait_for(lambda: time.time() * 1000 >= started.hold_until_ms, 10, what="the hold's end")
    wait_for(lambda: notifier.schedule_step() == 0 and real_redis.zcard(keys.mass_held()) == 0, 10)
    for i in range(10):  # the four still down are told, once; nobody else
        assert len(smtp.mails_for(f"c{i}@example.org")) == (1 if 2 <= i < 6 else 0)
    assert "offline" in smtp.mails_for("c2@example.org")[0].subject
    assert sweeper.watch.over_step() == 1 and sweeper.watch.over_step() == 0
    _drain(notifier)
    over = wait_for(lambda: len(smtp.mails_for(NOC)) == 2 and smtp.mails_for(NOC)[1], 10, what="hold-over mail")
    assert "hold over, 2 back, 4 still down" in over.subject

    beat(store, accts[2], LONG)  # a recovery after the hold: the usual message
    _drain(notifier)
    wait_for(lambda: len(smtp.mails_for("c2@example.org")) == 2, 10, what="recovery e-mail")
    assert "back online" in smtp.mails_for("c2@example.org")[1].subject
    assert not smtp.mails_for("c0@example.org") and not smtp.mails_for("c1@example.org")


def test_a_few_silent_accounts_are_no_mass_outage(real_redis: redis.Redis, redis_url: str, smtp: SmtpSink) -> None:
    settings = _settings(redis_url, smtp)
    store = Store(real_redis, settings)
    accts = [add_account(store, f"f{i}", emails=[f"f{i}@example.org"]) for i in range(10)]
    sweeper, notifier = SweeperService(settings, r=real_redis), Notifier(settings, r=real_redis)
    for a in accts[4:]:
        beat(store, a, LONG)
    for a in accts[:4]:  # 4 of 10: below the minimum of 5
        beat(store, a)
    sweeper.watch.census_step()
    wait_for(lambda: _silent(real_redis, accts[:4]), 10, what="four accounts silent")
    assert sweeper.sweeper.step() == 4
    assert mass.load(real_redis) == {}
    _drain(notifier)
    for i in range(4):
        wait_for(lambda i=i: smtp.mails_for(f"f{i}@example.org"), 10, what="offline e-mail at once")
    assert not smtp.mails_for(NOC)


def test_a_zone_of_its_own_is_a_scope(real_redis: redis.Redis, redis_url: str, smtp: SmtpSink) -> None:
    settings = _settings(redis_url, smtp, HBDNS_MASS_SCOPES="zone")
    store = Store(real_redis, settings)
    accts = [add_account(store, f"z{i}") for i in range(6)]
    sweeper = SweeperService(settings, r=real_redis)
    for a in accts:
        beat(store, a)
    sweeper.watch.census_step()
    wait_for(lambda: _silent(real_redis, accts), 10, what="all silent")
    assert sweeper.sweeper.step() == 6
    assert list(mass.load(real_redis)) == [mass.zone_scope(ZONE)]


def test_outage_messages_settle_so_the_first_of_a_mass_outage_are_held_too(
    real_redis: redis.Redis, redis_url: str, smtp: SmtpSink
) -> None:
    settings = _settings(redis_url, smtp, HBDNS_MASS_SETTLE="3", HBDNS_MASS_HOLD="30")
    store = Store(real_redis, settings)
    accts = [add_account(store, f"w{i}", emails=[f"w{i}@example.org"]) for i in range(10)]
    sweeper, notifier = SweeperService(settings, r=real_redis), Notifier(settings, r=real_redis)
    for a in accts[3:]:
        beat(store, a, LONG)
    for a in accts[:3]:  # the first wave: 3 of 10, no mass outage yet
        beat(store, a)
    sweeper.watch.census_step()
    wait_for(lambda: _silent(real_redis, accts[:3]), 10, what="first wave silent")
    assert sweeper.sweeper.step() == 3 and mass.load(real_redis) == {}
    _drain(notifier)
    assert real_redis.zcard(keys.mass_held()) == 3  # settling, not sent
    for a in accts[3:6]:  # the second wave makes it one
        beat(store, a, 1)
    wait_for(lambda: _silent(real_redis, accts[3:6]), 10, what="second wave silent")
    assert sweeper.sweeper.step() == 3 and list(mass.load(real_redis)) == [mass.SYSTEM]
    _drain(notifier)
    wait_for(lambda: smtp.mails_for(NOC), 10, what="the operator's alarm")
    time.sleep(3.5)  # past the first wave's settle time: it joins the hold instead of going out
    notifier.schedule_step()
    assert all(not smtp.mails_for(f"w{i}@example.org") for i in range(10))
    assert real_redis.zcard(keys.mass_held()) == 6


def test_a_lone_outage_message_goes_after_the_settle_time(
    real_redis: redis.Redis, redis_url: str, smtp: SmtpSink
) -> None:
    settings = _settings(redis_url, smtp, HBDNS_MASS_SETTLE="1")
    store = Store(real_redis, settings)
    acct = add_account(store, "lone", emails=["lone@example.org"])
    sweeper, notifier = SweeperService(settings, r=real_redis), Notifier(settings, r=real_redis)
    beat(store, acct)
    sweeper.watch.census_step()
    wait_for(lambda: _silent(real_redis, [acct]), 10, what="silent")
    assert sweeper.sweeper.step() == 1
    _drain(notifier)
    assert not smtp.mails_for("lone@example.org")
    [neut] = events(real_redis, "neutralized", acct.id)
    wait_for(lambda: notifier.schedule_step() or smtp.mails_for("lone@example.org"), 10, what="offline e-mail")
    [mail] = smtp.mails_for("lone@example.org")
    assert "offline" in mail.subject and mail.received >= neut.at_ms / 1000 + 1


def test_a_sweeper_behind_still_recognises_it_before_the_first_transition(
    real_redis: redis.Redis, redis_url: str, smtp: SmtpSink
) -> None:
    settings = _settings(redis_url, smtp, HBDNS_SWEEP_BATCH="2")  # 2 per batch: the rest waits, due
    store = Store(real_redis, settings)
    accts = [add_account(store, f"b{i}") for i in range(8)]
    sweeper = SweeperService(settings, r=real_redis)
    for a in accts:
        beat(store, a)
    sweeper.watch.census_step()
    wait_for(lambda: _silent(real_redis, accts), 10, what="all silent")
    assert sweeper.sweeper.step() == 8
    types = [e.type for e in events(real_redis)]
    assert types.index(mass.STARTED) < types.index("neutralized")  # at the first batch of 2


def test_silence_in_an_ingest_outage_is_no_mass_outage(real_redis: redis.Redis, redis_url: str, smtp: SmtpSink) -> None:
    """Right after a long Redis outage every account is silent until the listeners write the beats
    they held: that is our outage, held by the sweep, and no mass outage either."""
    settings = _settings(redis_url, smtp)
    store = Store(real_redis, settings)
    accts = [add_account(store, f"i{i}") for i in range(8)]
    sweeper = SweeperService(settings, r=real_redis)
    for a in accts:
        beat(store, a)
    sweeper.watch.census_step()
    wait_for(lambda: _silent(real_redis, accts), 10, what="all silent")
    sec, usec = real_redis.time()
    gone_since = int(sec) * 1000 + int(usec) // 1000 - 20_000  # no listener has marked for 20 s
    for shard in keys.all_shards():
        real_redis.hset(keys.ingest(shard), mapping={"mark": gone_since, "gap_ms": 2000})
    assert sweeper.sweeper.step() == 0  # held: none neutralized
    assert mass.load(real_redis) == {}
    assert not any(real_redis.exists(keys.mass_silent(s)) for s in (mass.SYSTEM, mass.zone_scope(ZONE)))
