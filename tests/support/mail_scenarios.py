"""Mail scenarios of issue 13, run as pid 1 of a private namespace (``python -m`` this module via
:func:`tests.support.netns.run`): they assert as they go and write what they measured to
``--result`` (JSON). ``phase1`` is the ``make test`` scenario; bench/bench_mail.py runs ``bench``.

phase1, at the DNS level with real Postfix (DNS from a static zone, see tests.support.mailnet):

1. today's neutral DNS (MX = backup only, A = neutral): a stock relay config on the backup MX
   bounces (``loops back to myself``) after the sender was told ``250``; the deployed config
   (transport to the customer's own name) defers the same message instead;
2. MX set kept, A = the neutral host: senders fall back to the backup in milliseconds, the backup
   queues, refuses an unknown user during SMTP, and a flush while the customer is down is harmless;
   the same with a neutral address that refuses connections, for the sender cost;
3. the customer is back: one ETRN right after DNS shows it delivers every queued message once,
   within seconds; then the postqueue path, ETRN from a stranger (554) and a name the backup does
   not relay (459).
"""

from __future__ import annotations

import argparse
import json
import signal
import statistics
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any, NamedTuple

from hbdns.etrn import FlushTarget, Outcome
from hbdns.mta_flush import MtaFlusher
from tests.support.mailnet import (
    BACKUP,
    BACKUP_MX,
    CUSTOMER,
    DROPPING,
    HOME,
    NEUTRAL,
    REFUSING,
    MailNet,
)
from tests.support.postfix import DEPLOY, deliveries, parse_main, wait_queue
from tests.support.servers import wait_for

LIVE_MX = [(10, HOME), (50, BACKUP_MX)]
TODAY_NEUTRAL_MX = [(50, BACKUP_MX)]


def flusher(source: str = "127.0.0.1") -> MtaFlusher:
    return MtaFlusher(
        [FlushTarget("smtp", BACKUP, 25)],
        timeout=10,
        attempts=3,
        backoff=0.2,
        backoff_max=1,
        helo="hbdns.provider.test",
        source_address=source,
    )


def _delays(net: MailNet, ids: list[str], relay_prefix: str, strict: bool = True) -> list[float]:
    """Sender-side delay (arrival at the sending MTA -> accepted by ``relay``) of each message sent
    there; with ``strict``, every message must have gone there."""
    seen = deliveries(net.sender.log_since())
    out = []
    for mid in ids:
        sent = [d for d in seen.get(mid, []) if d.status == "sent" and d.relay.startswith(relay_prefix)]
        assert len(sent) == 1 or not strict, (mid, seen.get(mid))
        out += [d.delay for d in sent]
    return out


def _wait_sent(net: MailNet, ids: list[str], timeout: float = 60) -> None:
    def all_sent() -> bool:
        seen = deliveries(net.sender.log_since())
        return all(any(d.status == "sent" for d in seen.get(mid, [])) for mid in ids)

    wait_for(all_sent, timeout, interval=0.05, what=f"{len(ids)} messages sent by the sending MTA")


def phase1(net: MailNet, out: dict[str, Any]) -> None:
    transport = parse_main((DEPLOY / "main.cf").read_text())["transport_maps"]

    # 1. today's neutral DNS: MX set = backup only, A = neutral
    net.customer.stop()
    net.set_home(a=NEUTRAL, mx=TODAY_NEUTRAL_MX)
    net.backup.set(transport_maps="")  # a stock relay config: the backup follows the MX set
    mark = net.backup.log_size()
    net.send(1, tag="today")  # the sending MTA said 250 (send() raises otherwise)
    hit = net.backup.wait_log(r"status=bounced \((mail for \S+ loops back to myself)\)", 30, mark)
    wait_for(lambda: len(net.bounces()) == 1, 30, what="the bounce at the sender's mailbox")
    out["today_stock"] = {"backup_log": hit[0].group(1), "bounces": len(net.bounces())}

    net.backup.set(transport_maps=transport)  # the deployed config
    mark = net.backup.log_size()
    rescued = net.send(1, tag="today-deploy")
    net.backup.wait_log(r"status=deferred \(host \S+\[127\.0\.0\.9\]\S* refused to talk to me: 421 4\.4\.2", 30, mark)
    wait_queue(net.backup, 1, 10, deferred=True)
    out["today_deploy"] = {"queued": len(net.backup.queue()), "bounces": len(net.bounces())}
    assert len(net.bounces()) == 1, "the deployed config must not bounce"

    # 2. MX set kept, A = the neutral host (421)
    net.set_home(a=NEUTRAL, mx=LIVE_MX)
    mark = net.backup.log_size()
    queued = net.send(10, tag="outage")
    _wait_sent(net, queued)
    cost_421 = _delays(net, queued, BACKUP_MX)
    wait_queue(net.backup, 1 + len(queued), 30, deferred=True)
    net.backup.wait_log(r"status=deferred", 30, mark, count=len(queued))  # each tried once
    reasons = deliveries(net.backup.log_since(mark))
    assert all(d.status == "deferred" and "421 4.4.2" in d.reason for mid in queued for d in reasons[mid]), reasons

    unknown_mark = net.backup.log_size()
    net.send(1, rcpt=f"nosuchuser@{HOME}", tag="unknown")
    refused = net.backup.wait_log(r"reject: RCPT from \S+: (550 5\.1\.1 <nosuchuser@\S+>: [^;]+);", 30, unknown_mark)
    wait_for(lambda: len(net.bounces()) == 2, 30, what="the sender's own DSN for nosuchuser")
    assert b"nosuchuser@" in net.dsn.received()[-1].raw
    wait_queue(net.backup, 1 + len(queued), 5)  # nothing accepted for the unknown user

    mark = net.backup.log_size()
    early = flusher().flush([HOME])  # ETRN while the customer is still down: harmless
    assert [r.outcome for r in early] == [Outcome.FLUSHED], early
    net.backup.wait_log(r"status=deferred", 10, mark, count=1 + len(queued))  # tried again, deferred again
    wait_queue(net.backup, 1 + len(queued), 10, deferred=True)

    net.set_home(a=REFUSING, mx=LIVE_MX)  # a neutral address that refuses port 25
    refusing = net.send(5, tag="refusing")
    _wait_sent(net, refusing)
    cost_refused = _delays(net, refusing, BACKUP_MX)
    wait_queue(net.backup, 1 + len(queued) + len(refusing), 30, deferred=True)

    # 3. the customer is back
    net.customer.start()
    back_at = net.set_home(a=CUSTOMER, mx=LIVE_MX)
    results = flusher().flush([HOME])
    assert [r.outcome for r in results] == [Outcome.FLUSHED], results
    waiting = rescued + queued + refusing
    wait_for(lambda: len(net.delivered(waiting)) == len(waiting), 30, interval=0.02, what="queued mail delivered")
    arrivals = [m.at for m in net.customer.received() if m.message_id in set(waiting)]
    wait_queue(net.backup, 0, 10)
    ids = net.customer.ids()
    assert sorted(ids) == sorted(set(ids)), "a message was delivered twice"
    live = net.send(3, tag="live")
    wait_for(lambda: len(net.delivered(live)) == 3, 30, what="live mail")
    # Right after recovery a sending Postfix may still reuse its cached session to the backup MX for
    # the same destination (conn_use=2 in its log), whatever the MX order; the backup relays at once.
    cost_live = _delays(net, live, HOME, strict=False)

    # the postqueue path (a backup MX on the same host), a stranger's ETRN, a name not relayed here
    net.customer.stop()
    net.set_home(a=NEUTRAL, mx=LIVE_MX)
    local = net.send(2, tag="postqueue")
    wait_queue(net.backup, 2, 30, deferred=True)
    net.customer.start()
    pq_back = net.set_home(a=CUSTOMER, mx=LIVE_MX)
    pq = MtaFlusher(
        [FlushTarget("postqueue", config_dir=str(net.backup.config_dir))], attempts=2, backoff=0.2, helo="hbdns.test"
    )
    assert [r.outcome for r in pq.flush([HOME])] == [Outcome.FLUSHED]
    wait_for(lambda: len(net.delivered(local)) == 2, 30, interval=0.02, what="postqueue -s delivery")
    pq_delay = max(m.at for m in net.customer.received() if m.message_id in set(local)) - pq_back
    stranger = flusher(source="127.0.0.30").flush([HOME])
    other = flusher().flush(["example.org"])
    assert (stranger[0].outcome, stranger[0].code) == (Outcome.REFUSED, 554), stranger
    assert (other[0].outcome, other[0].code) == (Outcome.NOT_ELIGIBLE, 459), other
    assert len(net.bounces()) == 2 and not net.sender.queue()

    out.update(
        outage_refused_unknown=refused[0].group(1),
        queued=len(waiting),
        delivered=len(net.delivered(waiting)),
        duplicates=len(ids) - len(set(ids)),
        bounces_total=len(net.bounces()),
        flush_to_last_delivery_s=max(arrivals) - back_at,
        flush_result=results[0].to_dict(),
        postqueue_to_last_delivery_s=pq_delay,
        stranger_etrn=stranger[0].to_dict(),
        not_relayed_etrn=other[0].to_dict(),
        sender_delay_s={
            "live (direct to the customer)": statistics.median(cost_live) if cost_live else None,
            "neutral host, 421": statistics.median(cost_421),
            "neutral address refusing": statistics.median(cost_refused),
        },
        sender_delays_raw={"live": cost_live, "421": cost_421, "refused": cost_refused},
        live_via_cached_backup_session=len(live) - len(cost_live),
    )


def bench(net: MailNet, out: dict[str, Any], runs: int, refs: int, outage: float = 60.0) -> None:
    """``make bench`` (bench/bench_mail.py): sender cost per kind of neutral address (one message at
    a time), ``runs`` outages with an ETRN flush, then ``refs`` accounts left to Postfix's default
    schedule (no flush) as the reference."""
    costs: dict[str, list[float]] = {}

    def cost(label: str, address: str, relay: str, n: int) -> list[float]:
        net.set_home(a=address, mx=LIVE_MX)
        values: list[float] = []
        for i in range(n):
            ids = net.send(1, tag=f"cost-{label}-{i}")
            _wait_sent(net, ids, timeout=60)
            values += _delays(net, ids, relay)
        return values

    costs["live"] = cost("live", CUSTOMER, HOME, runs)
    net.customer.stop()
    costs["421"] = cost("421", NEUTRAL, BACKUP_MX, runs)
    costs["refused"] = cost("refused", REFUSING, BACKUP_MX, runs)
    wait_queue(net.backup, len(costs["421"]) + len(costs["refused"]), 30, deferred=True)
    net.customer.start()
    net.set_home(a=CUSTOMER, mx=LIVE_MX)
    assert flusher().flush([HOME])[0].ok
    wait_queue(net.backup, 0, 60)

    flushed: list[float] = []
    for i in range(runs):
        net.customer.stop()
        net.set_home(a=NEUTRAL, mx=LIVE_MX)
        ids = net.send(5, tag=f"run{i}")
        wait_queue(net.backup, 5, 30, deferred=True)
        net.customer.start()
        back = net.set_home(a=CUSTOMER, mx=LIVE_MX)
        assert flusher().flush([HOME])[0].ok
        wait_for(lambda ids=ids: len(net.delivered(ids)) == len(ids), 30, interval=0.01, what=f"run {i} delivered")
        flushed.append(max(m.at for m in net.customer.received() if m.message_id in set(ids)) - back)
        wait_queue(net.backup, 0, 10)

    reference: list[float] = []
    if refs:
        # A fresh qmgr: its deferred-queue scans run every queue_run_delay (300 s) from now. Outages
        # start spread over one such period, so the reference covers every phase of the schedule.
        net.backup.stop()
        net.backup.start(listen=(BACKUP, 25))
        start = time.time()
        names = net.names[1 : refs + 1]
        step = 280.0 / max(1, len(names))
        events = sorted(
            [(start + 5 + i * step, "down", name) for i, name in enumerate(names)]
            + [(start + 5 + i * step + outage, "up", name) for i, name in enumerate(names)]
        )
        sent: dict[str, str] = {}
        back_at: dict[str, float] = {}
        for at, what, name in events:
            time.sleep(max(0.0, at - time.time()))  # a schedule, not a wait for a condition
            if what == "down":
                net.set_home(name=name, a=NEUTRAL, mx=[(10, name), (50, BACKUP_MX)])
                sent[name] = net.send(1, rcpt=f"alice@{name}", tag=name)[0]
            else:
                back_at[name] = net.set_home(name=name, a=CUSTOMER, mx=[(10, name), (50, BACKUP_MX)])
        wait_for(
            lambda: len(net.delivered(list(sent.values()))) == len(sent), 900, interval=1, what="reference deliveries"
        )
        arrived = {m.message_id: m.at for m in net.customer.received()}
        reference = [arrived[sent[name]] - back_at[name] for name in names]
        out["reference_deliveries_at_s"] = sorted({round(arrived[sent[n]] - start) for n in names})
    # Last, as it disturbs what follows: the backup MX's own attempts hang for smtp_connect_timeout
    # too, and a message in such an attempt when the customer is back misses the flush.
    net.drop_connections_to(DROPPING)
    net.customer.stop()
    net.set_home(a=DROPPING, mx=LIVE_MX)
    dropped = net.send(3, tag="cost-dropped")  # in parallel: each waits smtp_connect_timeout (30 s)
    _wait_sent(net, dropped, timeout=120)
    costs["dropped"] = _delays(net, dropped, BACKUP_MX)
    assert not net.bounces(), net.bounces()
    out.update(costs=costs, flushed=flushed, reference=reference, outage_s=outage)


class Scenario(NamedTuple):
    """What ``python -m <module> NAME`` runs: ``run(net, out, args)`` on a started :class:`MailNet`
    made with ``net(args)``'s keywords."""

    run: Callable[[MailNet, dict[str, Any], argparse.Namespace], None]
    net: Callable[[argparse.Namespace], dict[str, Any]]


SCENARIOS = {
    "phase1": Scenario(lambda net, out, args: phase1(net, out), lambda args: {}),
    "bench": Scenario(lambda net, out, args: bench(net, out, args.runs, args.refs), lambda a: {"extra_names": a.refs}),
}


def main(argv: list[str] | None = None, scenarios: dict[str, Scenario] = SCENARIOS, prog: str = __name__) -> int:
    """Run one scenario as pid 1 of its namespace; what it measured (or its error) to ``--result``."""
    parser = argparse.ArgumentParser(prog=f"python -m {prog}")
    parser.add_argument("scenario", choices=sorted(scenarios))
    parser.add_argument("--result", type=Path, required=True)
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--runs", type=int, default=20, help="bench: outages with a flush")
    parser.add_argument("--refs", type=int, default=20, help="bench: outages left to Postfix's schedule")
    args = parser.parse_args(argv)

    def on_term(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(143)  # pid 1 ignores SIGTERM unless it has a handler

    signal.signal(signal.SIGTERM, on_term)
    out: dict[str, Any] = {"scenario": args.scenario, "started": time.time()}
    scenario = scenarios[args.scenario]
    net = MailNet(args.workdir, **scenario.net(args))
    code = 0
    try:
        net.start()
        out["setup_s"] = time.time() - out["started"]
        scenario.run(net, out, args)
    except BaseException as exc:
        code = 1
        out["error"] = "".join(traceback.format_exception(exc))
        print(out["error"], file=sys.stderr)
    finally:
        net.keep_logs()
        net.stop()
        net.remove_root()
        out["seconds"] = time.time() - out["started"]
        args.result.write_text(json.dumps(out, indent=2, default=str))
    return code


if __name__ == "__main__":
    raise SystemExit(main())
