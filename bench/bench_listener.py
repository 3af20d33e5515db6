"""Heartbeat listener throughput (issue 4): verified-and-stored beats/s of ONE listener process.

Set-up: a real redis-server (with deploy/redis.conf, as production), 100k heartbeat accounts, the
listener as a subprocess (``python -m heartbeat_listener.main``), and a load generator in another
process that sends pre-computed valid beats from 64 loopback source addresses, 32 per sendmmsg(2)
call (ctypes, :class:`tests.support.udpflood.Sendmmsg`, shared with the junk flood) so that its
own CPU, which shares the machine's cores, is mostly the kernel's per-packet work. The generator
keeps the listener's socket queue filled but not overflowing (it watches ``rx_queue`` in
/proc/net/udp), so the listener never idles and the kernel should drop nothing; any kernel drop is
still counted (/proc/net/udp ``drops`` of the listener's sockets and /proc/net/snmp
``RcvbufErrors``) and not blamed on the listener.

Per run, counted from the listener and Redis, never from sends:
- stored beats/s = accepted beats (listener metrics, cross-checked with Redis' EVALSHA call count)
  over the time from the first send to the last accepted beat;
- lost = sent - kernel drops - accepted: beats the kernel delivered that were not stored (goal 0);
  at the end every account's stored ``counter`` must be the last one sent.

Which beats ask for a reply (REPLY flag) follows ``hbdns-client``: once answered it asks at most every
30 s, so at the 5 s plan one beat in 6-7; the goal row sends REPLY on one beat in 6. A second,
informational row sends REPLY on every beat (``reply_every = 0``), interleaved with the first.

Same-run reference: ``redis-benchmark`` running the beat script itself (EVALSHA, 128 beats per call,
pipelined -P 4, random account of 100k, same ARGV except an empty counter because redis-benchmark
cannot produce increasing counters) on the same Redis: what Redis alone can do with this write
pattern. Its accounts are all named in one shard (a one-row shard table per call, as on Redis
Cluster), where the listener's batches on this standalone Redis span the 16 shards.

Run: ``python -m bench.bench_listener [--quick]``; results in bench/out/listener.json.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hbdns_client import wire

from bench.common import Metric
from hbdns import config, keys, scripts
from hbdns.connection import connect
from hbdns.liveness import BeatRequest, Liveness
from hbdns.metrics import parse_metrics
from hbdns.model import Account, Zone
from hbdns.store import Store
from tests.support.servers import Process, RedisServer, free_port, wait_for, which
from tests.support.udpflood import Sendmmsg

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out"
ZONE = "hb.bench.test"
PLAN = "heartbeat-a"  # 45 s x 3: no alive key expires between runs (per-beat work is the same)
SOURCES = 64
REF_ID = 987654320  # the reference's stand-in id (shard 0), replaced by redis-benchmark's __rand_int__
GOAL_RATE = 50_000.0
GOAL_RATIO = 0.35


# --- load generator (runs in its own process) ------------------------------------------------------


def _rx_queue(port: int) -> int:
    """Bytes waiting in the receive queues of the UDP sockets bound to ``port``."""
    total = 0
    suffix = f":{port:04X}"
    for path in ("/proc/net/udp", "/proc/net/udp6"):
        try:
            with open(path) as f:
                next(f, None)
                for line in f:
                    cols = line.split()
                    if cols[1].endswith(suffix):
                        total += int(cols[4].split(":")[1], 16)
        except OSError:
            continue
    return total


def sender_main(args: argparse.Namespace) -> int:
    records = Path(args.accounts).read_bytes()
    accounts = [struct.unpack_from(">I32s", records, off) for off in range(0, len(records), 36)]
    socks = []
    for i in range(SOURCES):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((f"127.1.0.{i + 1}", 0))
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # replies are not read: keep it small
        s.connect(("127.0.0.1", args.port))
        socks.append(s)
    ask_every = max(0, args.reply_every)  # 0: no beat asks; 1: every beat; k: one beat in k (spread)
    mmsg = Sendmmsg()
    chunk = mmsg.CHUNK
    # an account always sends from the same source address (chunk k of the account list -> source k % 64)
    rounds = []
    for r in range(args.rounds):
        counter = args.base + r
        packets = [
            wire.encode_beat(aid, counter, key, wire.FLAG_REPLY if ask_every and (n + r) % ask_every == 0 else 0)
            for n, (aid, key) in enumerate(accounts)
        ]
        rounds.append(
            [
                (socks[(i // chunk) % SOURCES].fileno(), mmsg.prepare(packets[i : i + chunk]))
                for i in range(0, len(packets), chunk)
            ]
        )
    high = args.queue_limit
    print("ready", flush=True)
    sys.stdin.readline()
    t0 = os.times()
    start = time.monotonic()
    sent = 0
    for chunks in rounds:
        for n, (fd, prepared) in enumerate(chunks):
            if n % 16 == 0:
                while _rx_queue(args.port) > high:  # the listener is behind: let it catch up
                    time.sleep(0.003)
            sent += mmsg.send(fd, prepared)
    t = os.times()
    cpu = t.user + t.system - t0.user - t0.system
    print(json.dumps({"sent": sent, "seconds": time.monotonic() - start, "cpu": cpu}), flush=True)
    return 0


# --- the benchmark ---------------------------------------------------------------------------------


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (0 if it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _snmp_rcvbuf_errors() -> int:
    lines = [line.split() for line in Path("/proc/net/snmp").read_text().splitlines() if line.startswith("Udp:")]
    head, values = lines[0], lines[1]
    return int(values[head.index("RcvbufErrors")])


class Bench:
    def __init__(self, workdir: Path, accounts: int) -> None:
        self.workdir = workdir
        self.n = accounts
        self.redis = RedisServer(workdir / "redis")
        self.listener: Process | None = None
        self.port = 0
        self.metrics_port = 0
        self.accounts_file = workdir / "accounts.bin"

    def setup(self) -> None:
        self.redis.start()
        r = connect(self.redis.url)
        store = Store(r, config.load({}))
        store.add_zone(Zone(ZONE, ("ns1.bench.test",), "hostmaster.bench.test", "192.0.2.1"))
        accounts = [
            Account(id=0, fqdn=f"h{i}.{ZONE}", zone=ZONE, plan=PLAN, hb_key=secrets.token_bytes(32))
            for i in range(self.n)
        ]
        stored = store.bulk_add_accounts(accounts)
        self.accounts_file.write_bytes(b"".join(struct.pack(">I32s", a.id, a.hb_key) for a in stored))
        self.ids = [a.id for a in stored]
        self._setup_reference(r)
        r.close()

    def _setup_reference(self, r: Any) -> None:
        """Accounts under the 12-digit ids redis-benchmark's __rand_int__ produces, for the reference:
        their keys are spelled as those of :data:`REF_ID` (shard 0) with the id replaced, so every
        reference account is in shard 0's key names (the script reads the shard from its table)."""
        for start in range(0, self.n, 5000):
            pipe = r.pipeline(transaction=False)
            for i in range(start, min(self.n, start + 5000)):
                rid = f"{i:012d}"
                pipe.hset(
                    keys.account(REF_ID).replace(str(REF_ID), rid),
                    mapping={"id": rid, "fqdn": f"r{i}.{ZONE}", "zone": ZONE, "plan": PLAN, "state": "neutral"},
                )
            pipe.execute()

    def start_listener(self) -> None:
        self.port = free_port(socket.SOCK_DGRAM)
        self.metrics_port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("HBDNS_")}
        env.update(
            HBDNS_REDIS_URL=self.redis.url,
            HBDNS_HEARTBEAT_HOST="127.0.0.1",
            HBDNS_HEARTBEAT_HOST6="",
            HBDNS_HEARTBEAT_PORT=str(self.port),
            HBDNS_METRICS_PORT=str(self.metrics_port),
            HBDNS_HEARTBEAT_SOURCE_RATE="1000000",  # 64 sources carry 100k accounts here
            HBDNS_HEARTBEAT_SOURCE_BURST="1000000",
            HBDNS_LOG_LEVEL="WARNING",
        )
        self.listener = Process(
            [sys.executable, "-m", "heartbeat_listener.main"], self.workdir / "listener.log", env=env, cwd=str(ROOT)
        )
        wait_for(lambda: self.metrics().get('hbdns_heartbeat_packets_total{result="accepted"}') is not None, 30)

    def metrics(self) -> dict[str, float]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as resp:
            return parse_metrics(resp.read().decode())

    def _commandstats(self) -> dict[str, tuple[int, int]]:
        """command -> (calls, usec) from Redis' INFO commandstats."""
        r = connect(self.redis.url)
        try:
            stats = r.info("commandstats")
        finally:
            r.close()
        return {k[len("cmdstat_") :]: (int(v["calls"]), int(v["usec"])) for k, v in stats.items()}

    def _evalsha_calls(self) -> int:
        return self._commandstats().get("evalsha", (0, 0))[0]

    def send(self, rounds: int, base: int, reply_every: int = 1) -> dict[str, Any]:
        """One measured run: ``rounds`` beats per account; returns counts and the stored rate."""
        before = self.metrics()
        stats0 = self._commandstats()
        snmp0 = _snmp_rcvbuf_errors()
        cpu0 = {"listener": _cpu_seconds(self.listener.pid if self.listener else 0), "redis": self._redis_cpu()}
        argv = [
            sys.executable, "-m", "bench.bench_listener", "--sender",
            "--accounts", str(self.accounts_file), "--port", str(self.port),
            "--rounds", str(rounds), "--base", str(base), "--queue-limit", str(1 << 20),
            "--reply-every", str(reply_every),
        ]  # fmt: skip
        gen = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=str(ROOT))
        assert gen.stdout is not None and gen.stdin is not None
        if gen.stdout.readline().strip() != "ready":
            raise RuntimeError("load generator failed to start")
        accepted_key = 'hbdns_heartbeat_packets_total{result="accepted"}'
        start = time.monotonic()
        gen.stdin.write("go\n")
        gen.stdin.flush()
        # follow the accepted count until it stops moving after the generator finished
        last_value, last_change = before[accepted_key], start
        done = False
        while True:
            time.sleep(0.1)
            m = self.metrics()
            if m[accepted_key] != last_value:
                last_value, last_change = m[accepted_key], time.monotonic()
            if not done and gen.poll() is not None:
                done = True
            if done and time.monotonic() - last_change > 1.0:
                break
            if time.monotonic() - start > 300:
                raise RuntimeError("listener did not finish")
        out = json.loads(gen.stdout.read().strip().splitlines()[-1])
        after = self.metrics()
        gen.wait(10)

        def delta(name: str) -> float:
            return after.get(name, 0.0) - before.get(name, 0.0)

        received = sum(delta(k) for k in after if k.startswith("hbdns_heartbeat_packets_total{"))
        accepted = delta(accepted_key)
        kernel = delta("hbdns_heartbeat_kernel_drops_total")
        seconds = last_change - start
        stats1 = self._commandstats()
        cpu = {
            "listener": _cpu_seconds(self.listener.pid if self.listener else 0) - cpu0["listener"],
            "redis": self._redis_cpu() - cpu0["redis"],
            "generator": out["cpu"],
        }

        def redis_us(cmd: str) -> float:
            calls = stats1.get(cmd, (0, 0))[0] - stats0.get(cmd, (0, 0))[0]
            usec = stats1.get(cmd, (0, 0))[1] - stats0.get(cmd, (0, 0))[1]
            return usec / calls if calls else 0.0

        per_beat = {
            # Redis' own accounting of command execution (excludes its network I/O and AOF writes)
            "redis_evalsha_us": round(redis_us("evalsha"), 2),
            "redis_hmget_us": round(redis_us("hmget"), 2),
            # process CPU (user + system) per accepted beat
            **{f"{k}_cpu_us": round(v / accepted * 1e6, 2) if accepted else 0.0 for k, v in cpu.items()},
        }
        evalsha_calls = stats1.get("evalsha", (0, 0))[0] - stats0.get("evalsha", (0, 0))[0]
        return {
            "sent": out["sent"],
            "accepted": int(accepted),
            "received": int(received),
            "not_accepted": {
                k.split('"')[1]: int(delta(k))
                for k in after
                if k.startswith("hbdns_heartbeat_packets_total{") and k != accepted_key and delta(k)
            },
            "evalsha_calls": evalsha_calls,
            "per_beat": per_beat,
            "cpu_busy": {k: round(v / seconds, 2) if seconds else 0.0 for k, v in cpu.items()},
            "kernel_drops": int(kernel),
            "snmp_rcvbuf_errors": _snmp_rcvbuf_errors() - snmp0,
            "lost": int(out["sent"] - kernel - accepted),
            "seconds": seconds,
            "send_seconds": out["seconds"],
            "rate": accepted / seconds if seconds > 0 else 0.0,
        }

    def counters_match(self, expected: int) -> int:
        """How many accounts do NOT have ``expected`` as their stored counter."""
        r = connect(self.redis.url)
        try:
            bad = 0
            for start in range(0, len(self.ids), 5000):
                pipe = r.pipeline(transaction=False)
                for aid in self.ids[start : start + 5000]:
                    pipe.hget(keys.account(aid), "counter")
                bad += sum(1 for v in pipe.execute() if v is None or int(v) != expected)
            return bad
        finally:
            r.close()

    def reference(self, requests: int, batch: int = 128) -> float:
        """redis-benchmark: the beat script on random accounts of the 100k, ``batch`` beats per call
        (the listener's write pattern), pipelined; returns beats/s."""
        r = connect(self.redis.url)
        lv = Liveness(r)
        r.script_load(scripts.BEAT.source)
        r.close()
        ttl = int(config.load({}).plan_table()[PLAN].expiry_ms)
        rid = "__rand_int__"
        one = BeatRequest(REF_ID, ZONE, ttl, ipv4="10.9.8.7")
        keys_, args = lv.beat_argv([one] * batch)  # only the per-beat keys and the id carry the id
        keys_ = [k.replace(str(REF_ID), rid) for k in keys_]
        args = [a.replace(str(REF_ID), rid) for a in args]
        argv = [
            which("redis-benchmark"), "-p", str(self.redis.port), "-n", str(max(1, requests // batch)), "-P", "4",
            "-r", str(self.n), "-q", "--csv", "EVALSHA", scripts.BEAT.sha, str(len(keys_)), *keys_, *args,
        ]  # fmt: skip
        out = subprocess.run(argv, capture_output=True, text=True, timeout=300, check=True).stdout
        row = [line for line in out.splitlines() if line.startswith('"EVALSHA')][-1]
        return float(row.split(",")[1].strip('"')) * batch

    def _redis_cpu(self) -> float:
        return _cpu_seconds(self.redis.process.pid) if self.redis.process else 0.0

    def stop(self) -> None:
        if self.listener is not None:
            self.listener.stop()
        self.redis.stop()


# hbdns-client asks for a reply at most every ``reply_every`` (30 s) once answered: at the 5 s plan one
# beat in 6-7. The measured load asks on one beat in 6 (the more demanding end), spread over accounts.
CLIENT_REPLY_EVERY = 6


def run(quick: bool = False) -> list[Metric]:
    accounts = 20_000 if quick else 100_000
    runs = 2 if quick else 5
    every_runs = 1 if quick else 3  # the informational row: REPLY on every beat
    rounds = 2  # beats per account per run
    ref_requests = 100_000 if quick else 300_000
    with tempfile.TemporaryDirectory(prefix="hbdns-bench-listener-") as tmp:
        bench = Bench(Path(tmp), accounts)
        try:
            bench.setup()
            bench.start_listener()
            base = int(time.time() * 1000)
            # warm-up (not measured): each account's first beat records "recovered" and its address
            warm = bench.send(1, base)
            bench.reference(ref_requests)  # warm the reference accounts the same way
            results: dict[int, list[dict[str, Any]]] = {CLIENT_REPLY_EVERY: [], 1: []}
            refs: list[float] = []
            counter = base + 1
            # interleaved, so both patterns see the same phases of a shared host
            plan = [CLIENT_REPLY_EVERY] * runs
            for k in range(every_runs):
                plan.insert(1 + 2 * k, 1)
            for reply_every in plan:
                res = bench.send(rounds, counter, reply_every=reply_every)
                counter += rounds
                res["reply_every"] = reply_every
                res["accounts_behind"] = bench.counters_match(counter - 1) if res["lost"] == 0 else -1
                results[reply_every].append(res)
                if reply_every == CLIENT_REPLY_EVERY:
                    refs.append(bench.reference(ref_requests))
                print(
                    f"   run (REPLY on 1 beat in {reply_every}): {res['rate']:,.0f} beats/s stored, "
                    + (f"ref {refs[-1]:,.0f}/s, " if reply_every == CLIENT_REPLY_EVERY else "")
                    + f"sent {res['sent']}, kernel drops {res['kernel_drops']}, "
                    f"lost {res['lost']}",
                    flush=True,
                )
        finally:
            bench.stop()
    main = _metric(results[CLIENT_REPLY_EVERY], refs, accounts, rounds, CLIENT_REPLY_EVERY)
    main.extra["warmup"] = warm
    every = _metric(results[1], (), accounts, rounds, 1)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "listener.json").write_text(json.dumps([main.to_dict(), every.to_dict()], indent=2))
    return [main, every]


def _metric(
    results: list[dict[str, Any]], refs: Sequence[float], accounts: int, rounds: int, reply_every: int
) -> Metric:
    rates = [r["rate"] for r in results]
    rate = statistics.median(rates)
    lost = sum(r["lost"] for r in results)
    cost = {k: statistics.median(r["per_beat"][k] for r in results) for k in results[0]["per_beat"]}
    cores = os.cpu_count() or 1
    # what this machine could do if the listener and Redis had every core to themselves: CPU per beat
    ceiling = cores * 1e6 / (cost["listener_cpu_us"] + cost["redis_cpu_us"]) if cost["listener_cpu_us"] else 0.0
    redis_ceiling = 1e6 / cost["redis_cpu_us"] if cost["redis_cpu_us"] else 0.0  # Redis is single-threaded
    busy = {k: statistics.median(r["cpu_busy"][k] for r in results) for k in results[0]["cpu_busy"]}
    pattern = (
        "REPLY on every beat (hbdns-client with reply_every = 0)"
        if reply_every == 1
        else f"REPLY on 1 beat in {reply_every} (hbdns-client's default at the 5 s plan: 1 in 6-7)"
    )
    notes = (
        f"{accounts} accounts, {rounds} beats each per run, {pattern}; lost (delivered but not stored) "
        f"= {lost} over {len(results)} runs; kernel drops {sum(r['kernel_drops'] for r in results)}. "
        f"CPU per stored beat: listener {cost['listener_cpu_us']:.1f} us, Redis {cost['redis_cpu_us']:.1f} us "
        f"(EVALSHA {cost['redis_evalsha_us']:.1f} us per call by Redis' count), "
        f"load generator {cost['generator_cpu_us']:.1f} us: one Redis core caps this write pattern at "
        f"~{redis_ceiling:,.0f} beats/s, and {cores} idle cores shared by listener and Redis at "
        f"~{ceiling:,.0f} beats/s; share of a core each got during the runs: {busy}"
    )
    extra = {
        "runs": results,
        "accounts": accounts,
        "cores": cores,
        "reply_every": reply_every,
        "cpu_us_per_beat": cost,
        "cpu_bound_ceiling": ceiling,
        "redis_core_ceiling": redis_ceiling,
        "load_average": os.getloadavg(),
    }
    if not refs:  # the informational row: same listener, every beat answered; no goal of its own
        return Metric(
            name="heartbeats verified and stored per second, one listener process, REPLY on every beat",
            unit="beats/s",
            samples=tuple(rates),
            notes=notes,
            extra=extra,
        )
    ref = statistics.median(refs)
    return Metric(
        name="heartbeats verified and stored per second, one listener process",
        unit="beats/s",
        samples=tuple(rates),
        reference_name="redis-benchmark: beat script, 128 beats per EVALSHA, -P 4, same Redis",
        reference_samples=tuple(refs),
        goal=f">= {GOAL_RATE:,.0f} and >= {GOAL_RATIO} x reference, 0 delivered beats lost",
        met=rate >= GOAL_RATE and rate >= GOAL_RATIO * ref and lost == 0,
        notes=notes,
        extra=extra,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_listener")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--sender", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--accounts", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--rounds", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--base", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--queue-limit", type=int, default=1 << 20, help=argparse.SUPPRESS)
    parser.add_argument("--reply-every", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.sender:
        return sender_main(args)
    for m in run(quick=args.quick):
        print(json.dumps(m.to_dict(), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
