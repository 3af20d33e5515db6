"""Fault scenarios for the notifier, shared by its tests (scaled down) and ``bench/bench_faults.py`` (full length).

Each runs the real sweeper and notifier as processes on a real redis-server, with the accounts on
the fast test plan (neutral 0.6 s after the last beat), and counts what the receivers got:

- :func:`transport_outage`: the SMTP relay (``email``) and/or the SMS gateway (``sms``) fail for
  ``outage_s`` while every account goes offline; half of them come back during the outage (their
  two messages must arrive as one merged message), the rest after it (an offline message, then a
  plain "back online").
- :func:`notifier_killed`: the notifier is SIGKILLed in the middle of a burst of outage e-mails
  and started again; every e-mail must arrive within 10 s of the restart, and only those that were
  in flight at the kill (accepted by the relay, not yet recorded) may arrive twice.
"""

from __future__ import annotations

import signal
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from hbdns import config, keys, notify_queue
from hbdns.liveness import BeatRequest
from hbdns.model import Account, NotifyPrefs
from hbdns.store import Store
from tests.support.events import consumers as stream_consumers
from tests.support.servers import Process, wait_for
from tests.support.services import LONG, add_account, env_for, events, settled, spawn
from tests.support.sinks import HttpSink, SmtpSink

OFFLINE, MERGED, BACK = "offline", "merged", "back online"


@dataclass
class Figures:
    """What a scenario measured; ``lost``, ``doubled`` and ``wrong`` are the goals (all 0)."""

    expected: int = 0
    delivered: int = 0
    lost: int = 0
    doubled: int = 0
    merged: int = 0
    wrong: int = 0  # a message that should not exist (an offline one after the recovery, ...)
    dead_letters: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


def _kind_email(subject: str, event: str) -> str:
    if "was offline for" in subject:
        return MERGED
    return OFFLINE if event == "neutralized" else BACK if event == "recovered" else event


def _kind_sms(text: str) -> str:
    if "was OFFLINE from" in text:
        return MERGED
    return OFFLINE if " OFFLINE since " in text else BACK if "back ONLINE" in text else text


def _received(channel: str, smtp: SmtpSink | None, http: HttpSink | None) -> list[tuple[str, str, str]]:
    """(recipient, kind, delivery key or text) of every message the receiver accepted, in order."""
    if channel == "email":
        assert smtp is not None
        with smtp.lock:
            mails = list(smtp.mails)
        return [
            (m.rcpts[0], _kind_email(m.subject, m.header("X-Hbdns-Event")), m.header("X-Hbdns-Delivery")) for m in mails
        ]
    assert http is not None
    return [(b["to"], _kind_sms(b["text"]), b["text"]) for b in (r.json() for r in http.ok("/sms"))]


def _count(expected: dict[str, list[str]], got: list[tuple[str, str, str]], figures: Figures) -> None:
    per: dict[str, list[str]] = {}
    for rcpt, kind, _ in got:
        per.setdefault(rcpt, []).append(kind)
    dupes = Counter((rcpt, ident) for rcpt, _, ident in got)
    figures.doubled = sum(n - 1 for n in dupes.values() if n > 1)
    figures.expected = sum(len(v) for v in expected.values())
    figures.delivered = len(got)
    for rcpt, want in expected.items():
        have = per.get(rcpt, [])
        figures.lost += sum(max(0, n - Counter(have)[k]) for k, n in Counter(want).items())
        distinct = list(dict.fromkeys(have))
        if distinct != list(dict.fromkeys(want)):
            figures.wrong += 1
    figures.merged = sum(1 for _, kind, _ in got if kind == MERGED)


def _beat(store: Store, accts: list[Account], expiry_ms: int) -> None:
    store.liveness.beats(
        BeatRequest(account_id=a.id, zone=a.zone, expiry_ms=expiry_ms, ipv4="198.51.100.9") for a in accts
    )


def _neutral(r: redis.Redis, accts: list[Account]) -> bool:
    pipe = r.pipeline(transaction=False)
    for a in accts:
        pipe.hget(keys.account(a.id), "state")
    return all(s == "neutral" for s in pipe.execute())


def transport_outage(
    r: redis.Redis,
    redis_url: str,
    tmp_path: Path,
    *,
    channels: tuple[str, ...],
    outage_s: float,
    backoff_max: float | None,
    accounts: int = 30,
    smtp: SmtpSink | None = None,
    http: HttpSink | None = None,
) -> dict[str, Figures]:
    """The receivers of ``channels`` fail for ``outage_s`` (SMTP: the port refuses connections; SMS: the
    gateway answers 503) while ``accounts`` accounts go offline; the even ones return during the outage.
    ``backoff_max`` None: the shipped backoff settings, else both caps (retries, probes) at it.
    Returns the figures per channel."""
    tuning = {} if backoff_max is None else {
        "HBDNS_NOTIFY_BACKOFF": str(min(1.0, backoff_max / 4)),
        "HBDNS_NOTIFY_BACKOFF_MAX": str(backoff_max),
        "HBDNS_NOTIFY_PROBE_MAX": str(backoff_max),
    }  # fmt: skip
    env = env_for(redis_url, smtp, sms=http, **tuning)
    store = Store(r, config.load(env))
    prefs = NotifyPrefs(
        email="outages" if "email" in channels else "none", webhook="none", sms_min_outage=0,
        sms="outages" if "sms" in channels else "none",
    )  # fmt: skip
    accts = [
        add_account(store, f"o{i}", emails=[f"o{i}@example.org"], phones=[f"+4917010{i:05d}"], prefs=prefs)
        for i in range(accounts)
    ]
    rcpt = {"email": {a.id: a.emails[0] for a in accts}, "sms": {a.id: a.phones[0] for a in accts}}
    back_early, back_late = accts[0::2], accts[1::2]
    alive_ms = max(LONG, int((outage_s + 600) * 1000))  # a return lasts the whole scenario (one outage each)
    procs: list[Process] = [spawn("sweeper", tmp_path, "sweeper", env), spawn("notifier", tmp_path, "notifier", env)]
    figures = {ch: Figures() for ch in channels}
    extra: dict[str, Any] = {}

    def received(ch: str) -> list[tuple[str, str, str]]:
        return _received(ch, smtp, http)

    def all_received(n: int) -> bool:
        return all(len(received(ch)) >= n for ch in channels)

    try:
        _beat(store, accts, alive_ms)  # "online": no message on these channels
        wait_for(lambda: settled(r), 30, what="first beats handled")
        for ch in channels:
            _down(ch, smtp, http)
        t_down = time.monotonic()
        _beat(store, accts, 600)  # the last beat: all go offline 0.6 s later
        wait_for(lambda: _neutral(r, accts), 30, what="burst of outages recorded")
        wait_for(lambda: notify_queue.stats(r).queued >= accounts * len(channels), 60, what="outage messages queued")
        _beat(store, back_early, alive_ms)  # back during the outage: their offline message is moot
        peak = notify_queue.stats(r)
        while time.monotonic() - t_down < outage_s:
            st = notify_queue.stats(r)
            if st.queued >= peak.queued:
                peak = st
            time.sleep(min(1.0, max(0.0, outage_s - (time.monotonic() - t_down))))
        extra["queue_peak"] = peak.queued
        extra["queue_oldest_s"] = round(notify_queue.stats(r).oldest_s, 1)
        extra["held_during_outage"] = sorted(peak.holds)
        for ch in channels:
            _up(ch, smtp, http)
        t_up = time.monotonic()
        cap = backoff_max if backoff_max is not None else config.load({}).notify_probe_max
        wait_for(lambda: all_received(len(accts)), cap * 2 + 60, what="delivery after the outage")
        extra["last_delivery_after_return_s"] = round(time.monotonic() - t_up, 2)
        _beat(store, back_late, alive_ms)  # back after the outage: a plain "back online" follows
        wait_for(lambda: all_received(len(accts) + len(back_late)), 60, what="recoveries")
        wait_for(lambda: settled(r), cap + 60, what="queue empty")
        extra["dead_letters"] = notify_queue.stats(r).dead
        extra["neutralized_events"] = len(events(r, "neutralized"))
        assert extra["neutralized_events"] == len(accts), "one outage per account, or the counts mean nothing"
    finally:
        for p in procs:
            p.stop()
    for ch in channels:
        f = figures[ch]
        f.extra = dict(extra)
        f.dead_letters = extra.get("dead_letters", -1)
        expected = {rcpt[ch][a.id]: [MERGED] for a in back_early} | {rcpt[ch][a.id]: [OFFLINE, BACK] for a in back_late}
        _count(expected, received(ch), f)
    return figures


def _down(channel: str, smtp: SmtpSink | None, http: HttpSink | None) -> None:
    if channel == "email":
        assert smtp is not None
        smtp.down()
    else:
        assert http is not None
        http.default = 503


def _up(channel: str, smtp: SmtpSink | None, http: HttpSink | None) -> None:
    if channel == "email":
        assert smtp is not None
        smtp.up()
    else:
        assert http is not None
        http.default = 200


def notifier_killed(
    r: redis.Redis, redis_url: str, tmp_path: Path, smtp: SmtpSink, *, same_name: bool, accounts: int = 50
) -> Figures:
    """SIGKILL the notifier once ~a fifth of a burst of ``accounts`` outage e-mails went out, then start
    one again (under the same consumer name, or another one that must take the work over)."""
    workers = 8
    env = env_for(redis_url, smtp, HBDNS_NOTIFY_WORKERS=str(workers), HBDNS_NOTIFY_CLAIM_IDLE="60")
    store = Store(r, config.load(env))
    accts = [add_account(store, f"k{i}", emails=[f"k{i}@example.org"]) for i in range(accounts)]
    smtp.delay = 0.1  # each e-mail takes a while: the kill lands with sends in flight
    sweeper = spawn("sweeper", tmp_path, "sweeper", env)
    first = spawn("notifier", tmp_path, "first", env)
    procs = [sweeper, first]
    figures = Figures()
    try:
        wait_for(lambda: any(c["name"] == "first" for c in _consumers(r)), 30, what="first notifier up")
        _beat(store, accts, 600)
        wait_for(lambda: smtp.count() >= accounts // 5, 30, what="burst under way")
        first.signal(signal.SIGKILL)
        first.proc.wait(10)
        time.sleep(smtp.delay + 0.2)  # let the relay finish what it already accepted (it may still 250)
        keys_at_kill = Counter(m.header("X-Hbdns-Delivery") for m in list(smtp.mails))
        pipe = r.pipeline(transaction=False)
        for key in keys_at_kill:
            pipe.get(keys.sent(key))
        in_flight = {k for k, state in zip(keys_at_kill, pipe.execute(), strict=True) if state != "sent"}
        figures.extra["delivered_before_kill"] = sum(keys_at_kill.values())
        figures.extra["in_flight_at_kill"] = len(in_flight)
        restarted_at = time.monotonic()
        second = spawn("notifier", tmp_path, "first" if same_name else "second", env)
        procs.append(second)
        wait_for(lambda: len(set(m.header("X-Hbdns-Delivery") for m in list(smtp.mails))) >= accounts, 30)
        figures.extra["all_delivered_after_restart_s"] = round(time.monotonic() - restarted_at, 2)
        wait_for(lambda: settled(r), 30, what="acknowledged")
        got = Counter(m.header("X-Hbdns-Delivery") for m in list(smtp.mails))
        doubled_keys = {k for k, n in got.items() if n > 1}
        figures.extra["doubled_not_in_flight"] = len(doubled_keys - in_flight)
        figures.extra["workers"] = workers
        figures.dead_letters = notify_queue.stats(r).dead
    finally:
        smtp.delay = 0.0
        for p in procs:
            p.stop()
    expected = {a.emails[0]: [OFFLINE] for a in accts}
    _count(expected, _received("email", smtp, None), figures)
    return figures


def _consumers(r: redis.Redis) -> list[dict[str, Any]]:
    return stream_consumers(r, "hbdns-notifier")
