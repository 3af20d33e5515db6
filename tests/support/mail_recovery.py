"""Issue 13 end to end on the real hbdns stack (phase 2), as pid 1 of a private namespace
(``python -m`` this module via :func:`tests.support.netns.run`; :mod:`tests.support.mail_scenarios`
runs it). DNS follows the customers' beats (``hbdns-client`` pinned to the customer's address, or
:class:`~tests.support.mailstack.Beater` for two families); the backup MX resolves through a
caching resolver; the notifier flushes on recovery. Each step asserts as it goes; what it measured
goes to ``--result``.

``recovery`` (``make test``, tests/e2e/test_mail_backup_mx.py):

1. 100 messages: 30 while the customer is live, 45 during a 60 s outage (its line drops: no
   beats, its server unreachable; 5 more for unknown users), 25 across the recovery; 0 bounced, 0
   lost, 0 twice, 0 accepted for unknown users, the queued ones delivered within 10 s of the
   first beat back;
2. dual stack, during that outage: the IPv4 path of another customer dies while its IPv6 beats go
   on: A goes neutral within the plan's window, AAAA stays, mail still arrives, a notification
   says IPv4 is gone;
3. address change: the customer moves from 127.0.0.5 to 127.0.0.6 between two beats and a
   stranger's SMTP server takes 127.0.0.5: the exposure window, and 0 messages for the stranger
   after DNS at pdns stopped pointing there.

The benchmark's scenario on the same stack: :mod:`tests.support.mail_bench`.
"""

from __future__ import annotations

import argparse
import signal
import statistics
import threading
import time
from collections.abc import Callable
from typing import Any

from hbdns import keys
from hbdns.model import Account
from tests.support.events import fields as stream_fields
from tests.support.mail_scenarios import Scenario, main
from tests.support.mailboxes import Mailbox
from tests.support.mailnet import (
    BACKUP_MX,
    CUSTOMER,
    DUAL,
    DUAL6,
    DUAL_HOME,
    HOME,
    MOVED,
    NEUTRAL,
    NEUTRAL6,
    USERS,
    MailNet,
)
from tests.support.mailstack import Beater, HbdnsStack
from tests.support.postfix import deliveries, wait_queue
from tests.support.servers import Process, wait_for

INTERVAL = 5.0  # heartbeat-c
WINDOW = 15.5  # heartbeat-c: 3 x 5 s + 0.5 s grace
OUTAGE = 60.0


class Watch:
    """Polls ``probe`` in a thread; ``at`` is the first time it answered true (wall clock)."""

    def __init__(self, probe: Callable[[], bool], every: float = 0.02) -> None:
        self.at: float | None = None
        self.error: BaseException | None = None
        self._probe, self._every = probe, every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set() and self.at is None:
            try:
                if self._probe():
                    self.at = time.time()
            except Exception as exc:  # a DNS timeout now and then: keep polling
                self.error = exc
            self._stop.wait(self._every)

    def wait(self, timeout: float, what: str) -> float:
        wait_for(lambda: self.at is not None, timeout, interval=0.05, what=what)
        assert self.at is not None
        return self.at

    def stop(self) -> None:
        self._stop.set()


def stack_of(net: MailNet) -> HbdnsStack:
    assert net.stack is not None and net.store is not None
    return net.stack


def last_beat(net: MailNet, a: Account) -> float:
    assert net.store is not None
    return int(net.store.r.hget(keys.account(a.id), "last_beat") or 0) / 1000


def recovered_at(net: MailNet, a: Account, after: float) -> float:
    """When the account's first beat back was recorded (its ``recovered`` event, Redis clock)."""
    assert net.store is not None
    for f in reversed(stream_fields(net.store.r)):
        if f["type"] == "recovered" and f["account"] == str(a.id) and int(f["at"]) / 1000 >= after:
            return int(f["at"]) / 1000
    raise AssertionError(f"no recovered event of {a.fqdn} after {after}")


def flushes_since(net: MailNet, a: Account, since: float) -> list[str]:
    """Why each flush of ``a`` since ``since`` was made, newest first, once the second one is done."""
    assert net.store is not None
    store = net.store

    def entries() -> list[str]:
        return [
            str(e.get("why"))
            for e in store.account_log(a.id)
            if e["type"] == "mx_flushed" and int(e["at"]) / 1000 >= since - 1
        ]

    wait_for(lambda: "again" in entries(), 30, interval=0.1, what="the second flush")
    return entries()


def mails_to(net: MailNet, *words: str) -> list[str]:
    """Subjects of the notifications the sink got that contain every one of ``words``."""
    st = stack_of(net)
    with st.smtp.lock:
        mails = list(st.smtp.mails)
    return [m.subject for m in mails if all(w in f"{m.subject}\n{m.text}" for w in words)]


def spread(net: MailNet, count: int, seconds: float, tag: str, rcpts: list[str]) -> list[str]:
    """``count`` messages over ``seconds``, one session each, cycling through ``rcpts``."""
    ids: list[str] = []
    start = time.time()
    for i in range(count):
        time.sleep(max(0.0, start + i * seconds / count - time.time()))  # a sending schedule
        ids += net.send(1, rcpt=rcpts[i % len(rcpts)], tag=f"{tag}{i}")
    return ids


def recovery(net: MailNet, out: dict[str, Any], args: argparse.Namespace) -> None:
    st, store = stack_of(net), net.store
    assert store is not None
    home = net.accounts[HOME]
    users = [f"{u}@{HOME}" for u in sorted(USERS)]
    client = st.client(store, home, CUSTOMER, "home")
    wait_for(lambda: st.answers(HOME, "A") == {CUSTOMER}, 30, what="home live at pdns")
    assert st.answers(HOME, "MX") == {f"10 {HOME}.", f"50 {BACKUP_MX}."}

    # 1. live: straight to the customer
    live = net.send(30, tag="live")
    wait_for(lambda: len(net.delivered(live)) == 30, 60, what="live mail")

    # the line drops: no more beats (no OFFLINE either), the customer's server unreachable
    client.signal(signal.SIGKILL)
    net.customer.stop()
    beat_at = last_beat(net, home)
    neutral_pdns = Watch(lambda: st.answers(HOME, "A") == {NEUTRAL})
    neutral_cached = Watch(lambda: st.cached(HOME, "A") == {NEUTRAL}, every=0.1)
    # other users of the backup MX's resolver keep asking: it holds the neutral answer for its TTL
    # when the customer comes back, so the first flush may be deferred again and the second is needed
    busy = Watch(lambda: bool(st.cached(HOME, "A")) and False, every=0.5)
    dual: dict[str, Any] = {}
    side = threading.Thread(target=_guard(dual_stack, net, dual), daemon=True)
    side.start()
    unknown = [f"nosuchuser@{HOME}"]
    outage = spread(net, 40, OUTAGE - 15, "outage", users)
    refused = spread(net, 5, 5, "unknown", unknown)
    out["neutral_after_last_beat_s"] = {
        "pdns": neutral_pdns.wait(30, "neutral at pdns") - beat_at,
        "caching resolver": neutral_cached.wait(30, "neutral at the resolver") - beat_at,
    }
    assert out["neutral_after_last_beat_s"]["caching resolver"] <= 20, out["neutral_after_last_beat_s"]
    assert st.answers(HOME, "MX") == {f"10 {HOME}.", f"50 {BACKUP_MX}."}  # the MX set is kept
    before = spread(net, 10, max(0.0, beat_at + OUTAGE - time.time() - 1), "before", users)
    side.join(120)
    assert dual.get("done"), dual.get("error", "the dual-stack part did not finish")
    out["dual_stack"] = dual
    wait_queue(net.backup, len(outage) + len(before), 60, deferred=True)

    # back: the server first, then the client's first beat
    net.customer.start()
    client = st.client(store, home, CUSTOMER, "home-back")
    wait_for(lambda: st.answers(HOME, "A") == {CUSTOMER}, 20, what="home back at pdns")
    back_at = recovered_at(net, home, beat_at)
    across = spread(net, 20, 5, "across", users)
    valid = live + outage + before + across
    wait_for(lambda: len(net.delivered(valid)) == len(valid), 60, interval=0.05, what="every message delivered")
    busy.stop()
    arrived = {m.message_id: m.at for m in net.customer.received()}
    queued = outage + before
    delays = sorted(arrived[m] - back_at for m in queued)
    wait_queue(net.backup, 0, 30)
    ids = net.customer.ids()
    log = net.backup.log_since()
    dsns = net.dsn.received()
    out["recovery"] = {
        "messages": len(valid),
        "delivered": len(net.delivered(valid)),
        "duplicates": len(ids) - len(set(ids)),
        "bounced": sum(1 for m in dsns if m.sender == "" and b"nosuchuser@" not in m.raw),
        "unknown_sent": len(refused),
        "unknown_refused_by_backup": log.count(f"550 5.1.1 <nosuchuser@{HOME}>"),
        "unknown_accepted": sum(1 for d in deliveries(log).values() for x in d if x.rcpt.startswith("nosuchuser")),
        "queued": len(queued),
        "first_beat_back_to_queued_delivered_s": {"median": statistics.median(delays), "max": delays[-1]},
        "flushes": flushes_since(net, home, back_at),
        "notified": {"offline": len(mails_to(net, HOME, "offline")), "back": len(mails_to(net, HOME, "back online"))},
    }
    rec = out["recovery"]
    assert rec["delivered"] == len(valid) and rec["duplicates"] == 0 and rec["bounced"] == 0, rec
    assert rec["unknown_accepted"] == 0 and rec["unknown_refused_by_backup"] == len(refused), rec
    assert delays[-1] <= 10, rec
    assert rec["notified"]["offline"] >= 1 and rec["notified"]["back"] >= 1, rec
    address_change(net, out, client)


def _guard(fn: Callable[[MailNet, dict[str, Any]], None], net: MailNet, out: dict[str, Any]) -> Callable[[], None]:
    def run() -> None:
        try:
            fn(net, out)
            out["done"] = True
        except BaseException as exc:
            import traceback

            out["error"] = "".join(traceback.format_exception(exc))

    return run


def dual_stack(net: MailNet, out: dict[str, Any]) -> None:
    """2. The IPv4 path dies, IPv6 beats go on."""
    st = stack_of(net)
    dual = net.accounts[DUAL_HOME]
    boxes = [Mailbox(h, name=DUAL_HOME, users=USERS, domains={DUAL_HOME}).start() for h in (DUAL, DUAL6)]
    beater = Beater(dual, st.port, DUAL, DUAL6, INTERVAL).start()
    try:
        wait_for(lambda: st.answers(DUAL_HOME, "A") == {DUAL} and st.answers(DUAL_HOME, "AAAA") == {DUAL6}, 30,
                 what="dual-stack account live on both families")  # fmt: skip

        def got(ids: list[str]) -> bool:
            seen = {m.message_id for b in boxes for m in b.received()}
            return all(i in seen for i in ids)

        first = net.send(3, rcpt=f"alice@{DUAL_HOME}", tag="dual-live")
        wait_for(lambda: got(first), 60, what="dual-stack mail while live")
        beater.families = {6}  # the IPv4 path dies: no more IPv4 beats, its server unreachable
        boxes[0].stop()
        v4_last = beater.last[4]
        aaaa_kept = True

        def a_neutral() -> bool:
            nonlocal aaaa_kept
            aaaa_kept = aaaa_kept and st.answers(DUAL_HOME, "AAAA") == {DUAL6}
            return st.answers(DUAL_HOME, "A") == {NEUTRAL}

        watch = Watch(a_neutral, every=0.05)
        gone = watch.wait(WINDOW + 10, "A neutral") - v4_last
        assert aaaa_kept and st.answers(DUAL_HOME, "AAAA") == {DUAL6}
        assert gone <= WINDOW + 2, gone  # the window, the sweeper's purge, pdns' 1 s cache
        wait_for(lambda: mails_to(net, DUAL_HOME, "lost IPv4"), 20, what="the notification that IPv4 is gone")
        after = net.send(3, rcpt=f"bob@{DUAL_HOME}", tag="dual-v6")
        wait_for(lambda: got(after), 60, what="dual-stack mail over IPv6 after IPv4 died")
        via = [d.relay for mid in after for d in deliveries(net.sender.log_since()).get(mid, []) if d.status == "sent"]
        out.update(
            a_neutral_after_last_ipv4_beat_s=gone,
            aaaa_kept=aaaa_kept,
            neutral_aaaa=st.answers(DUAL_HOME, "AAAA") == {NEUTRAL6},
            delivered_after=len(after),
            delivered_via=sorted(set(via)),
            notification=mails_to(net, DUAL_HOME, "lost IPv4")[0],
        )
    finally:
        beater.stop()
        for b in boxes:
            b.stop()


def address_change(net: MailNet, out: dict[str, Any], client: Process) -> None:
    """3. The customer moves from 127.0.0.5 to 127.0.0.6 between two beats; a stranger takes .5."""
    st, store = stack_of(net), net.store
    assert store is not None
    home = net.accounts[HOME]
    beat_at = last_beat(net, home)
    wait_for(lambda: last_beat(net, home) > beat_at, INTERVAL + 5, interval=0.05, what="a beat")
    beat_at = last_beat(net, home)
    time.sleep(max(0.0, beat_at + 1.0 - time.time()))  # a schedule: the move, 1 s after a beat
    client.signal(signal.SIGKILL)
    moved_at = time.time()
    net.customer.move(MOVED)
    stranger = Mailbox(CUSTOMER, name="stranger.isp.test").start()  # accepts anything (Tobit David's default)
    dns_moved = Watch(lambda: st.answers(HOME, "A") == {MOVED}, every=0.01)
    cache_moved = Watch(lambda: st.cached(HOME, "A") == {MOVED}, every=0.05)
    sent: dict[str, float] = {}
    sender = threading.Thread(target=lambda: sent.update(_steady(net, 16, 0.5)), daemon=True)
    sender.start()
    time.sleep(max(0.0, beat_at + INTERVAL - time.time()))  # its next beat goes out from the new address
    st.client(store, home, MOVED, "moved")
    changed = dns_moved.wait(20, "pdns answering the new address")
    cached = cache_moved.wait(20, "the resolver answering the new address")
    sender.join(30)
    wait_for(lambda: all(m in {x.message_id for x in stranger.received()} | set(net.customer.ids()) for m in sent),
             60, what="every message of the move delivered somewhere")  # fmt: skip
    got = {m.message_id: m.at for m in stranger.received()}
    out["address_change"] = {
        "exposure_s": changed - moved_at,
        "exposure_through_resolver_s": cached - moved_at,
        "messages": len(sent),
        "stranger_got": len(got),
        "stranger_got_sent_after_dns_changed": sum(1 for m in got if sent.get(m, 0) > changed),
        "stranger_got_after_dns_changed": sum(1 for at in got.values() if at > changed + 0.5),
    }
    stranger.stop()
    ac = out["address_change"]
    assert ac["stranger_got_sent_after_dns_changed"] == 0 and ac["stranger_got_after_dns_changed"] == 0, ac
    assert ac["exposure_s"] <= INTERVAL + 2, ac


def _steady(net: MailNet, count: int, every: float) -> dict[str, float]:
    """``count`` messages, one each ``every`` s: Message-ID -> when it was handed to the sender."""
    out: dict[str, float] = {}
    start = time.time()
    for i in range(count):
        time.sleep(max(0.0, start + i * every - time.time()))  # a sending schedule
        at = time.time()
        out[net.send(1, tag=f"move{i}")[0]] = at
    return out


SCENARIOS = {"recovery": Scenario(recovery, lambda args: {"stack": True})}


if __name__ == "__main__":
    raise SystemExit(main(None, SCENARIOS, __name__))
