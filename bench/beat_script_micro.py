"""Micro-benchmark of the beat script's fast path in Redis: per-family liveness against the script
before it (tests/data/alive_v1, one alive key per account), same Redis, same batches.

What it times: Redis' own CPU per beat (``INFO commandstats``: usec per EVALSHA / beats per call)
for batches of 128 beats of live accounts whose address does not change (the path nearly every
beat takes), rounds alternating between the scripts so both see the same machine:

- ``v1``: the old script, KEYS acct alive log per beat;
- ``per-family``: this version, KEYS acct alive4 alive6 alive_legacy log, IPv4 beats;
- ``per-family, dual stack``: the same, accounts beating over IPv4 and IPv6 (two beats each).

    .venv/bin/python -m bench.beat_script_micro --rounds 7

Not part of ``make bench`` (no goal); its figures are quoted in docs/performance.md.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import redis

from hbdns import keys, keys_unsharded, scripts
from hbdns.config import load
from hbdns.liveness import BeatRequest
from hbdns.model import Zone
from hbdns.scripts import Script
from hbdns.store import Store
from tests.support.servers import RedisServer

OLD = Path(__file__).resolve().parents[1] / "tests" / "data" / "alive_v1"
ZONE = "bench.test"
BATCH = 128


def old_script() -> Script:
    return Script("v1-beat", (OLD / "lib.lua").read_text() + "\n" + (OLD / "beat.lua").read_text())


def usec_per_call(r: redis.Redis) -> tuple[int, float]:
    stats = r.info("commandstats").get("cmdstat_evalsha", {"calls": 0, "usec": 0})
    return int(stats["calls"]), float(stats["usec"])


def run_round(r: redis.Redis, kind: str, ids: list[int], batches: int, old: Script, store: Store) -> float:
    """Usec of Redis CPU per beat for ``batches`` batches of ``kind``."""
    r.config_resetstat()
    counter = time.time_ns() // 1_000_000
    done = 0
    for b in range(batches):
        chunk = [ids[(b * BATCH + i) % len(ids)] for i in range(BATCH)]
        counter += 1
        if kind == "v1":
            k = [keys_unsharded.deadlines(), keys_unsharded.events(), keys.zone(ZONE)]
            a = ["300000", "1000", "200", "beat", "1", ZONE]
            for i in chunk:
                k += [keys.account(i), keys.alive_legacy(i), keys.account_log(i)]
                a += [str(i), "203.0.113.7", "", str(counter), "16000", "0", ""]
            old(r, k, a)
            done += len(chunk)
        else:
            reqs = [BeatRequest(i, ZONE, 16000, ipv4="203.0.113.7", counter=counter) for i in chunk]
            if kind == "dual":
                reqs = [x for i in chunk for x in (
                    BeatRequest(i, ZONE, 16000, ipv4="203.0.113.7", counter=counter),
                    BeatRequest(i, ZONE, 16000, ipv6="2001:db8::7", counter=counter + 1),
                )][:BATCH]  # fmt: skip
                counter += 1
            k, a = store.liveness.beat_argv(reqs)
            scripts.BEAT(r, k, a)
            done += len(reqs)
    _calls, usec = usec_per_call(r)  # the first call of a round may add a NOSCRIPT: the usec are the script's
    return usec / done


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.beat_script_micro")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--batches", type=int, default=400)
    parser.add_argument("--accounts", type=int, default=20_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        server = RedisServer(Path(tmp))
        server.start()
        try:
            r = redis.Redis.from_url(server.url, decode_responses=True)
            store = Store(r, load({}))
            store.add_zone(Zone(ZONE, ("ns1.bench.test",), "hostmaster.bench.test", "192.0.2.1"))
            accts = store.bulk_add_accounts(
                [store.new_account(f"a{i}.{ZONE}", "heartbeat-c") for i in range(args.accounts)]
            )
            ids = [a.id for a in accts]
            old = old_script()
            half = len(ids) // 2
            groups = {"v1": ids[:half], "v4": ids[half:], "dual": ids[half:]}
            for kind, group in groups.items():  # warm up: every account live, the fast path from here
                run_round(r, kind, group, 2 * len(group) // BATCH + 2, old, store)
            results: dict[str, list[float]] = {k: [] for k in groups}
            for _ in range(args.rounds):
                for kind, group in groups.items():
                    results[kind].append(run_round(r, kind, group, args.batches, old, store))
        finally:
            server.stop()
    labels = {"v1": "v1 (one alive key)", "v4": "per-family, IPv4 beats", "dual": "per-family, dual stack"}
    base = statistics.median(results["v1"])
    for kind, values in results.items():
        med = statistics.median(values)
        print(f"{labels[kind]:28} {med:6.2f} us/beat (Redis CPU), {med / base:4.2f} x v1, rounds {len(values)}")


if __name__ == "__main__":
    main()
