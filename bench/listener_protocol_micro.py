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
difference, divided by the beats of two passes, is what one beat costs. It counts two loops: the
pure path above, and the whole socket shell (``UdpListener.step`` draining beats sent to it over
loopback, batches of 16 and of 256, with a pipelined writer that answers ``OK`` at once).

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


def measure_shell(beats: int, batch: int, repeats: int, accounts: int = 20_000) -> float:
    """ns per beat of ``UdpListener.step`` (recv, screen, verify, decide, replies) over loopback."""
    import socket

    from hbdns_client import wire

    from hbdns.liveness import OK
    from heartbeat_listener.metrics import Metrics
    from heartbeat_listener.protocol import AccountCache, AccountInfo, SourceLimiter
    from heartbeat_listener.server import UdpListener, open_socket

    key = bytes(range(32))
    cache = AccountCache()
    cache.update({i: AccountInfo(key, 15_000, "dyn.test", f"fp{i}") for i in range(accounts)})

    class Writer:
        def submit(self, reqs: list[object]) -> int:
            return len(reqs)

        def collect(self, count: int) -> list[object]:
            return [OK] * count

        def hold(self, reqs: list[object]) -> None:
            pass

    server = open_socket("127.0.0.1", 0)
    listener = UdpListener(
        [server], lambda ids: {}, Writer(), metrics=Metrics(), limiter=SourceLimiter(1e9, 1_000_000),  # type: ignore[arg-type]
        batch=batch, cache=cache,
    )  # fmt: skip
    client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    client.bind(("127.0.0.1", 0))
    total = 0
    for r in range(repeats):
        for n in range(r * beats, (r + 1) * beats):  # fits the listener's 4 MiB receive buffer
            flags = wire.FLAG_REPLY if n % 6 == 0 else 0
            client.sendto(wire.encode_beat(n % accounts, 1_700_000_000_000 + n, key, flags), server.getsockname())
        start, got = time.perf_counter_ns(), 0
        while got < beats:
            got += listener.step(0.5)
        listener.flush()
        total += time.perf_counter_ns() - start
    if listener.metrics.packets["accepted"] != beats * repeats:
        raise AssertionError(f"unexpected counts {listener.metrics.packets}")
    client.close()
    server.close()
    return total / (beats * repeats)


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


def _instructions(tree: Path, loop: list[str], beats: int) -> float:
    """CPU instructions per beat of ``loop`` (callgrind; hash seed fixed so dicts repeat)."""
    counts = []
    for repeats in (1, 3):
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "callgrind.out"
            env = dict(os.environ, PYTHONPATH=f"{tree}{os.pathsep}{tree / 'client'}", PYTHONHASHSEED="0")
            argv = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable, str(HERE)]
            argv += ["--once", *loop, "--repeats", str(repeats)]
            subprocess.run(argv, env=env, cwd=str(tree), capture_output=True, text=True, check=True)
            totals = [line for line in out.read_text().splitlines() if line.startswith("totals:")]
            counts.append(int(totals[0].split()[1]))
    return (counts[1] - counts[0]) / (2 * beats)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.listener_protocol_micro")
    parser.add_argument("--batches", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--once", action="store_true", help="one measurement with the code on sys.path")
    parser.add_argument("--against", type=Path, help="another tree to compare with, interleaved")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--instructions", action="store_true", help="also count instructions per beat (valgrind)")
    parser.add_argument("--shell", type=int, metavar="BATCH", help="with --once: time UdpListener.step instead")
    args = parser.parse_args(argv)
    if args.once or not args.against:
        if args.shell:
            print(json.dumps({"ns_per_beat": measure_shell(3000, args.shell, args.repeats)}))
        else:
            print(json.dumps({"ns_per_beat": measure(args.batches, args.repeats)}))
        return 0
    trees = {"against": args.against.resolve(), "this": ROOT}
    results: dict[str, list[float]] = {name: [] for name in trees}
    for r in range(args.rounds):
        order = list(trees.items()) if r % 2 == 0 else list(reversed(trees.items()))
        for name, tree in order:
            results[name].append(_one(tree, args.batches, args.repeats))
    medians = {name: statistics.median(v) for name, v in results.items()}
    summary: dict[str, object] = {
        name: {"median_ns_per_beat": round(medians[name], 1), "rounds": [round(x, 1) for x in v]}
        for name, v in results.items()
    }
    summary["ratio_this_to_against"] = round(medians["this"] / medians["against"], 3)
    if args.instructions:
        loops = {"pure": (["--batches", "20"], 20 * 256), "shell16": (["--shell", "16"], 3000)}
        loops["shell256"] = (["--shell", "256"], 3000)
        for loop, (flags, beats) in loops.items():
            per_beat = {name: _instructions(tree, flags, beats) for name, tree in trees.items()}
            summary[f"instructions_per_beat_{loop}"] = {name: round(v) for name, v in per_beat.items()}
            summary[f"instructions_ratio_{loop}"] = round(per_beat["this"] / per_beat["against"], 4)
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
