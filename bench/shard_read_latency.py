"""Micro-benchmark of reading the 16 shard event streams (notifier/streams.py) three ways:

- ``one-call``: standalone Redis, one ``XREADGROUP BLOCK`` naming all 16 streams (the standalone path);
- ``per-shard``: the same Redis read as on a Cluster: a pipeline of non-blocking per-shard reads,
  and a short pause (``--blocks``) when all were empty;
- ``cluster``: the per-shard path on a real 3-primary Redis Cluster (no replicas; started here).

What it times: the latency from an ``XADD`` (to a random shard, at random gaps, on an idle stream)
until the reader has the entry (median, p90, max over ``--samples``), and the throughput of
draining a backlog (``--backlog`` entries per shard, read and acknowledged in batches of 200).

    .venv/bin/python -m bench.shard_read_latency --samples 200

Not part of ``make bench`` (no goal); its figures are quoted in docs/notifications.md.
"""

from __future__ import annotations

import argparse
import random
import statistics
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import redis
from redis.cluster import ClusterNode, RedisCluster

from hbdns import keys
from notifier.streams import ShardStreams
from tests.support.servers import RedisServer, free_port, wait_for, which

GROUP = "bench"


def latency(r: Any, per_shard: bool, samples: int, rng: random.Random, block_ms: int) -> list[float]:
    """XADD -> read, in ms, for ``samples`` entries written to random shards at random gaps."""
    reader = ShardStreams(r, GROUP, "reader", per_shard=per_shard)
    reader.poll_ms = block_ms
    reader.ensure_group()
    got: dict[str, float] = {}
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            entries = reader.read(1000)
            now = time.perf_counter()
            for e in entries:
                got[e.fields["n"]] = now
            if entries:
                pipe = r.pipeline(transaction=False)
                reader.ack(pipe, entries)
                pipe.execute()

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    sent: dict[str, float] = {}
    for i in range(samples):
        time.sleep(rng.uniform(0.02, 0.2))
        n = str(i)
        sent[n] = time.perf_counter()
        r.xadd(keys.events(rng.randrange(keys.SHARDS)), {"type": "test", "n": n})
    wait_for(lambda: len(got) == samples, 30, what="every entry read")
    stop.set()
    thread.join(5)
    return [(got[n] - sent[n]) * 1000 for n in sent]


def idle_cpu(r: Any, per_shard: bool, block_ms: int, seconds: float) -> float:
    """CPU ms per second that an idle reader's thread uses (its Redis round trips included)."""
    reader = ShardStreams(r, GROUP + "-idle", "reader", per_shard=per_shard)
    reader.poll_ms = block_ms
    reader.ensure_group()
    out: list[float] = []

    def run() -> None:
        cpu0, t0 = time.thread_time(), time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            reader.read(1000)
        out.append((time.thread_time() - cpu0) * 1000 / (time.perf_counter() - t0))

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    return out[0]


def drain(r: Any, per_shard: bool, backlog: int) -> float:
    """Entries/s of reading and acknowledging ``backlog`` entries in each shard."""
    reader = ShardStreams(r, GROUP + "-drain", "reader", per_shard=per_shard, batch=200)
    reader.ensure_group()
    for s in keys.all_shards():
        pipe = r.pipeline(transaction=False)
        for i in range(backlog):
            pipe.xadd(keys.events(s), {"type": "test", "n": str(i)})
        pipe.execute()
    total, start = 0, time.perf_counter()
    while total < backlog * keys.SHARDS:
        entries = reader.read(0)
        pipe = r.pipeline(transaction=False)
        reader.ack(pipe, entries)
        pipe.execute()
        total += len(entries)
    return total / (time.perf_counter() - start)


def low_port() -> int:
    """A free port a cluster node can use (its bus port, +10000, must exist too)."""
    while (port := free_port()) > 55_000:
        pass
    return port


def start_cluster(workdir: Path) -> tuple[list[RedisServer], RedisCluster]:
    extra = ["cluster-enabled yes", "cluster-config-file nodes.conf"]
    nodes = [RedisServer(workdir / f"n{i}", port=low_port(), extra=extra).start() for i in range(3)]
    subprocess.run(
        [which("redis-cli"), "--cluster", "create", *(f"127.0.0.1:{n.port}" for n in nodes), "--cluster-yes"],
        check=True,
        capture_output=True,
    )
    probes = [redis.Redis(port=n.port, decode_responses=True) for n in nodes]
    wait_for(lambda: all(p.cluster("info").get("cluster_state") == "ok" for p in probes), 30, what="cluster ok")
    rc = RedisCluster(startup_nodes=[ClusterNode("127.0.0.1", n.port) for n in nodes], decode_responses=True)
    return nodes, rc


def summary(name: str, ms: list[float], rate: float, cpu: float) -> str:
    q = statistics.quantiles(ms, n=10)
    return (
        f"{name:18s} latency ms: median {statistics.median(ms):6.2f}  p90 {q[8]:6.2f}  max {max(ms):7.2f}"
        f"   drain {rate:8.0f} entries/s   idle reader CPU {cpu:5.1f} ms/s"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--samples", type=int, default=200)
    ap.add_argument("--backlog", type=int, default=2000, help="entries per shard for the drain")
    ap.add_argument("--blocks", default="100,50,20", help="per-shard pauses (ms) to compare")
    ap.add_argument("--idle", type=float, default=5.0, help="seconds of idle reading for the CPU figure")
    args = ap.parse_args()
    blocks = [int(b) for b in args.blocks.split(",")]
    rng = random.Random(16)
    with tempfile.TemporaryDirectory(prefix="hbdns-shard-read-") as tmp:
        server = RedisServer(Path(tmp) / "standalone").start()
        nodes: list[RedisServer] = []
        try:
            r = redis.Redis(port=server.port, decode_responses=True)
            modes = [("one-call", False, 1000)] + [(f"per-shard {b} ms", True, b) for b in blocks]
            for name, per_shard, block in modes:
                r.flushall()
                ms = latency(r, per_shard, args.samples, rng, block)
                cpu = idle_cpu(r, per_shard, block, args.idle)
                r.flushall()
                print(summary(name, ms, drain(r, per_shard, args.backlog), cpu), flush=True)
            nodes, rc = start_cluster(Path(tmp))
            for block in blocks:
                for s in keys.all_shards():
                    rc.delete(keys.events(s))
                ms = latency(rc, True, args.samples, rng, block)
                cpu = idle_cpu(rc, True, block, args.idle)
                for s in keys.all_shards():
                    rc.delete(keys.events(s))
                print(summary(f"cluster {block} ms", ms, drain(rc, True, args.backlog), cpu), flush=True)
            rc.close()
        finally:
            for n in [server, *nodes]:
                n.stop()


if __name__ == "__main__":
    main()
