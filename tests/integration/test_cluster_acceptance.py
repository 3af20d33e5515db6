"""Issue 16: the product on a Redis Cluster of 3 primaries and 3 replicas (tests/support/cluster.py).

Every service talks to the cluster (``redis+cluster://``): the store, the listener's raw beat path,
the sweeper, the notifier (e-mails to an SMTP sink) and the DNS backend behind pdns. The
acceptance scenario runs on it (beats, an address change, an outage neutralized and notified, the
recovery notified), and in the middle of it two primaries fail over: one by ``CLUSTER FAILOVER``
on its replica, another SIGKILLed so that its replica takes over. No transition and no message is
lost or doubled, no account that kept beating is neutralized, pdns never answers NXDOMAIN.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hbdns import config, keys
from hbdns.cluster_route import slot
from hbdns.connection import connect, is_cluster
from hbdns.model import Account, Zone
from hbdns.store import Store
from notifier.main import Notifier
from sweeper.main import SweeperService
from tests.support.cluster import Cluster
from tests.support.dns_probe import Prober
from tests.support.events import fields as stream_fields
from tests.support.events import settled as stream_settled
from tests.support.fleet import Beater, Fleet
from tests.support.listener import Listener
from tests.support.pdns import started_pdns, stop_all
from tests.support.servers import wait_for
from tests.support.sinks import SmtpSink

ZONE = "cluster.test"
NEUTRAL = "192.0.2.1"
WINDOW = 15.5  # heartbeat-c: 3 x 5 s + 0.5 s
OWNER = "owner@customer.test"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = Cluster(Path(tmp_path_factory.mktemp("cluster")), primaries=3, replicas=1).start()
    try:
        yield c
    finally:
        c.stop()


def _shard_owner(cluster: Cluster, account: Account) -> int:
    """The port of the primary that serves the account's shard now."""
    return cluster.owner(slot(keys.account(account.id))).port


def _chain_holds(acked: list[str], recorded: list[str]) -> bool:
    it = iter(recorded)
    return all(any(r == a for r in it) for a in acked)


def test_acceptance_and_failovers_on_a_cluster(cluster: Cluster, tmp_path: Path) -> None:
    url = cluster.url
    r = connect(url)
    assert is_cluster(r)
    smtp = SmtpSink().start()
    env = {"HBDNS_REDIS_URL": url, "HBDNS_SWEEP_INTERVAL": "0.2"}
    store = Store(connect(url), config.load(env))
    store.add_zone(Zone(ZONE, (f"ns1.{ZONE}",), f"hostmaster.{ZONE}", NEUTRAL))

    def add(name: str, **kw: object) -> Account:
        return store.add_account(store.new_account(f"{name}.{ZONE}", "heartbeat-c", **kw))

    beaters = [add(f"h{i}") for i in range(47)]  # ids spread over all 16 shards
    stopper = add("gone", emails=(OWNER,))
    assert len({keys.shard_of(a.id) for a in beaters}) == keys.SHARDS
    movers = {a.id for a in beaters[:6]}  # a new address on every beat
    pdns = started_pdns(tmp_path / "dns", url)
    listener = Listener(tmp_path, url, **pdns.writer_env).start()
    settings = config.load(
        {**env, **pdns.writer_env, "HBDNS_SMTP_HOST": "127.0.0.1", "HBDNS_SMTP_PORT": str(smtp.port)}
    )
    sweeper = SweeperService(settings, r=connect(url)).start()
    notifier = Notifier(settings, r=connect(url)).start()
    everyone = [*beaters, stopper]
    fleet = Fleet(
        listener.port,
        [
            Beater(a.id, a.hb_key, ("127.0.0.2", "127.0.0.3") if a.id in movers else ("127.0.0.1",), phase=i * 0.1)
            for i, a in enumerate(everyone)
        ],
    )
    prober = Prober(pdns, [a.fqdn for a in beaters], pause=0.01)
    try:
        fleet.start()
        wait_for(lambda: all(store.status(a).live for a in everyone), 20, what="every account live")
        wait_for(lambda: stream_settled(r, "hbdns-notifier"), 30, what="the notifier caught up")
        prober.start()
        live_since = time.monotonic() + 2.0  # pdns' 1 s caches hold live answers by then
        # address changes show at pdns: the mover is answered with each of its two addresses
        mover = beaters[0]
        both = {frozenset({"127.0.0.2"}), frozenset({"127.0.0.3"})}
        wait_for(
            lambda: both <= {ips for _, n, _, ips in list(prober.seen) if n == mover.fqdn},
            20,
            what="both of the mover's addresses answered by pdns",
        )
        # the outage: the stopper stops; meanwhile two primaries fail over
        fleet.halt(stopper.id)
        t_halt = time.monotonic()
        graceful = cluster.by_port(_shard_owner(cluster, stopper))
        cluster.replica_of(graceful).failover()
        victim = next(p for p in cluster.primaries() if p.port != _shard_owner(cluster, stopper))
        victim_shards = [s for s in keys.all_shards() if cluster.owner(slot(keys.deadlines(s))) is victim]
        victim.kill()
        wait_for(
            lambda: all(cluster.owner(slot(keys.deadlines(s))).port != victim.port for s in victim_shards),
            30,
            what="the killed primary's replica serving its slots",
        )
        pdns.wait_answer(stopper.fqdn, "A", {NEUTRAL}, timeout=WINDOW + 15)
        neutral_after = time.monotonic() - t_halt
        wait_for(lambda: len(smtp.mails_for(OWNER)) >= 1, 20, what="the outage e-mail")
        fleet.resume(stopper.id)
        pdns.wait_answer(stopper.fqdn, "A", {"127.0.0.1"}, timeout=15)
        wait_for(lambda: len(smtp.mails_for(OWNER)) >= 2, 20, what="the recovery e-mail")
        wait_for(lambda: stream_settled(r, "hbdns-notifier"), 30, what="every event handled")
    finally:
        fleet.stop()
        prober.stop()
        listener.stop()
        sweeper.stop()
        notifier.stop()
        stop_all(pdns)
        smtp.stop()

    print(f"stopper neutral at pdns {neutral_after:.1f} s after its last beat")
    assert neutral_after <= 2 * WINDOW + 5  # a window, plus at most one more if a failover held its deadline
    events = stream_fields(r)
    kinds = [f["type"] for f in events if f["account"] == str(stopper.id)]
    # created, its first beat (recovered, first address), then the outage: recorded once each
    assert kinds == ["created", "recovered", "ip_changed", "neutralized", "recovered"], kinds
    false = [f for f in events if f["type"] in ("neutralized", "family_lost") and f["account"] != str(stopper.id)]
    assert false == []
    subjects = [m.subject for m in smtp.mails_for(OWNER)]
    assert len(subjects) == 2, subjects  # offline once, back once: none lost, none doubled
    lost = 0
    for a in beaters:
        acked = [s.source for s in fleet.acked_by(a.id)]
        changes = [f["new"] for f in events if f["type"] == "ip_changed" and f["account"] == str(a.id)]
        acked_changes = [acked[0]] + [cur for prev, cur in itertools.pairwise(acked) if cur != prev]
        lost += not _chain_holds(acked_changes, changes)
    assert lost == 0
    rcodes = [rc for _, _, rc, _ in prober.seen]
    assert len(rcodes) > 100 and "NXDOMAIN" not in rcodes
    allowed = {a.fqdn: {"127.0.0.2", "127.0.0.3"} if a.id in movers else {"127.0.0.1"} for a in beaters}
    wrong = [(n, ips) for t, n, rc, ips in prober.seen if t >= live_since and rc == "NOERROR" and not ips <= allowed[n]]
    assert wrong == []  # never the neutral address for an account that kept beating
