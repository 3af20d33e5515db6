"""The replica half of ``bench.bench_backend`` (issue 16): a DNS node reading its own replica.

Its Redis primary, a replica of it, the same 10k accounts. Lookups/s of a backend reading the
replica are measured by bench_backend (alternating with the same backend on the primary, the
same-run reference; :func:`lookups_metric`); here, how long an IP change takes to show:

- Redis level: a beat that changes an address is written on the primary (the shared beat script,
  as the listener and the update API write); from its reply until the replica returns the new
  address (polled over the replica's unix socket). Idle, and with a writer keeping the primary
  busy with fast-path beats (about the listener's write pattern) so the replica applies a stream.
- Node level: pdns with the shipped 1 s caches and its backend reading the replica; from the
  write's reply, through the writer's purge of that pdns (synchronous here, the writers' purge
  thread sends the same call), until pdns answers the new address.

Loopback: the replication link has no network delay, so these are the floor of what a replica in
another rack or site adds to (its round trip).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dns.message
import dns.query

from bench.common import Metric
from hbdns import config, keys
from hbdns.connection import connect
from hbdns.liveness import BeatRequest
from hbdns.purge import Purger
from hbdns.store import Store
from tests.support.pdns import PdnsServer, answer_texts
from tests.support.servers import RedisServer, wait_for

Changer = Callable[[int], tuple[int, str, str]]  # k -> (account id, name, new address)


def _changer(apex: str, first: int, count: int) -> Changer:
    def change(k: int) -> tuple[int, str, str]:
        i = first + 2 * (k % count)  # odd ids are the live half (bench_backend.populate)
        return i, f"h{i}.{apex}", f"10.{200 + k // 65536}.{k // 256 % 256}.{k % 256}"

    return change


class _Load(threading.Thread):
    """Fast-path beats (same address, no counter) on the primary, batches of 256, until stopped."""

    def __init__(self, url: str, apex: str, ids: list[int]) -> None:
        super().__init__(name="load", daemon=True)
        self.liveness = Store(connect(url), config.load({})).liveness
        # the addresses bench_backend.populate gave them: nothing changes
        self.reqs = [BeatRequest(i, apex, 3_600_000, ipv4=f"10.{i // 65536}.{i // 256 % 256}.{i % 256}") for i in ids]
        self.halt = threading.Event()
        self.beats = 0

    def run(self) -> None:
        while not self.halt.is_set():
            for k in range(0, len(self.reqs), 256):
                self.liveness.beats(self.reqs[k : k + 256])
                self.beats += len(self.reqs[k : k + 256])


def redis_lag(primary: RedisServer, replica: RedisServer, apex: str, change: Changer, changes: int) -> list[float]:
    """Seconds from the write's reply on the primary to the new address read on the replica."""
    liveness = Store(connect(primary.unix_url), config.load({})).liveness
    rr = connect(replica.unix_url)
    out = []
    for k in range(changes):
        account_id, _name, ip = change(k)
        liveness.beat(BeatRequest(account_id, apex, 3_600_000, ipv4=ip))
        t0 = time.perf_counter()
        while rr.hget(keys.account(account_id), "ipv4") != ip:
            if time.perf_counter() - t0 > 10:
                raise RuntimeError("the replica did not get the change within 10 s")
        out.append(time.perf_counter() - t0)
    return out


def node_lag(primary: RedisServer, pdns: PdnsServer, apex: str, change: Changer, changes: int) -> list[float]:
    """Seconds from the write's reply to pdns (reading the replica) answering the new address."""
    liveness = Store(connect(primary.unix_url), config.load({})).liveness
    purger = Purger([pdns.api_url], pdns.api_key)
    out = []
    for k in range(changes):
        account_id, name, ip = change(k)
        liveness.beat(BeatRequest(account_id, apex, 3_600_000, ipv4=ip))
        t0 = time.perf_counter()
        purger.flush_now(name)
        query = dns.message.make_query(name, "A")
        while answer_texts(dns.query.udp(query, "127.0.0.1", port=pdns.port, timeout=2), name, "A") != {ip}:
            if time.perf_counter() - t0 > 10:
                raise RuntimeError("pdns did not answer the change within 10 s")
        out.append(time.perf_counter() - t0)
    return out


def synced(primary: RedisServer, replica: RedisServer) -> None:
    """Wait until the replica has everything the primary wrote (the populated accounts)."""
    p, r = connect(primary.unix_url), connect(replica.unix_url)

    def done() -> bool:
        offset = p.info("replication")["master_repl_offset"]
        state = r.info("replication")
        return bool(state["master_link_status"] == "up" and state["slave_repl_offset"] >= offset)

    wait_for(done, 60, what="replica in sync")


def lookups_metric(on_replica: list[float], on_primary: list[float], dns_qps: list[float]) -> Metric:
    ratio = statistics.median(on_replica) / max(statistics.median(on_primary), 1e-9)
    return Metric(
        name="backend lookups/s over UNIX reading a replica, pdns caches off",
        unit="lookups/s",
        samples=tuple(on_replica),
        reference_name="the same backend reading the primary, runs alternating",
        reference_samples=tuple(on_primary),
        goal=">= 0.9 x reference",
        met=ratio >= 0.9,
        notes="a DNS node reading its own replica (HBDNS_BACKEND_REDIS_URL) over the replica's unix socket; "
        f"DNS qps median {statistics.median(dns_qps):.0f}",
        extra={"dns_qps": dns_qps},
    )


def measure(
    primary: RedisServer, replica: RedisServer, pdns: PdnsServer, apex: str, accounts: int, quick: bool
) -> list[Metric]:
    changes = 100 if quick else 400
    wait_for(lambda: connect(replica.unix_url).info("replication")["master_link_status"] == "up", 30)
    idle = redis_lag(primary, replica, apex, _changer(apex, 1, accounts // 4), changes)
    load = _Load(primary.unix_url, apex, list(range(accounts * 3 // 5 + 1, accounts + 1, 2)))  # not changed below
    load.start()
    try:
        started = time.monotonic()
        loaded = redis_lag(primary, replica, apex, _changer(apex, 3, accounts // 4), changes)
        rate = load.beats / (time.monotonic() - started)
    finally:
        load.halt.set()
        load.join(30)
    node = node_lag(primary, pdns, apex, _changer(apex, 5, accounts // 4), changes // 4)
    where = "loopback; from the write's reply"
    return [
        Metric(
            name="IP change visible on a replica (Redis), idle primary",
            unit="s",
            samples=tuple(idle),
            notes=f"{where}; {_spread(idle)}",
        ),
        Metric(
            name="IP change visible on a replica (Redis), primary busy with beats",
            unit="s",
            samples=tuple(loaded),
            notes=f"a writer keeps the primary at {rate:,.0f} fast-path beats/s meanwhile; {where}; {_spread(loaded)}",
        ),
        Metric(
            name="IP change answered by pdns on a replica node (shipped 1 s caches, after the purge)",
            unit="s",
            samples=tuple(node),
            notes="pdns + backend reading the replica over its unix socket; the writer's purge of that pdns "
            f"is part of the time; {_spread(node)}",
        ),
    ]


def _spread(seconds: list[float]) -> str:
    ordered = sorted(seconds)
    p95 = ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]
    return (
        f"median {statistics.median(ordered) * 1e3:.3f} ms, p95 {p95 * 1e3:.3f} ms, max {ordered[-1] * 1e3:.3f} ms "
        f"over {len(ordered)} changes"
    )


# --- the cost of WAIT on the beat path ---------------------------------------------------------------


def wait_probe(batches: int = 1000, reps: int = 5, changes_per_batch: tuple[int, ...] = (0, 1, 256)) -> dict[str, Any]:
    """Beats/s of the listener's writer (RedisBeats, pipelined two deep as the listener runs it) on a
    primary with one replica, WAIT off (0) vs on (1), for batches of 256 beats of which 0, 1 or all
    change their address (a transition each). Runs alternate; medians of ``reps``."""
    from hbdns.model import Zone
    from hbdns.resp import BatchConnection
    from heartbeat_listener.redis_io import RedisBeats

    workdir = Path(tempfile.mkdtemp(prefix="hbdns-wait-"))
    primary = RedisServer(workdir / "p", extra=["repl-diskless-sync-delay 0"]).start()
    replica = RedisServer(workdir / "r", extra=[f"replicaof 127.0.0.1 {primary.port}"]).start()
    try:
        r = connect(primary.url)
        store = Store(r, config.load({}))
        store.add_zone(Zone("wait.bench", ("ns1.wait.bench",), "hostmaster.wait.bench", "192.0.2.1"))
        ids = [store.add_account(store.new_account(f"h{i}.wait.bench", "heartbeat-a")).id for i in range(256)]
        wait_for(lambda: connect(replica.url).info("replication")["master_link_status"] == "up", 30)
        counter = [time.time_ns() // 1_000_000]
        out: dict[str, Any] = {}
        for changing in changes_per_batch:
            rates: dict[int, list[float]] = {0: [], 1: []}
            client_us: dict[int, list[float]] = {0: [], 1: []}
            redis_us: dict[int, list[float]] = {0: [], 1: []}
            for rep in range(reps):
                for wait in (0, 1) if rep % 2 == 0 else (1, 0):  # alternate which goes first
                    writer = RedisBeats(BatchConnection(r), store.liveness, wait_replicas=wait, wait_timeout=0.1)
                    assert primary.process is not None
                    cpu0, redis0 = time.process_time(), _cpu_seconds(primary.process.pid)
                    started = time.perf_counter()
                    inflight = []
                    for k in range(batches):
                        counter[0] += 1
                        reqs = [
                            BeatRequest(
                                i,
                                "wait.bench",
                                135_000,
                                ipv4=f"10.9.{k % 2 if n < changing else 0}.{n}",
                                counter=counter[0],
                            )
                            for n, i in enumerate(ids)
                        ]
                        inflight.append(writer.submit(reqs))
                        if len(inflight) > 2:
                            writer.collect(inflight.pop(0))
                    for t in inflight:
                        writer.collect(t)
                    beats = batches * len(ids)
                    rates[wait].append(beats / (time.perf_counter() - started))
                    client_us[wait].append((time.process_time() - cpu0) / beats * 1e6)
                    redis_us[wait].append((_cpu_seconds(primary.process.pid) - redis0) / beats * 1e6)
                    writer.conn.close()
            out[f"{changing} of 256 change"] = {
                "wait 0 beats/s": statistics.median(rates[0]),
                "wait 1 beats/s": statistics.median(rates[1]),
                "ratio": statistics.median(rates[1]) / statistics.median(rates[0]),
                "writer CPU us/beat 0 -> 1": (statistics.median(client_us[0]), statistics.median(client_us[1])),
                "primary CPU us/beat 0 -> 1": (statistics.median(redis_us[0]), statistics.median(redis_us[1])),
            }
        return out
    finally:
        replica.stop()
        primary.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.replica", description="the cost of WAIT on the beat path")
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args(argv)
    for label, row in wait_probe(reps=args.reps).items():
        print(f"{label}: " + ", ".join(f"{k} {_num(v)}" for k, v in row.items()))
    return 0


def _num(v: Any) -> str:
    if isinstance(v, tuple):
        return " / ".join(f"{x:.2f}" for x in v)
    return f"{v:,.2f}"


if __name__ == "__main__":
    sys.exit(main())
