"""Issue 14's Redis outage: redis-server SIGKILLed under a beating fleet and restarted from its AOF.

Shared by ``tests/integration/test_redis_outage.py`` (``make test``) and the "faults" benchmark
(``bench/bench_faults.py``). Real parts: redis-server with the shipped AOF setting (``appendfsync
everysec``: the last second of writes may be lost, as in production), the listener process, the
sweeper's and the notifier's loops in this process (their real step functions), an SMTP sink, and
optionally pdns with the real backend asked for the accounts' names all along.

Each outage: every account beats every 5 s (heartbeat-c, window 15.5 s) from 127.0.0.1; one of
them, the "stopper", stops for good at the kill (a customer whose line really went down meanwhile).
Redis is SIGKILLed, left down for ``seconds``, started again from its AOF. Then the scenario waits
until the stopper was neutralized and notified and one more window passed with no false transition
possible any more, resumes the stopper (its recovery must be recorded once), and counts everything
from the event stream and the SMTP sink, not from what was sent.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from hbdns import config, keys
from hbdns.connection import connect
from hbdns.model import Account, Zone
from hbdns.store import Store
from notifier.main import Notifier
from sweeper.main import SweeperService
from tests.support.dns_probe import Prober
from tests.support.events import fields as stream_fields
from tests.support.events import settled as stream_settled
from tests.support.fleet import Beater, Fleet
from tests.support.listener import Listener
from tests.support.pdns import PdnsServer, started_pdns, stop_all
from tests.support.servers import RedisServer, wait_for
from tests.support.sinks import SmtpSink

ZONE = "outage.test"
NEUTRAL = "192.0.2.1"
WINDOW = 15.5  # heartbeat-c: 3 x 5 s + 0.5 s
LIVE = "127.0.0.1"


@dataclass
class OutageFigures:
    seconds: float  # how long Redis was down (kill -> started again)
    accounts: int  # accounts that kept beating
    false_transitions: int  # neutralized/family_lost of accounts that kept beating (goal 0)
    false_mails: int  # e-mails about accounts that kept beating (goal 0)
    stopper_transitions: list[str]  # what the stopper's outage recorded (goal: neutralized, recovered)
    stopper_mails: int  # e-mails about the stopper's outage (goal 2: offline, back online)
    doubled: int  # a transition recorded twice (goal 0)
    nxdomain_during: int  # NXDOMAIN answers from pdns from the kill to the end (goal 0)
    probes_during: int
    servfail_during: int  # pdns' answer while the backend cannot read Redis
    neutral_after: int  # answers of the neutral address for beating accounts after the restart
    answers_after: int  # NOERROR answers for them after the restart
    neutral_until_s: float  # restart -> the last of those neutral answers (0: none)
    live_again_s: float  # restart -> every beating account's alive key back
    stopper_neutralized_after_s: float  # restart -> the stopper's neutralization recorded
    held_beats_reapplied: int  # held beats the listener wrote on reconnect
    extra: dict[str, Any] = field(default_factory=dict)


class OutageRig:
    """Redis (AOF), the listener, sweeper and notifier loops, an SMTP sink, optionally pdns; accounts."""

    def __init__(self, workdir: Path, accounts: int = 150, stoppers: int = 2, with_pdns: bool = True) -> None:
        self.workdir = workdir
        self.redis = RedisServer(workdir / "redis", persist=True, extra=["appendfsync everysec"]).start()
        self.r = connect(self.redis.url)
        env = {"HBDNS_REDIS_URL": self.redis.url, "HBDNS_SWEEP_INTERVAL": "0.2"}
        self.smtp = SmtpSink().start()
        self.store = Store(self.r, config.load(env))
        self.store.add_zone(Zone(ZONE, (f"ns1.{ZONE}",), f"hostmaster.{ZONE}", NEUTRAL))

        def add(name: str) -> Account:
            account = self.store.new_account(f"{name}.{ZONE}", "heartbeat-c", emails=("ops@customer.test",))
            return self.store.add_account(account)

        self.beaters = [add(f"h{i}") for i in range(accounts - stoppers)]
        self.stoppers = [add(f"gone{i}") for i in range(stoppers)]
        self.pdns: PdnsServer | None = started_pdns(workdir / "dns", self.redis.url) if with_pdns else None
        writer_env = self.pdns.writer_env if self.pdns is not None else {}
        self.listener = Listener(workdir, self.redis.url, **writer_env).start()
        settings = config.load(
            {**env, **writer_env, "HBDNS_SMTP_HOST": "127.0.0.1", "HBDNS_SMTP_PORT": str(self.smtp.port)}
        )
        self.sweeper = SweeperService(settings, r=connect(self.redis.url)).start()
        self.notifier = Notifier(settings, r=connect(self.redis.url)).start()
        everyone = [*self.beaters, *self.stoppers]
        self.fleet = Fleet(
            self.listener.port,
            [Beater(a.id, a.hb_key, (LIVE,), phase=i * 5.0 / len(everyone)) for i, a in enumerate(everyone)],
        ).start()
        self.prober = Prober(self.pdns, [a.fqdn for a in self.beaters], pause=0.02) if self.pdns else None
        wait_for(lambda: all(self.store.status(a).live for a in everyone), 20, what="every account live")
        wait_for(self._mails_settled, 30, what="the first notifications sent")
        if self.prober is not None:
            self.prober.start()

    def _mails_settled(self) -> bool:
        return stream_settled(self.r, "hbdns-notifier")

    def redis_ms(self) -> int:
        sec, usec = self.r.time()
        return int(sec) * 1000 + int(usec) // 1000

    def alive_count(self) -> int:
        pipe = self.r.pipeline(transaction=False)
        for a in self.beaters:
            pipe.exists(keys.alive(a.id, 4))
        return sum(pipe.execute())

    def events(self) -> list[dict[str, str]]:
        return stream_fields(self.r)

    def mails_about(self, accounts: list[Account]) -> int:
        names = {a.fqdn for a in accounts}
        with self.smtp.lock:
            subjects = [m.subject for m in self.smtp.mails]
        return sum(1 for s in subjects if names.intersection(s.replace(":", " ").split()))

    def outage(self, seconds: float, stopper: Account) -> OutageFigures:
        """One Redis SIGKILL of ``seconds`` with ``stopper`` stopping at the kill."""
        before = len(self.events())
        mails_before = self.mails_about(self.beaters)
        stopper_mails_before = self.mails_about([stopper])
        reapplied_before = self.listener.metrics().get("hbdns_heartbeat_reapplied_total", 0.0)
        self.fleet.halt(stopper.id)
        t_kill = time.monotonic()
        self.redis.kill()
        while time.monotonic() < t_kill + seconds:
            time.sleep(0.1)
        t_up = time.monotonic()  # the restart begins (loading the AOF)
        self.redis.start()
        wait_for(lambda: self.alive_count() == len(self.beaters), 20, interval=0.05, what="every beater live again")
        live_again = time.monotonic() - t_up

        def stopper_gone() -> bool:
            return any(f["type"] == "neutralized" and f["account"] == str(stopper.id) for f in self.events()[before:])

        wait_for(stopper_gone, WINDOW + 20, interval=0.1, what="the stopped account neutralized")
        neutralized_after = time.monotonic() - t_up
        # held deadlines are released together, one window after ingest was back (the stopper's among
        # them): a false transition would have been recorded with it; a few seconds more for stragglers
        settle = time.monotonic() + 3.0
        wait_for(lambda: self.mails_about([stopper]) > stopper_mails_before, 20, what="the offline e-mail")
        self.fleet.resume(stopper.id)
        wait_for(lambda: self.mails_about([stopper]) >= stopper_mails_before + 2, 20, what="the back online e-mail")
        while time.monotonic() < settle:
            time.sleep(0.1)
        wait_for(self._mails_settled, 20, what="every notification sent")
        t_end = time.monotonic()
        return self._figures(seconds, stopper, before, mails_before, stopper_mails_before, reapplied_before,
                             (t_kill, t_up, t_end), live_again, neutralized_after)  # fmt: skip

    def _figures(
        self,
        seconds: float,
        stopper: Account,
        before: int,
        mails_before: int,
        stopper_mails_before: int,
        reapplied_before: float,
        times: tuple[float, float, float],
        live_again: float,
        neutralized_after: float,
    ) -> OutageFigures:
        t_kill, t_up, t_end = times
        new = self.events()[before:]
        ids = {str(a.id) for a in self.beaters}
        false = [f for f in new if f["account"] in ids and f["type"] in ("neutralized", "family_lost")]
        kinds = Counter((f["account"], f["type"], f["at"]) for f in new)
        stopper_kinds = [f["type"] for f in new if f["account"] == str(stopper.id)]
        seen = self.prober.seen if self.prober is not None else []
        during = [s for s in seen if t_kill <= s[0] <= t_end]
        after = [s for s in during if s[0] >= t_up and s[2] == "NOERROR"]
        return OutageFigures(
            seconds=seconds,
            accounts=len(self.beaters),
            false_transitions=len(false),
            false_mails=self.mails_about(self.beaters) - mails_before,
            stopper_transitions=stopper_kinds,
            stopper_mails=self.mails_about([stopper]) - stopper_mails_before,
            doubled=sum(n - 1 for n in kinds.values()),
            nxdomain_during=sum(1 for s in during if s[2] == "NXDOMAIN"),
            probes_during=len(during),
            servfail_during=sum(1 for s in during if s[2] == "SERVFAIL"),
            neutral_after=sum(1 for s in after if NEUTRAL in s[3]),
            answers_after=len(after),
            neutral_until_s=round(max((s[0] - t_up for s in after if NEUTRAL in s[3]), default=0.0), 2),
            live_again_s=round(live_again, 2),
            stopper_neutralized_after_s=round(neutralized_after, 2),
            held_beats_reapplied=int(
                self.listener.metrics().get("hbdns_heartbeat_reapplied_total", 0.0) - reapplied_before
            ),
            extra={
                "false": false[:5],
                "events": len(new),
                "probe_timeouts": self.prober.timeouts if self.prober else 0,
            },
        )

    def stop(self) -> None:
        for step in (
            self.fleet.stop,
            *((self.prober.stop,) if self.prober is not None else ()),
            self.listener.stop,
            self.sweeper.stop,
            self.notifier.stop,
            *((lambda: stop_all(self.pdns),) if self.pdns is not None else ()),
            self.smtp.stop,
            self.redis.stop,
        ):
            try:
                step()
            except (OSError, RuntimeError, redis.RedisError):
                pass
