"""A failover under load: 100 heartbeat-c accounts beating through the real listener, SIGKILL of the
primary (1 primary + 1 replica + 3 sentinels, tests/support/sentinel.py). Writes resume within
Sentinel's failover time + 2 s, no transition is lost, no account that kept beating is neutralized,
and pdns, whose backend reads the replica, answers throughout (never NXDOMAIN, never SERVFAIL)."""

from __future__ import annotations

import itertools
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from hbdns import config, keys, scripts
from hbdns.connection import connect
from hbdns.model import Zone
from hbdns.store import Store
from sweeper.main import SweeperService
from tests.support.dns_probe import Prober
from tests.support.events import fields as stream_fields
from tests.support.fleet import Beater, Fleet
from tests.support.listener import Listener, now_ms
from tests.support.pdns import PdnsServer
from tests.support.sentinel import SentinelGroup, cached, fresh_group, noscripts, started_group
from tests.support.servers import wait_for

ZONE = "ha.test"
NEUTRAL = "192.0.2.1"

group = pytest.fixture(scope="module")(started_group)
fresh = pytest.fixture(fresh_group)


def add_zone(store: Store) -> None:
    store.add_zone(Zone(ZONE, (f"ns1.{ZONE}",), f"hostmaster.{ZONE}", NEUTRAL))


def _chain_holds(acked: list[str], recorded: list[str]) -> bool:
    """Every acknowledged address change is among the recorded ones, in order."""
    it = iter(recorded)
    return all(any(r == a for r in it) for a in acked)


def test_failover_under_load(
    fresh: SentinelGroup,
    tmp_path: Path,
    pdns_factory: Callable[..., PdnsServer],
    sweepers: Callable[..., SweeperService],
) -> None:
    group = fresh
    settings = config.load({"HBDNS_REDIS_URL": group.url, "HBDNS_SWEEP_INTERVAL": "0.2"})
    store = Store(connect(group.url), settings)
    add_zone(store)
    accounts = [store.add_account(store.new_account(f"h{i}.{ZONE}", "heartbeat-c")) for i in range(100)]
    stopper = store.add_account(store.new_account(f"gone.{ZONE}", "heartbeat-c"))
    replica = group.replica()
    pdns = pdns_factory(redis_url=group.url, backend_env={"HBDNS_BACKEND_REDIS_URL": replica.url})
    listener = Listener(tmp_path, group.url, **pdns.writer_env).start()
    sweepers(config.load({"HBDNS_REDIS_URL": group.url, "HBDNS_SWEEP_INTERVAL": "0.2", **pdns.writer_env}))
    movers = {a.id for a in accounts[:20]}  # a new address on every beat
    fleet = Fleet(
        listener.port,
        [
            Beater(a.id, a.hb_key, ("127.0.0.2", "127.0.0.3") if a.id in movers else ("127.0.0.1",), phase=i * 0.05)
            for i, a in enumerate(accounts)
        ]
        + [Beater(stopper.id, stopper.hb_key, ("127.0.0.4",), phase=0.0)],
    )
    names = [a.fqdn for a in accounts]
    prober = Prober(pdns, names)
    r = connect(group.url)
    try:
        fleet.start()
        wait_for(lambda: all(store.status(a).live for a in [*accounts, stopper]), 15, what="every account live")
        prober.start()
        live_since = time.monotonic() + 2.0  # pdns' 1 s caches have the live answers by then
        wait_for(lambda: len(fleet.acked) >= 250, 20, what="a few beats each")
        fleet.halt(stopper.id)  # a real outage across the failover: neutralized once, on the new primary
        assert not any(cached(replica.port, s.sha) for s in (scripts.BEAT, scripts.DUE, scripts.NEUTRALIZE))
        killed = group.primary()
        t_kill, kill_ms = time.monotonic(), now_ms()
        killed.kill()
        new_port, t_switch = group.wait_failover(killed.port)
        assert new_port == replica.port
        new = connect(replica.url)

        def resumed() -> bool:
            pipe = new.pipeline(transaction=False)
            for a in accounts:
                pipe.hget(keys.account(a.id), "last_beat")
            return any(int(v or 0) > kill_ms for v in pipe.execute())

        wait_for(resumed, 10, interval=0.02, what="a beat written on the new primary")
        t_resume = time.monotonic()
        # run on for a full window after the kill: an account that lost 3 beats would be neutral by then
        deadline = t_kill + 17
        while time.monotonic() < deadline:
            time.sleep(0.2)
        wait_for(lambda: store.status(stopper).state.state == "neutral", 10, what="the stopped account neutral")
        metrics = listener.metrics()
    finally:
        fleet.stop()
        prober.stop()
        listener.stop()

    failover_s, resume_s = t_switch - t_kill, t_resume - t_switch
    print(f"failover {failover_s:.2f} s, writes resumed {resume_s:.2f} s after the switch")
    assert resume_s <= 2.0

    events = stream_fields(r)
    neutralized = [f["account"] for f in events if f["type"] == "neutralized"]
    assert neutralized == [str(stopper.id)]  # 0 false neutralizations, the real one once
    assert all(store.status(a).live for a in accounts)
    lost = 0
    for a in accounts:
        acked = [s.source for s in fleet.acked_by(a.id)]
        changes = [f["new"] for f in events if f["type"] == "ip_changed" and f["account"] == str(a.id)]
        acked_changes = [acked[0]] + [cur for prev, cur in itertools.pairwise(acked) if cur != prev]
        if not _chain_holds(acked_changes, changes):
            lost += 1
        assert r.hget(keys.account(a.id), "ipv4") == acked[-1]
        assert [f["type"] for f in events if f["account"] == str(a.id)].count("recovered") == 1
    assert lost == 0
    assert sum(1 for s in fleet.acked if s.account_id in movers) > 100  # the movers kept moving throughout

    rcodes = [rc for _, _, rc, _ in prober.seen]
    assert "NXDOMAIN" not in rcodes and rcodes.count("SERVFAIL") == 0 and prober.timeouts == 0
    during = [s for s in prober.seen if t_kill <= s[0] <= t_resume]
    assert len(during) > 20  # pdns was asked all through the failover
    allowed = {a.fqdn: {"127.0.0.2", "127.0.0.3"} if a.id in movers else {"127.0.0.1"} for a in accounts}
    wrong = [(n, ips) for t, n, _, ips in prober.seen if t >= live_since and not (ips and ips <= allowed[n])]
    assert wrong == []  # never the neutral address for an account that kept beating
    assert noscripts(replica.port) >= 1  # the sweeper loaded its scripts on the new primary
    print(
        f"probes {len(prober.seen)} ({len(during)} during the failover), acked beats {len(fleet.acked)}, "
        f"median probe gap {statistics.median(b[0] - a[0] for a, b in itertools.pairwise(prober.seen)):.4f} s"
    )
    assert metrics["hbdns_heartbeat_redis_connects_total"] >= 2  # the beat writer reconnected
