"""Redis Cluster capacity (issue 16): beats/s with 1, 2 and 3 primaries, CPU per beat, memory.

**Beats/s.** Until the sharded beat script lands (the listener branch), what runs is a
*representative* single-slot script with the beat's fast path per beat (beat.lua: HMGET of the
account's 9 fields, HSET counter + last_beat, PEXPIRE of the alive key, ZADD of the deadline, the
bare 'ok'), 128 beats per EVALSHA, every call's keys in one shard (``{s:N}``), sent by
:class:`hbdns.cluster_route.ClusterRouter` (16 shard batches x depth per round, every node's
share in one write, all nodes before any read). Clusters of 1, 2 and 3 primaries (no replicas:
replicas would take the same 2 cores) and the same-run reference, the same script and batches on
a standalone redis-server through one BatchConnection, take turns round by round. CPU per beat is
read from /proc for every redis-server and from the driver's own process time.

**Memory.** The store seeds a standalone Redis with ``n`` heartbeat-c accounts, each beating once
(as bench_system's memory row); then every key is copied (MIGRATE COPY) into a one-primary
cluster node. Reported: ``used_memory`` growth per account on both (the cluster's slot index
costs per key), and ``MEMORY USAGE`` per key kind. ``--relayout`` first renames a database of
the pre-shard schema to the sharded layout (the keys the ``sharded`` migration writes: account
keys renamed, deadlines split per shard, a shard_names entry per name); keys already sharded are
left alone, so it changes nothing on a sharded store.

    .venv/bin/python -m bench.bench_cluster --rounds 3 --seconds 4
    .venv/bin/python -m bench.bench_cluster --memory-only --accounts 100000 [--relayout]

Not part of ``make test``.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import redis

from bench.common import Metric
from hbdns import keys
from hbdns.cluster_route import ClusterRouter, slot
from hbdns.connection import connect
from hbdns.resp import BatchConnection, encode_command
from tests.support.cluster import Cluster
from tests.support.servers import RedisServer

BATCH = 128
PER_SHARD = 2048  # accounts per shard (32k in all)
TICK = os.sysconf("SC_CLK_TCK")

SCRIPT = """
local dl = KEYS[1]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local out = {}
for i = 2, #KEYS, 2 do
  local acct = KEYS[i]
  local cur = redis.call('HMGET', acct, 'fqdn', 'state', 'counter', 'ipv4', 'ipv6', 'fp', 'last_beat', 'zone',
                         'live')
  if cur[1] then
    redis.call('HSET', acct, 'counter', ARGV[i - 1], 'last_beat', now)
    redis.call('PEXPIRE', KEYS[i + 1], 15000)
    redis.call('ZADD', dl, now + 15000, ARGV[i])
    out[#out + 1] = 'ok'
  else
    out[#out + 1] = 'gone'
  end
end
return out
"""


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime + stime


def account_id(shard: int, i: int) -> int:
    return shard + keys.SHARDS * i


def seed(r: Any) -> None:
    """PER_SHARD accounts per shard, each a hash of ~25 fields and a live alive key."""
    fields = {f"f{j}": "x" * 12 for j in range(16)}
    fields.update(fqdn="h.bench.test", state="live", counter="1", ipv4="10.0.0.1", ipv6="", fp="f", zone="bench.test")
    for s in range(keys.SHARDS):
        pipe = r.pipeline(transaction=False)
        for i in range(PER_SHARD):
            a = account_id(s, i)
            pipe.hset(keys.account(a), mapping=dict(fields, last_beat="0", live="4"))
            pipe.set(keys.alive(a, 4), "10.0.0.1", px=600_000)
        pipe.execute()


def payloads(sha: str, depth: int) -> list[tuple[int, bytes]]:
    """16 x depth EVALSHA calls of BATCH beats, each call one shard's; (slot, command)."""
    out = []
    for d in range(depth):
        for s in range(keys.SHARDS):
            k: list[str] = [keys.deadlines(s)]
            a: list[str] = []
            for b in range(BATCH):
                acct = account_id(s, (d * BATCH + b) % PER_SHARD)
                k += [keys.account(acct), keys.alive(acct, 4)]
                a += [str(time.time_ns()), keys.deadline_member(acct, 4)]
            out.append((slot(keys.deadlines(s)), encode_command("EVALSHA", sha, str(len(k)), *k, *a)))
    return out


class Setup:
    """One target: a cluster of n primaries (router) or a standalone server (one connection)."""

    def __init__(self, name: str, pids: list[int], send: Any) -> None:
        self.name, self.pids, self.send = name, pids, send
        self.rates: list[float] = []
        self.redis_us: list[float] = []
        self.driver_us: list[float] = []

    def measure(self, commands: list[tuple[int, bytes]], seconds: float) -> None:
        cpu0 = [cpu_seconds(p) for p in self.pids]
        own0, t0, beats = time.process_time(), time.perf_counter(), 0
        while time.perf_counter() - t0 < seconds:
            replies = self.send(commands)
            bad = [r for r in replies if not isinstance(r, list) or r[0] != "ok"]
            if bad:
                raise RuntimeError(f"{self.name}: {bad[0]!r} {bad[0]}")
            beats += BATCH * len(commands)
        wall = time.perf_counter() - t0
        self.rates.append(beats / wall)
        self.redis_us.append(sum(cpu_seconds(p) - c for p, c in zip(self.pids, cpu0, strict=True)) / beats * 1e6)
        self.driver_us.append((time.process_time() - own0) / beats * 1e6)


def throughput(rounds: int, seconds: float, depth: int, workdir: Path) -> list[Metric]:
    clusters = [Cluster(workdir / f"c{n}", primaries=n, replicas=0).start() for n in (1, 2, 3)]
    standalone = RedisServer(workdir / "standalone").start()
    try:
        setups: list[Setup] = []
        sha = ""
        for c in clusters:
            seed(connect(c.url))
            router = ClusterRouter.from_url(c.url)
            router.on_connect.append(lambda conn: conn.roundtrip(encode_command("SCRIPT", "LOAD", SCRIPT), 1))
            pids = [n.server.process.pid for n in c.nodes if n.server.process]
            setups.append(Setup(f"{len(c.nodes)} primaries", pids, router.execute))
        r = redis.Redis(port=standalone.port, decode_responses=True)
        seed(r)
        sha = str(r.script_load(SCRIPT))
        single = BatchConnection(r)

        def one_connection(commands: list[tuple[int, bytes]]) -> list[Any]:
            return single.roundtrip(b"".join(c for _, c in commands), len(commands))

        assert standalone.process is not None
        reference = Setup("standalone", [standalone.process.pid], one_connection)
        commands = payloads(sha, depth)
        for target in [*setups, reference]:
            target.measure(commands, 0.5)  # warm up: scripts loaded, connections open
            for series in (target.rates, target.redis_us, target.driver_us):
                series.clear()
        for _ in range(rounds):
            for target in [*setups, reference]:
                target.measure(commands, seconds)
    finally:
        for c in clusters:
            c.stop()
        standalone.stop()
    note = (
        "representative single-slot fast-path script (HMGET, HSET, PEXPIRE, ZADD per beat), 128 beats per "
        f"EVALSHA, {depth * 16} calls per round via ClusterRouter; not the shipped beat.lua (not sharded yet)"
    )
    out = []
    for t in setups:
        out.append(
            Metric(
                f"beats/s, Redis Cluster, {t.name} (representative script)",
                "beats/s",
                tuple(t.rates),
                "same script and batches, standalone redis-server, one connection",
                tuple(reference.rates),
                notes=note,
                extra={
                    "redis_cpu_us_per_beat": statistics.median(t.redis_us),
                    "driver_cpu_us_per_beat": statistics.median(t.driver_us),
                    "reference_redis_cpu_us_per_beat": statistics.median(reference.redis_us),
                    "reference_driver_cpu_us_per_beat": statistics.median(reference.driver_us),
                },
            )
        )
    return out


_OLD_ACCOUNT_KEY = re.compile(r"^(hbdns:.+):\{a:(\d+)\}$")


def relayout(r: redis.Redis, schema: Any = keys) -> int:
    """Rename a pre-shard database to the sharded layout of ``schema`` (a sharded hbdns.keys; the
    pre-shard tree passes this tree's by file, --sharded-keys); keys already sharded stay. Returns
    the keys renamed."""
    renamed = 0
    pipe = r.pipeline(transaction=False)
    for key in r.scan_iter(match="hbdns:*{a:*}", count=5000):
        m = _OLD_ACCOUNT_KEY.match(key)
        if m:
            aid = int(m.group(2))
            pipe.rename(key, f"{m.group(1)}:{schema.shard_tag(schema.shard_of(aid))}:{aid}")
            renamed += 1
            if len(pipe) >= 2000:
                pipe.execute()
    pipe.execute()
    old: Any
    try:
        from hbdns import keys_unsharded as old
    except ImportError:  # the pre-shard tree: its keys are the old schema
        old = keys
    old_deadlines = str(old.deadlines())
    if r.type(old_deadlines) == "zset":
        members: list[tuple[str, float]] = r.zrange(old_deadlines, 0, -1, withscores=True)  # type: ignore[assignment]
        for member, score in members:
            pipe.zadd(schema.deadlines(schema.shard_of(schema.parse_deadline_member(member)[0])), {member: score})
            if len(pipe) >= 2000:
                pipe.execute()
        pipe.delete(old_deadlines)
        pipe.execute()
    for name, aid in r.hscan_iter(schema.names(), count=5000):
        pipe.hset(schema.shard_names(schema.shard_of(int(aid))), name, aid)
        if len(pipe) >= 2000:
            pipe.execute()
    pipe.execute()
    return renamed


def sharded_keys(path: str) -> Any:
    """hbdns/keys.py of a sharded tree, loaded from its file (for --relayout in a pre-shard tree)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("sharded_keys", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def memory(n: int, workdir: Path, relayout_first: bool, schema: Any = keys) -> list[Metric]:
    from bench.bench_system import NEUTRAL, ZONE
    from hbdns import config
    from hbdns.liveness import BeatRequest
    from hbdns.model import Zone
    from hbdns.store import Store

    srv = RedisServer(workdir / "mem").start()
    cl = Cluster(workdir / "mem-cluster", primaries=1, replicas=0).start()
    try:
        r = connect(srv.url)
        node = redis.Redis(port=cl.nodes[0].port, decode_responses=True)
        base, cbase = int(r.info("memory")["used_memory"]), int(node.info("memory")["used_memory"])
        store = Store(r, config.load({}))
        store.add_zone(Zone(apex=ZONE, ns=(f"ns1.{ZONE}",), hostmaster=f"hm.{ZONE}", neutral_ipv4=NEUTRAL))
        accounts = store.bulk_add_accounts(
            [store.new_account(f"h{i}.{ZONE}", "heartbeat-c", mx=True, emails=[f"o{i}@c.test"]) for i in range(n)]
        )
        now = time.time_ns() // 1_000_000
        for i in range(0, n, 2000):
            store.liveness.beats(
                BeatRequest(a.id, ZONE, 600_000, ipv4=f"10.{(a.id >> 16) & 255}.{(a.id >> 8) & 255}.{a.id & 255}",
                            counter=now)
                for a in accounts[i : i + 2000]
            )  # fmt: skip
        renamed = relayout(r, schema) if relayout_first else 0
        standalone = (int(r.info("memory")["used_memory"]) - base) / n
        by_kind: dict[str, int] = {}
        names = list(r.scan_iter(count=5000))
        for i in range(0, len(names), 2000):
            chunk = names[i : i + 2000]
            pipe = r.pipeline(transaction=False)
            for k in chunk:
                pipe.memory_usage(k, samples=0)
            for k, used in zip(chunk, pipe.execute(), strict=True):
                kind = re.sub(r"\{[^}]*\}|\d+|:+$", "", k).rstrip(":")
                by_kind[kind] = by_kind.get(kind, 0) + int(used or 0)
            r.execute_command("MIGRATE", "127.0.0.1", str(cl.nodes[0].port), "", "0", "20000", "COPY", "KEYS", *chunk)
        clustered = (int(node.info("memory")["used_memory"]) - cbase) / n
    finally:
        srv.stop()
        cl.stop()
    per_kind = {k: round(v / n, 1) for k, v in sorted(by_kind.items(), key=lambda kv: -kv[1])}
    return [
        Metric(
            f"Redis memory per heartbeat-c account, one-primary cluster node ({n // 1000}k accounts)",
            "bytes",
            (clustered,),
            "the same keys on a standalone redis-server",
            (standalone,),
            notes=f"keys {len(names)}, renamed to the sharded layout first: {renamed}",
            extra={"memory_usage_per_account_by_kind": per_kind},
        )
    ]


def run(quick: bool = False) -> list[Metric]:
    with tempfile.TemporaryDirectory(prefix="hbdns-cluster-") as tmp:
        return throughput(2 if quick else 5, 3.0, 2, Path(tmp)) + memory(10_000 if quick else 100_000, Path(tmp), False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--depth", type=int, default=2, help="calls per shard per round")
    parser.add_argument("--accounts", type=int, default=100_000)
    parser.add_argument("--memory-only", action="store_true")
    parser.add_argument("--throughput-only", action="store_true")
    parser.add_argument("--relayout", action="store_true", help="rename a pre-shard store to the sharded layout")
    parser.add_argument("--sharded-keys", default="", help="path of a sharded hbdns/keys.py (with --relayout)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="hbdns-cluster-") as tmp:
        metrics: list[Metric] = []
        if not args.memory_only:
            metrics += throughput(args.rounds, args.seconds, args.depth, Path(tmp))
        if not args.throughput_only:
            schema = sharded_keys(args.sharded_keys) if args.sharded_keys else keys
            metrics += memory(args.accounts, Path(tmp), args.relayout, schema)
    for m in metrics:
        ref = m.reference_median
        print(f"{m.name}: median {m.median:,.1f} {m.unit} (samples {[round(s) for s in m.samples]})")
        print(f"  reference {m.reference_name}: {ref:,.1f} (samples {[round(s) for s in m.reference_samples]})")
        for k, v in m.extra.items():
            print(f"  {k}: {v if not isinstance(v, float) else round(v, 3)}")


if __name__ == "__main__":
    main()
