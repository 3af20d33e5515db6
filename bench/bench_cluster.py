"""Redis Cluster capacity (issue 16): beats/s with 1, 2 and 3 primaries, CPU per beat, memory.

**The real write path.** Every target holds the same accounts, added by the store
(:meth:`hbdns.store.Store.bulk_add_accounts`: heartbeat-c, MX, an e-mail address each) and beating
once. Then fast-path beats (live account, same address, counter rising) in the listener's batches
(``HBDNS_HEARTBEAT_BATCH``, 256 random accounts of all shards) go through the listener's own
writer, submitted one batch ahead as its server loop does: on a Cluster
:class:`heartbeat_listener.cluster_io.ClusterBeats` on a
:class:`hbdns.cluster_route.ClusterRouter` (what ``heartbeat_listener.main.cluster_stages``
builds: one sharded beat script call per shard of the batch, every primary's share in one write),
on the same-run reference, a standalone redis-server,
:class:`heartbeat_listener.redis_io.RedisBeats` (one call per batch, ``redis_stages``). Clusters
of 1, 2 and 3 primaries (no replicas: they would take the same 2 cores) and the reference take
turns round by round. The beats carry a 600 s window instead of the plan's 15 s so that no alive
key expires while the other targets have their turn (the script's work is the same).

Per round and target: beats/s, each primary's CPU (``INFO cpu`` used_cpu_user + used_cpu_sys)
per beat, and the driver's own CPU per beat (this process: building the requests, the writer's
encoding, the router, parsing the replies; the listener's receive and verify stages are
bench_listener's). Reported: medians over rounds.

**Memory.** ``INFO memory`` used_memory (summed over the primaries) before the store wrote anything
and after every account's first beat, per account; ``MEMORY USAGE`` per key kind on the
standalone server.

    .venv/bin/python -m bench.bench_cluster [--quick] [--rounds 5 --seconds 4 --accounts 32000 --batch 256]

Not part of ``make test``; ``make bench`` runs it (``run``).
"""

from __future__ import annotations

import argparse
import random
import re
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import redis

from bench.common import Metric
from hbdns import config
from hbdns.cluster_route import ClusterRouter
from hbdns.connection import connect
from hbdns.liveness import BeatRequest, Liveness
from hbdns.model import Zone, config_fingerprint
from hbdns.resp import BatchConnection
from hbdns.store import Store
from heartbeat_listener.cluster_io import ClusterBeats
from heartbeat_listener.redis_io import RedisBeats
from tests.support.cluster import Cluster
from tests.support.servers import RedisServer

ZONE = "dyn.bench.test"
NEUTRAL = "192.0.2.1"  # never contacted: only the zone's neutral answer
WINDOW_MS = 600_000


def used_cpu(node: redis.Redis) -> float:
    info = node.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def used_memory(nodes: Sequence[redis.Redis]) -> int:
    return sum(int(n.info("memory")["used_memory"]) for n in nodes)


def ipv4(account_id: int) -> str:
    return f"10.{(account_id >> 16) & 255}.{(account_id >> 8) & 255}.{account_id & 255}"


class Target:
    """One Redis (a cluster of n primaries, or the standalone reference) with the listener's writer."""

    def __init__(self, name: str, url: str, nodes: list[redis.Redis], cluster: bool, batch: int) -> None:
        self.name, self.nodes, self.batch = name, nodes, batch
        settings = config.load({"HBDNS_REDIS_URL": url})
        client = connect(url)
        self.store = Store(client, settings)
        liveness = Liveness(
            client,
            max_skew_ms=int(settings.heartbeat_max_skew * 1000),
            events_maxlen=settings.events_maxlen,
            log_size=settings.account_log_size,
        )  # as heartbeat_listener.main builds it
        self.router: ClusterRouter | None = None
        self.conn: BatchConnection | None = None
        self.writer: Any  # ClusterBeats or RedisBeats: the same submit/collect/beats
        if cluster:
            self.router = ClusterRouter.from_url(url)
            self.writer = ClusterBeats(self.router, liveness)
        else:
            self.conn = BatchConnection(client)
            self.writer = RedisBeats(self.conn, liveness)
        self.accounts: list[tuple[int, str, str]] = []  # (id, address, fp) in beat order
        self.pos = 0
        self.counter = 0
        self.rates: list[float] = []
        self.redis_us: list[list[float]] = []  # per round, per primary
        self.driver_us: list[float] = []
        self.memory_per_account = 0.0

    def seed(self, n: int) -> None:
        """n accounts by the store, each beating once (its first beat: live, address recorded)."""
        base = used_memory(self.nodes)
        store = self.store
        store.add_zone(Zone(apex=ZONE, ns=(f"ns1.{ZONE}",), hostmaster=f"hm.{ZONE}", neutral_ipv4=NEUTRAL))
        made = store.bulk_add_accounts(
            [store.new_account(f"h{i}.{ZONE}", "heartbeat-c", mx=True, emails=[f"o{i}@c.test"]) for i in range(n)]
        )
        self.accounts = [(a.id, ipv4(a.id), config_fingerprint(a.hb_key, a.plan, a.zone)) for a in made]
        random.Random(1).shuffle(self.accounts)
        self.counter = time.time_ns() // 1_000_000
        for _ in range(0, n, self.batch):
            results = self.writer.beats(self.next_batch())
            if any(not r.accepted for r in results):
                raise RuntimeError(f"{self.name}: a first beat not recorded: {results[0]}")
        self.memory_per_account = (used_memory(self.nodes) - base) / n

    def next_batch(self) -> list[BeatRequest]:
        """The next ``batch`` accounts of the shuffled list (each at most once), a counter above all
        before it."""
        self.counter = max(self.counter + 1, time.time_ns() // 1_000_000)
        c, accounts, start = self.counter, self.accounts, self.pos
        part = accounts[start : start + self.batch]
        self.pos = start + self.batch if start + self.batch < len(accounts) else 0
        return [BeatRequest(a, ZONE, WINDOW_MS, ipv4=ip, counter=c, fp=fp) for a, ip, fp in part]

    def measure(self, seconds: float) -> None:
        """Beats for ``seconds``, one batch in flight while the next is made (the listener's loop)."""
        cpu0 = [used_cpu(n) for n in self.nodes]
        own0, t0, beats = time.process_time(), time.perf_counter(), 0
        pending = self.writer.submit(self.next_batch())
        while time.perf_counter() - t0 < seconds:
            batch = self.next_batch()
            ticket = self.writer.submit(batch)
            self.check(self.writer.collect(pending))
            pending = ticket
            beats += len(batch)
        self.check(self.writer.collect(pending))
        beats += self.batch
        wall = time.perf_counter() - t0
        own = time.process_time() - own0
        self.rates.append(beats / wall)
        self.redis_us.append([(used_cpu(n) - c) / beats * 1e6 for n, c in zip(self.nodes, cpu0, strict=True)])
        self.driver_us.append(own / beats * 1e6)

    def check(self, results: Sequence[Any]) -> None:
        slow = [r for r in results if r.status != "ok" or r.changed]
        if slow:
            raise RuntimeError(f"{self.name}: {len(slow)} beats off the fast path, e.g. {slow[0]}")

    def per_primary(self) -> list[float]:
        """Each primary's CPU per beat, the median of the rounds."""
        return [statistics.median(r[i] for r in self.redis_us) for i in range(len(self.nodes))]

    def memory_by_kind(self) -> dict[str, float]:
        """MEMORY USAGE per account, per key kind (ids and hash tags taken out of the names)."""
        by_kind: dict[str, int] = {}
        n = len(self.accounts)
        for node in self.nodes:
            names = list(node.scan_iter(count=5000))
            for i in range(0, len(names), 2000):
                chunk = names[i : i + 2000]
                pipe = node.pipeline(transaction=False)
                for k in chunk:
                    pipe.memory_usage(k, samples=0)
                for k, used in zip(chunk, pipe.execute(), strict=True):
                    kind = re.sub(r"\{[^}]*\}|\d+|:+$", "", k).rstrip(":")
                    by_kind[kind] = by_kind.get(kind, 0) + int(used or 0)
        return {k: round(v / n, 1) for k, v in sorted(by_kind.items(), key=lambda kv: -kv[1])}

    def close(self) -> None:
        if self.router is not None:
            self.router.close()
        if self.conn is not None:
            self.conn.close()


def measure(rounds: int, seconds: float, accounts: int, workdir: Path, batch: int = 0) -> list[Metric]:
    batch = batch or config.load({}).heartbeat_batch
    clusters = [Cluster(workdir / f"c{n}", primaries=n, replicas=0).start() for n in (1, 2, 3)]
    standalone = RedisServer(workdir / "standalone").start()
    targets: list[Target] = []
    try:
        for c in clusters:
            nodes = [redis.Redis(port=n.port, decode_responses=True) for n in c.nodes]
            targets.append(Target(f"{len(c.nodes)} primaries", c.url, nodes, True, batch))
        node = redis.Redis(port=standalone.port, decode_responses=True)
        reference = Target("standalone", standalone.url, [node], False, batch)
        targets.append(reference)
        for t in targets:
            t.seed(accounts)
        for t in targets:
            t.measure(0.5)  # warm up: scripts loaded everywhere, connections open
            t.rates, t.redis_us, t.driver_us = [], [], []
        for _ in range(rounds):
            for t in targets:
                t.measure(seconds)
        kinds = reference.memory_by_kind()
    finally:
        for t in targets:
            t.close()
        for c in clusters:
            c.stop()
        standalone.stop()
    return metrics(targets[:-1], reference, batch, rounds, seconds, accounts, kinds)


def metrics(
    clusters: list[Target], ref: Target, batch: int, rounds: int, seconds: float, accounts: int, kinds: dict[str, float]
) -> list[Metric]:
    how = (
        f"{accounts} heartbeat-c accounts added by the store, fast-path beats in batches of {batch} random accounts "
        f"through the listener's writer (ClusterBeats on ClusterRouter; reference RedisBeats), {rounds} rounds of "
        f"{seconds:g} s, targets taking turns"
    )
    out: list[Metric] = []
    for t in clusters:
        per_primary = t.per_primary()
        out.append(
            Metric(
                f"beats/s, Redis Cluster, {t.name}, sharded beat script",
                "beats/s",
                tuple(t.rates),
                "the same beats, standalone redis-server (RedisBeats)",
                tuple(ref.rates),
                notes=how,
                extra={"redis_cpu_us_per_beat_by_primary": [round(x, 2) for x in per_primary]},
            )
        )
        out.append(
            Metric(
                f"Redis CPU per beat, cluster of {t.name} (all primaries)",
                "us",
                tuple(sum(r) for r in t.redis_us),
                "standalone redis-server, same run",
                tuple(sum(r) for r in ref.redis_us),
                notes=f"per primary (medians): {', '.join(f'{x:.2f}' for x in per_primary)} us",
            )
        )
        out.append(
            Metric(
                f"driver CPU per beat (listener writer + router), cluster of {t.name}",
                "us",
                tuple(t.driver_us),
                "RedisBeats on the standalone server, same run",
                tuple(ref.driver_us),
            )
        )
    for t in clusters:
        out.append(
            Metric(
                f"Redis memory per heartbeat-c account, cluster of {t.name} ({accounts} accounts, first beat)",
                "bytes",
                (t.memory_per_account,),
                "the same accounts on a standalone redis-server",
                (ref.memory_per_account,),
                notes="INFO used_memory summed over the primaries, after the store's accounts and one beat each",
                extra={"standalone_memory_usage_per_account_by_kind": kinds} if t is clusters[0] else {},
            )
        )
    return out


def run(quick: bool = False) -> list[Metric]:
    with tempfile.TemporaryDirectory(prefix="hbdns-cluster-") as tmp:
        if quick:
            return measure(3, 2.0, 8_000, Path(tmp))
        return measure(5, 4.0, 32_000, Path(tmp))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_cluster", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 rounds of 2 s, 8000 accounts (about a minute)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--accounts", type=int, default=32_000)
    parser.add_argument("--batch", type=int, default=0, help="beats per listener batch (0: the default)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="hbdns-cluster-") as tmp:
        if args.quick:
            got = measure(3, 2.0, 8_000, Path(tmp))
        else:
            got = measure(args.rounds, args.seconds, args.accounts, Path(tmp), args.batch)
    for m in got:
        print(f"{m.name}: median {m.median:,.2f} {m.unit} (samples {[round(s, 2) for s in m.samples]})")
        ref = m.reference_median
        if ref is not None:
            ratio = f"{m.ratio:.3f}" if m.ratio is not None else "-"
            print(f"  reference {m.reference_name}: {ref:,.2f} (ratio {ratio})")
        if m.notes:
            print(f"  {m.notes}")
        for k, v in m.extra.items():
            print(f"  {k}: {v}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
