"""``make bench``'s mail scenario on the real hbdns stack (bench/bench_mail.py), as pid 1 of a
private namespace like :mod:`tests.support.mail_recovery`: first beat back -> last queued message
delivered, ``--runs`` outages with the recovery flush, then ``--refs`` accounts through the same
outage with the notifier not flushing (Postfix's own retry schedule, the same-run reference); and
per run, last beat -> neutral at pdns and at the caching resolver.
"""

from __future__ import annotations

import argparse
import random
import signal
import time
from typing import Any

from hbdns.model import Account
from tests.support.mail_recovery import INTERVAL, OUTAGE, WINDOW, Watch, last_beat, recovered_at, stack_of
from tests.support.mail_scenarios import Scenario, main
from tests.support.mailnet import BACKUP, CUSTOMER, HOME, NEUTRAL, USERS, MailNet
from tests.support.mailstack import Beater
from tests.support.postfix import wait_queue
from tests.support.servers import wait_for


def bench(net: MailNet, out: dict[str, Any], args: argparse.Namespace) -> None:
    """First beat back -> last queued message delivered, with the flush (``runs`` outages) and, as
    the same-run reference, without it (``refs`` accounts, outages spread over one queue run)."""
    st, store = stack_of(net), net.store
    assert store is not None
    home = net.accounts[HOME]
    users = [f"{u}@{HOME}" for u in sorted(USERS)]
    flushed: list[float] = []
    neutral: dict[str, list[float]] = {"pdns": [], "resolver": []}
    busy = Watch(lambda: bool(st.cached(HOME, "A")) and False, every=0.5)  # the resolver has other users
    client = st.client(store, home, CUSTOMER, "bench")
    wait_for(lambda: st.answers(HOME, "A") == {CUSTOMER}, 30, what="home live")
    phase = random.Random(13)
    for i in range(args.runs):
        # the line drops at any moment between two beats, while the resolver holds the live answer
        wait_for(lambda: st.cached(HOME, "A") == {CUSTOMER}, 30, interval=0.1, what="the resolver answering live")
        time.sleep(phase.uniform(0, INTERVAL))  # a schedule: where between two beats the line drops
        client.signal(signal.SIGKILL)
        net.customer.stop()
        beat_at = last_beat(net, home)
        at_pdns = Watch(lambda: st.answers(HOME, "A") == {NEUTRAL})
        at_resolver = Watch(lambda: st.cached(HOME, "A") == {NEUTRAL}, every=0.05)
        neutral["pdns"].append(at_pdns.wait(30, "neutral at pdns") - beat_at)
        neutral["resolver"].append(at_resolver.wait(30, "neutral at the resolver") - beat_at)
        ids = [net.send(1, rcpt=users[n % len(users)], tag=f"run{i}-{n}")[0] for n in range(5)]
        wait_queue(net.backup, len(ids), 60, deferred=True)
        net.customer.start()
        client = st.client(store, home, CUSTOMER, f"bench{i}")
        wait_for(lambda ids=ids: len(net.delivered(ids)) == len(ids), 60, interval=0.01, what=f"run {i}")
        back = recovered_at(net, home, beat_at)
        flushed.append(max(m.at for m in net.customer.received() if m.message_id in set(ids)) - back)
        wait_queue(net.backup, 0, 30)
    client.signal(signal.SIGKILL)
    busy.stop()
    out.update(flushed=flushed, neutral_after_last_beat_s=neutral, outage_s=OUTAGE)
    out["reference"] = _reference(net, args.refs) if args.refs else []


def _reference(net: MailNet, count: int) -> list[float]:
    """``count`` accounts through the same outage with the notifier not flushing: Postfix's own
    retry schedule. Outages start spread over 280 s (a fresh qmgr scans every 300 s), so every
    phase of the schedule is sampled; each is back ``OUTAGE`` s after its last beat."""
    st = stack_of(net)
    st.set_flush(False)
    net.backup.stop()
    net.backup.start(listen=(BACKUP, 25), resolv_conf=net.workdir / "resolv-backup.conf")
    refs = [net.accounts[n] for n in net.names if n.startswith("ref")][:count]

    def beater(a: Account) -> Beater:
        b = Beater(a, st.port, CUSTOMER, "::1", INTERVAL)
        b.families = {4}
        return b.start()

    beaters = {a.id: beater(a) for a in refs}
    wait_for(lambda: all(st.answers(a.fqdn, "A") == {CUSTOMER} for a in refs), 60, what="references live")
    start = time.time()
    step = 280.0 / len(refs)
    plan = sorted(
        [(start + i * step + t, what, a) for i, a in enumerate(refs) for t, what in ((0, "down"), (WINDOW + 2, "send"),
                                                                                      (OUTAGE, "up"))],
        key=lambda e: e[0],
    )  # fmt: skip
    sent: dict[int, str] = {}
    back: dict[int, float] = {}
    for at, what, a in plan:
        time.sleep(max(0.0, at - time.time()))  # a schedule, not a wait for a condition
        if what == "down":
            beaters[a.id].stop()
        elif what == "send":
            wait_for(lambda a=a: st.answers(a.fqdn, "A") == {NEUTRAL}, 10, interval=0.05, what="reference neutral")
            sent[a.id] = net.send(1, rcpt=f"alice@{a.fqdn}", tag=a.fqdn)[0]
        else:
            beaters[a.id] = beater(a)
            wait_for(lambda a=a: st.answers(a.fqdn, "A") == {CUSTOMER}, 10, interval=0.02, what="reference back")
            back[a.id] = time.time()
    wait_for(lambda: len(net.delivered(list(sent.values()))) == len(sent), 1800, interval=1, what="references")
    for b in beaters.values():
        b.stop()
    arrived = {m.message_id: m.at for m in net.customer.received()}
    return [arrived[sent[a.id]] - back[a.id] for a in refs]


SCENARIOS = {"bench": Scenario(bench, lambda args: {"stack": True, "extra_names": args.refs})}


if __name__ == "__main__":
    raise SystemExit(main(None, SCENARIOS, __name__))
