"""Micro-benchmark of the listener's pure path (screen -> authenticate -> conclude), no sockets, no Redis.

What it times: :func:`heartbeat_listener.protocol.process_batch` over batches of 256 valid beats of
cached accounts (REPLY on one beat in 6, as ``hbdns-client`` sends them), with a writer that answers
the shared ``OK`` at once, so only the listener's own Python work per beat is measured. Result: ns per
beat, the median of ``--repeats`` timings of ``--batches`` batches each.

To compare two trees (e.g. before and after a refactoring), ``--against DIR`` runs this file in a
fresh process per round, alternating between DIR and this tree (``PYTHONPATH`` set to each tree and
its ``client/``), and prints the median of the rounds' medians for each::

    python -m bench.listener_protocol_micro --against /tmp/hb-base --rounds 7

On a shared machine wall-clock timings of identical code differ by 10-20% between runs, so
``--instructions`` also counts the CPU instructions per beat with valgrind's callgrind (the same
count whatever else the machine does): each tree runs the loop once and three times, and the
difference, divided by the beats of two passes, is what one beat costs.

Not part of ``make bench`` (it has no same-run reference and measures no goal).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve()
ROOT = HERE.parents[1]


def measure(batches: int, repeats: int, batch: int = 256, accounts: int = 20_000) -> float:
    """ns per beat (median of ``repeats``), with whichever listener code is first on sys.path."""
    from hbdns_client import wire

    from hbdns.liveness import OK
    from heartbeat_listener.protocol import AccountCache, AccountInfo, SourceLimiter, process_batch

    key = bytes(range(32))
    cache = AccountCache()
    cache.update({i: AccountInfo(key, 15_000, "dyn.test", f"fp{i}") for i in range(accounts)})
    counter = 1_700_000_000_000
    datagrams = []
    for n in range(batches * batch):
        flags = wire.FLAG_REPLY if n % 6 == 0 else 0
        data = wire.encode_beat(n % accounts, counter + n, key, flags)
        datagrams.append((data, (f"198.51.{n % 64}.{n % 200 + 1}", 40000)))
    chunks = [datagrams[i : i + batch] for i in range(0, len(datagrams), batch)]

    class Writer:
        def beats(self, reqs: object) -> list[object]:
            return [OK] * len(reqs)  # type: ignore[arg-type]

    def lookup(ids: object) -> dict[int, object]:
        raise AssertionError("every account is cached")

    writer = Writer()
    timings = []
    for _ in range(repeats):
        limiter = SourceLimiter(1e9, 1_000_000)
        start = time.perf_counter_ns()
        for k, chunk in enumerate(chunks):
            d = process_batch(chunk, lookup, writer, limiter, float(k), cache)  # type: ignore[arg-type]
            if d.counts.get("accepted") != len(chunk):
                raise AssertionError(f"unexpected counts {dict(d.counts)}")
        timings.append((time.perf_counter_ns() - start) / (batches * batch))
    return statistics.median(timings)


def _one(tree: Path, batches: int, repeats: int) -> float:
    env = dict(os.environ, PYTHONPATH=f"{tree}{os.pathsep}{tree / 'client'}")
    out = subprocess.run(
        [sys.executable, str(HERE), "--once", "--batches", str(batches), "--repeats", str(repeats)],
        env=env,
        cwd=str(tree),
        capture_output=True,
        text=True,
        check=True,
    )
    return float(json.loads(out.stdout)["ns_per_beat"])


def _instructions(tree: Path, batches: int) -> float:
    """CPU instructions per beat of the timed loop (callgrind; hash seed fixed so dicts repeat)."""
    counts = []
    for repeats in (1, 3):
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "callgrind.out"
            env = dict(os.environ, PYTHONPATH=f"{tree}{os.pathsep}{tree / 'client'}", PYTHONHASHSEED="0")
            argv = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable, str(HERE)]
            argv += ["--once", "--batches", str(batches), "--repeats", str(repeats)]
            subprocess.run(argv, env=env, cwd=str(tree), capture_output=True, text=True, check=True)
            totals = [line for line in out.read_text().splitlines() if line.startswith("totals:")]
            counts.append(int(totals[0].split()[1]))
    return (counts[1] - counts[0]) / (2 * batches * 256)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.listener_protocol_micro")
    parser.add_argument("--batches", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--once", action="store_true", help="one measurement with the code on sys.path")
    parser.add_argument("--against", type=Path, help="another tree to compare with, interleaved")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--instructions", action="store_true", help="also count instructions per beat (valgrind)")
    args = parser.parse_args(argv)
    if args.once or not args.against:
        print(json.dumps({"ns_per_beat": measure(args.batches, args.repeats)}))
        return 0
    trees = {"against": args.against.resolve(), "this": ROOT}
    results: dict[str, list[float]] = {name: [] for name in trees}
    for r in range(args.rounds):
        order = list(trees.items()) if r % 2 == 0 else list(reversed(trees.items()))
        for name, tree in order:
            results[name].append(_one(tree, args.batches, args.repeats))
    summary = {
        name: {"median_ns_per_beat": round(statistics.median(v), 1), "rounds": [round(x, 1) for x in v]}
        for name, v in results.items()
    }
    summary["ratio_this_to_against"] = round(
        summary["this"]["median_ns_per_beat"] / summary["against"]["median_ns_per_beat"],
        3,  # type: ignore[index]
    )
    if args.instructions:
        per_beat = {name: _instructions(tree, 20) for name, tree in trees.items()}
        summary["instructions_per_beat"] = {name: round(v) for name, v in per_beat.items()}  # type: ignore[assignment]
        summary["instructions_ratio_this_to_against"] = round(per_beat["this"] / per_beat["against"], 3)
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
