"""PowerDNS remote backend throughput (issue 3), dnsperf on loopback, one zone with 10k accounts.

1. pdns + this backend with the shipped settings (``deploy/pdns.conf``: unix connector, 1 s packet
   and query caches; the backend's answer cache on, as ``HBDNS_BACKEND_CACHE_ENTRIES`` ships) vs
   pdns + its bind backend serving the same records from a zone file with the same pdns settings:
   queries/s ratio. Goals >= 0.95 (Zipf) and >= 0.9 (uniform). Measured alongside: the backend
   without its answer cache but with its account data memoized in-process
   (``bench.stub_backend``, no Redis round trip per lookup), the ceiling of a Python remote backend
   that builds every answer, as measured before the answer cache.
2. Caches off (packet, query and negative caches 0), the backend's answer cache off too: backend
   lookups/s, i.e. pdns' own ``backend-queries`` counter over the run, over HTTP and over the unix
   socket, every lookup a Redis round trip. Goals >= 3,000/s (HTTP) and >= 15,000/s (unix). Over
   unix also reading a replica of the primary (a DNS node's own Redis), runs alternating with the
   same backend reading the primary: the same-run reference. Then the same two transports with the
   answer cache on (after the warm-up, every lookup a hit).
3. A replica's lag (:mod:`bench.replica`): how long an IP change takes to show on it, and on
   pdns reading it.

Half the accounts are live (reported address), half neutral; a fifth have MX. Queries are A, AAAA
and MX over all 10k names in random order (so the 1 s caches keep refilling from the backend),
plus a few apex SOA/NS. Several runs each, alternating the contenders; medians are reported and
everything is written to ``bench/out/backend.json``. Runnable alone: ``python -m bench.bench_backend``;
``--probe`` measures only the lookup path's CPU per call (in-process, no pdns), to compare versions.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

from bench import replica as replica_part
from bench.common import Metric
from hbdns import config, keys
from hbdns.connection import connect
from hbdns.model import StaticRecord, Zone
from hbdns.store import Store
from pdns_backend.backend import Backend
from tests.support.pdns import BackendProcess, PdnsServer, deploy_settings
from tests.support.servers import RedisServer, which

OUT = Path(__file__).resolve().parent / "out"
WORK = OUT / "tmp" / "backend"
APEX = "bench.example"
ACCOUNTS = 10_000
CACHES_OFF = {"cache-ttl": "0", "query-cache-ttl": "0", "negquery-cache-ttl": "0"}
NO_ANSWER_CACHE = {"HBDNS_BACKEND_CACHE_ENTRIES": "0"}


def populate(r: Any, n: int) -> list[str]:
    """One zone, ``n`` accounts written in bulk (pipelined, through the key schema: both name
    indexes, the account hashes); half live, with their addresses and alive keys as a beat leaves
    them (written here rather than beaten, so that only what the lookup reads is set up)."""
    settings = config.load({})
    store = Store(r, settings)
    store.add_zone(
        Zone(
            apex=APEX,
            ns=(f"ns1.{APEX}", f"ns2.{APEX}"),
            hostmaster=f"hostmaster.{APEX}",
            neutral_ipv4="192.0.2.1",
            neutral_ipv6="2001:db8::1",
            backup_mx=f"mx-backup.{APEX}",
            records=(
                StaticRecord(f"ns1.{APEX}", "A", "198.51.100.1"),
                StaticRecord(f"ns2.{APEX}", "A", "198.51.100.2"),
                StaticRecord(f"mx-backup.{APEX}", "A", "198.51.100.25"),
            ),
        )
    )
    template = store.new_account(f"h0.{APEX}", "heartbeat-c")
    names = []
    pipe = r.pipeline(transaction=False)
    for i in range(1, n + 1):
        fqdn = f"h{i}.{APEX}"
        names.append(fqdn)
        acct = replace(template, id=i, fqdn=fqdn, mx=i % 5 == 0, plan="heartbeat-c" if i % 2 else "setip-c")
        fields = acct.new_hash(0)
        if i % 2:  # live: what a beat with both addresses leaves
            fields.update(state="live", ipv4=f"10.{i // 65536}.{i // 256 % 256}.{i % 256}", ipv6=f"2001:db8:1::{i:x}")
            for family in keys.FAMILIES:
                pipe.set(keys.alive(i, family), "1", px=3_600_000)
        pipe.hset(keys.account(i), mapping=fields)
        pipe.hset(keys.names(), fqdn, str(i))
        pipe.hset(keys.shard_names(keys.shard_of(i)), fqdn, str(i))
        pipe.sadd(keys.accounts(), i)
        pipe.sadd(keys.zone_accounts(APEX), i)
        if len(pipe) >= 2000:
            pipe.execute()
    pipe.execute()
    r.set(keys.account_seq(), n)
    return names


def query_files(names: list[str], workdir: Path, seed: int = 7) -> dict[str, Path]:
    """Two query sets over all names, A (60%), AAAA (20%) and MX (20%), plus a few apex SOA/NS.

    ``zipf``: names drawn with weight 1/rank, the usual skew of DNS traffic (a few names get most
    queries; every name still appears). ``uniform``: every name equally often in random order, the
    worst case for 1 s caches (every name's cache entries refill from the backend every second).
    """
    rng = random.Random(seed)
    qtypes = ["A", "A", "A", "AAAA", "MX"]
    apex = [f"{APEX} SOA", f"{APEX} NS"] * 50
    uniform = [f"{n} {t}" for n in names for t in ("A", "A", "A", "AAAA", "MX")] + apex
    rng.shuffle(uniform)
    weights = [1 / (rank + 1) for rank in range(len(names))]
    zipf = [f"{n} {rng.choice(qtypes)}" for n in rng.choices(names, weights=weights, k=len(uniform))] + apex
    rng.shuffle(zipf)
    out = {}
    for label, lines in (("zipf", zipf), ("uniform", uniform)):
        out[label] = workdir / f"queries-{label}.txt"
        out[label].write_text("\n".join(lines) + "\n")
    return out


def zone_file(r: Any, path: Path) -> Path:
    """The same records as the backend serves (its own ``list`` output), as a zone file."""
    backend = Backend(r, config.load({}).plan_table())
    records = backend.list_zone(APEX)
    assert isinstance(records, list)
    lines = [f"$ORIGIN {APEX}."]
    for rec in records:
        content = rec["content"]
        if rec["qtype"] in ("NS", "MX", "CNAME"):
            content += "."
        if rec["qtype"] == "SOA":
            parts = content.split()
            content = " ".join([parts[0] + ".", parts[1] + ".", *parts[2:]])
        lines.append(f"{rec['qname']} {rec['ttl']} IN {rec['qtype']} {content}")
    path.write_text("\n".join(lines) + "\n")
    return path


def dnsperf(port: int, queries: Path, seconds: float, clients: int = 8) -> float:
    """Queries/s that dnsperf measured (all answered queries count, whatever the rcode)."""
    argv = [which("dnsperf"), "-s", "127.0.0.1", "-p", str(port), "-d", str(queries), "-l", str(seconds)]
    out = subprocess.run(
        [*argv, "-c", str(clients), "-q", "200", "-t", "2"],
        capture_output=True,
        text=True,
        timeout=seconds + 60,
    ).stdout
    m = re.search(r"Queries per second:\s+([\d.]+)", out)
    if not m:
        raise RuntimeError("dnsperf printed no rate:\n" + out)
    lost = re.search(r"Queries lost:\s+(\d+)", out)
    if lost and int(lost.group(1)) > 0:
        print(f"   dnsperf: {lost.group(1)} queries lost", file=sys.stderr)
    return float(m.group(1))


@contextmanager
def remote_pdns(
    name: str,
    redis_url: str,
    transport: str,
    extra: dict[str, str],
    threads: int | None = None,
    module: str = "pdns_backend.main",
    env: dict[str, str] | None = None,
) -> Iterator[PdnsServer]:
    threads = threads or config.load({}).backend_threads  # the shipped default
    backend = BackendProcess(
        WORK / f"{name}-backend", redis_url, transport=transport, threads=threads, module=module, env=env
    )
    backend.start()
    pdns = PdnsServer(WORK / f"{name}-pdns", backend.connection_string, extra={"loglevel": "3", **extra})
    pdns.backend_process = backend
    try:
        pdns.start()
        yield pdns
    finally:
        pdns.stop()
        backend.stop()


@contextmanager
def bind_pdns(zonefile: Path, extra: dict[str, str]) -> Iterator[PdnsServer]:
    named = WORK / "named.conf"
    named.write_text(f'zone "{APEX}" {{ type master; file "{zonefile}"; }};\n')
    settings = {"launch": "bind", "bind-config": str(named), "loglevel": "3", **extra}
    pdns = PdnsServer(WORK / "bind-pdns", "", extra=settings)
    try:
        pdns.start()
        yield pdns
    finally:
        pdns.stop()


def warm(pdns: PdnsServer, queries: Path) -> None:
    """Load the zone cache, backend connections and Redis' script cache before measuring."""
    dnsperf(pdns.port, queries, 1)


def measure_lookups(pdns: PdnsServer, queries: Path, seconds: float) -> tuple[float, float]:
    """(backend lookups/s from pdns' backend-queries counter, dnsperf qps) over one run."""
    before = pdns.statistic("backend-queries")
    t0 = time.monotonic()
    qps = dnsperf(pdns.port, queries, seconds)
    elapsed = time.monotonic() - t0
    lookups = pdns.statistic("backend-queries") - before
    return lookups / elapsed, qps


def run(quick: bool) -> list[Metric]:
    runs = 2 if quick else 5
    seconds = 3.0 if quick else 6.0
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    deploy = deploy_settings()
    shipped = {k: v for k, v in deploy.items() if k in ("cache-ttl", "query-cache-ttl", "negquery-cache-ttl")}
    # the backend reads Redis over its unix socket, as deploy recommends for a co-located Redis;
    # a replica of it, as a DNS node's own Redis (issue 16), the same way
    rs = RedisServer(WORK / "redis", unix_socket=True, extra=["repl-diskless-sync-delay 0"]).start()
    replica = RedisServer(WORK / "replica", unix_socket=True, extra=[f"replicaof 127.0.0.1 {rs.port}"]).start()
    results: dict[str, Any] = {
        "accounts": ACCOUNTS,
        "shipped_settings": {k: deploy[k] for k in deploy if "cache" in k or "threads" in k},
        "seconds_per_run": seconds,
    }
    ratio_qps: dict[str, tuple[list[float], list[float]]] = {}
    ceilings: dict[str, list[float]] = {}
    labels = ("http", "unix", "replica", "bind", "http-cached", "unix-cached")
    lookups: dict[str, list[float]] = {label: [] for label in labels}
    qps_off: dict[str, list[float]] = {label: [] for label in labels}
    lag: list[Metric] = []
    try:
        r = connect(rs.url)
        names = populate(r, ACCOUNTS)
        queries = query_files(names, WORK)
        zonefile = zone_file(r, WORK / f"{APEX}.zone")
        r.close()
        # 1. shipped settings: remote (unix connector, as shipped) vs bind, runs alternating; and the
        #    ceiling: the same backend with account data memoized (no Redis per lookup)
        with (
            remote_pdns("shipped", rs.unix_url, "unix", shipped) as remote,
            remote_pdns(
                "ceiling", rs.unix_url, "unix", shipped, module="bench.stub_backend", env=NO_ANSWER_CACHE
            ) as ceiling,
            bind_pdns(zonefile, shipped) as bind,
        ):
            for label, qfile in queries.items():
                for pdns in (remote, ceiling, bind):
                    warm(pdns, qfile)
                remote_qps: list[float] = []
                ceiling_qps: list[float] = []
                bind_qps: list[float] = []
                for _ in range(runs):
                    remote_qps.append(dnsperf(remote.port, qfile, seconds))
                    ceiling_qps.append(dnsperf(ceiling.port, qfile, seconds))
                    bind_qps.append(dnsperf(bind.port, qfile, seconds))
                ratio_qps[label] = (remote_qps, bind_qps)
                ceilings[label] = ceiling_qps
        # 2. caches off: backend lookups/s per transport (pdns' backend-queries counter); over unix
        #    also reading the replica, runs alternating with the primary
        with remote_pdns("nocache-http", rs.unix_url, "http", CACHES_OFF, env=NO_ANSWER_CACHE) as pdns:
            warm(pdns, queries["uniform"])
            for _ in range(runs):
                lps, qps = measure_lookups(pdns, queries["uniform"], seconds)
                lookups["http"].append(lps)
                qps_off["http"].append(qps)
        replica_part.synced(rs, replica)
        with (
            remote_pdns("nocache-unix", rs.unix_url, "unix", CACHES_OFF, env=NO_ANSWER_CACHE) as pdns,
            remote_pdns("nocache-replica", replica.unix_url, "unix", CACHES_OFF, env=NO_ANSWER_CACHE) as on_replica,
        ):
            for p in (pdns, on_replica):
                warm(p, queries["uniform"])
            for _ in range(runs):
                for label, p in (("unix", pdns), ("replica", on_replica)):
                    lps, qps = measure_lookups(p, queries["uniform"], seconds)
                    lookups[label].append(lps)
                    qps_off[label].append(qps)
        #    and with the backend's answer cache on, pdns' caches still off
        for transport in ("http", "unix"):
            with remote_pdns(f"cached-{transport}", rs.unix_url, transport, CACHES_OFF) as pdns:
                warm(pdns, queries["uniform"])
                for _ in range(runs):
                    lps, qps = measure_lookups(pdns, queries["uniform"], seconds)
                    lookups[f"{transport}-cached"].append(lps)
                    qps_off[f"{transport}-cached"].append(qps)
        # 3. a replica's lag: how long an IP change takes to show on a DNS node reading it
        with remote_pdns("replica-node", replica.unix_url, "unix", shipped) as node:
            warm(node, queries["zipf"])
            lag = replica_part.measure(rs, replica, node, APEX, ACCOUNTS, quick)
        # same-run reference: pdns' own bind backend on the same records, caches off, same counter
        with bind_pdns(zonefile, CACHES_OFF) as bind:
            warm(bind, queries["uniform"])
            for _ in range(runs):
                lps, qps = measure_lookups(bind, queries["uniform"], seconds)
                lookups["bind"].append(lps)
                qps_off["bind"].append(qps)
    finally:
        replica.stop()
        rs.stop()

    ratio_goals = {"zipf": 0.95, "uniform": 0.9}
    metrics = []
    for label, (remote_qps, bind_qps) in ratio_qps.items():
        ratio_goal = ratio_goals[label]
        ratio = statistics.median(remote_qps) / statistics.median(bind_qps)
        ceiling = statistics.median(ceilings[label])
        ceiling_note = (
            f"; ceiling (the backend without its answer cache, account data memoized in-process): "
            f"{ceiling:,.0f} qps = {ceiling / statistics.median(bind_qps):.2f} x reference"
        )
        metrics.append(
            Metric(
                name=f"pdns + hbdns backend (unix, shipped 1 s caches, answer cache), 10k accounts, {label} queries",
                unit="queries/s",
                samples=tuple(remote_qps),
                reference_name="pdns + bind backend, same records and pdns settings",
                reference_samples=tuple(bind_qps),
                goal=f">= {ratio_goal} x reference",
                met=ratio >= ratio_goal,
                notes=(
                    "dnsperf; names drawn with weight 1/rank (typical DNS skew)"
                    if label == "zipf"
                    else "dnsperf; all 10k names equally often: every name refills from the backend every second"
                )
                + ceiling_note,
                extra={"ceiling_samples": ceilings[label]},
            )
        )
    for transport, goal in (("http", 3000), ("unix", 15000), ("http-cached", 3000), ("unix-cached", 15000)):
        per_query = statistics.median(lookups[transport]) / max(statistics.median(qps_off[transport]), 1e-9)
        kind, _, cached = transport.partition("-")
        answer_cache = "on" if cached else "off"
        metrics.append(
            Metric(
                name=f"backend lookups/s over {kind.upper()}, pdns caches off, answer cache {answer_cache}",
                unit="lookups/s",
                samples=tuple(lookups[transport]),
                reference_name="pdns + bind backend, caches off, same records and counter",
                reference_samples=tuple(lookups["bind"]),
                goal=f">= {goal}",
                met=statistics.median(lookups[transport]) >= goal,
                notes=f"pdns backend-queries counter; {per_query:.2f} lookups per DNS query; "
                f"DNS qps median {statistics.median(qps_off[transport]):.0f}",
                extra={"dns_qps": qps_off[transport]},
            )
        )
    metrics.append(replica_part.lookups_metric(lookups["replica"], lookups["unix"], qps_off["replica"]))
    metrics.extend(lag)
    results["metrics"] = [m.to_dict() for m in metrics]
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "backend.json").write_text(json.dumps(results, indent=2) + "\n")
    return metrics


def pairs(count: int, seconds: float = 4.0) -> dict[str, dict[str, float]]:
    """Only part 1, as ``count`` alternating rounds (backend, ceiling, bind): medians, and the median
    of each round's own ratio to bind, which a busy machine's swings between rounds move less."""
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    caches = ("cache-ttl", "query-cache-ttl", "negquery-cache-ttl")
    shipped = {k: v for k, v in deploy_settings().items() if k in caches}
    rs = RedisServer(WORK / "redis", unix_socket=True).start()
    out: dict[str, dict[str, float]] = {}
    try:
        r = connect(rs.url)
        queries = query_files(populate(r, ACCOUNTS), WORK)
        zonefile = zone_file(r, WORK / f"{APEX}.zone")
        r.close()
        with (
            remote_pdns("shipped", rs.unix_url, "unix", shipped) as remote,
            remote_pdns(
                "ceiling", rs.unix_url, "unix", shipped, module="bench.stub_backend", env=NO_ANSWER_CACHE
            ) as ceiling,
            bind_pdns(zonefile, shipped) as bind,
        ):
            for label, qfile in queries.items():
                for pdns in (remote, ceiling, bind):
                    warm(pdns, qfile)
                got: dict[str, list[float]] = {"backend": [], "ceiling": [], "bind": []}
                for _ in range(count):
                    for name, pdns in (("backend", remote), ("ceiling", ceiling), ("bind", bind)):
                        got[name].append(dnsperf(pdns.port, qfile, seconds))
                out[label] = {
                    **{f"{k} qps": statistics.median(v) for k, v in got.items()},
                    "backend / bind, per round": statistics.median(
                        a / b for a, b in zip(got["backend"], got["bind"], strict=True)
                    ),
                    "ceiling / bind, per round": statistics.median(
                        a / b for a, b in zip(got["ceiling"], got["bind"], strict=True)
                    ),
                }
    finally:
        rs.stop()
    return out


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def probe(calls: int = 20_000, reps: int = 5) -> dict[str, dict[str, float]]:
    """The lookup path alone, in-process (no pdns): CPU per call of 1 and of 8 names, in this process
    and in Redis (over its unix socket, 10k accounts, every name seen once before): ``lookup_batch``
    (records, no answer cache), the same for names the backend has not seen (the name index's
    discovery round trip first), and the unix transport's ``answer_lines`` (request lines to reply
    lines) without and with the answer cache (all hits). Medians of ``reps`` runs of ``calls`` calls;
    for comparing two versions of the hot path."""
    from pdns_backend.app import backend_redis
    from pdns_backend.unix import answer_lines

    workdir = Path(tempfile.mkdtemp(prefix="hbdns-probe-"))
    rs = RedisServer(workdir / "redis", unix_socket=True).start()
    try:
        r = connect(rs.url)
        names = populate(r, ACCOUNTS)
        r.close()
        plain = Backend(backend_redis(rs.unix_url), config.load({}).plan_table())
        cached = Backend(backend_redis(rs.unix_url), config.load({}).plan_table(), cache_entries=100_000)
        for backend in (plain, cached, cached):  # the first pass of the cached one is dropped by its connect
            for i in range(0, len(names), 50):
                backend.lookup_bodies([(n, "ANY") for n in names[i : i + 50]])
        rng = random.Random(7)
        out = {}
        assert rs.process is not None
        for batch in (1, 8):
            qs = [[(rng.choice(names), "ANY") for _ in range(batch)] for _ in range(calls)]
            lines = [
                [json.dumps({"method": "lookup", "parameters": {"qname": n + ".", "qtype": t}}).encode() for n, t in q]
                for q in qs
            ]

            def first_sight(i: int, qs: list[list[tuple[str, str]]] = qs) -> Any:
                plain.accounts.forget()  # every name of the call is new: the discovery, then the script
                return plain.lookup_batch(qs[i])

            paths: list[tuple[str, Any]] = [
                ("lookup_batch", lambda i, qs=qs: plain.lookup_batch(qs[i])),
                ("lookup_batch, names not seen before", first_sight),
                ("unix lines, no answer cache", lambda i, lines=lines: answer_lines(plain, lines[i])),
                ("unix lines, answer cache hits", lambda i, lines=lines: answer_lines(cached, lines[i])),
            ]
            for label, fn in paths:
                client, server = [], []
                for _ in range(reps):
                    r0, c0 = _cpu_seconds(rs.process.pid), time.process_time()
                    for i in range(calls):
                        fn(i)
                    client.append((time.process_time() - c0) / calls * 1e6)
                    server.append((_cpu_seconds(rs.process.pid) - r0) / calls * 1e6)
                out[f"{label}, batch {batch}"] = {
                    "client_cpu_us": statistics.median(client),
                    "redis_cpu_us": statistics.median(server),
                }
        return out
    finally:
        rs.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_backend")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--probe", action="store_true", help="only the lookup path's CPU per call, no pdns")
    parser.add_argument("--pairs", type=int, default=0, help="only part 1, this many alternating rounds")
    args = parser.parse_args(argv)
    if args.pairs:
        for label, row in pairs(args.pairs).items():
            print(f"{label}: " + ", ".join(f"{k} {v:,.2f}" for k, v in row.items()))
        return 0
    if args.probe:
        for label, row in probe().items():
            print(f"{label}: " + ", ".join(f"{k} {v:.1f}" for k, v in row.items()))
        return 0
    t0 = time.monotonic()
    for m in run(args.quick):
        if m.unit == "s":  # latencies: their spread is in the notes
            print(f"{m.name}: {m.notes}")
            continue
        ref = f" vs {m.reference_median:,.0f} (ratio {m.ratio:.2f})" if m.reference_median else ""
        print(f"{m.name}: median {m.median:,.0f} {m.unit}{ref}; goal {m.goal}: {'met' if m.met else 'MISSED'}")
        print(f"   samples {[round(s) for s in m.samples]}; {m.notes}")
    print(f"took {time.monotonic() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
