"""``make bench``: run every benchmark, write bench/out/report.{md,json} and a latency plot.

Each module ``bench/bench_<area>.py`` returns Metrics with their same-run reference. A module that
fails is reported as failed (and the run exits 1) rather than hiding the rest.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import platform
import subprocess
import sys
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.common import Metric

OUT = Path(__file__).resolve().parent / "out"
MODULES = [
    "bench_system",
    "bench_listener",
    "bench_backend",
    "bench_notifier",
    "bench_faults",
    "bench_mail",
    "bench_mass",
    "bench_cluster",
]


def _machine() -> dict[str, Any]:
    mem_kb = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    except OSError:
        pass
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass

    def version(argv: list[str]) -> str:
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=10)
            line = (done.stdout.strip() or done.stderr.strip()).splitlines()[0]
            return line[line.find("PowerDNS") :] if "PowerDNS" in line else line  # pdns prefixes a timestamp
        except (OSError, IndexError, subprocess.SubprocessError):
            return "?"

    return {
        "cores": os.cpu_count(),
        "memory_gib": round(mem_kb / 1024 / 1024, 1),
        "cpu": cpu,
        "python": platform.python_version(),
        "redis": version(["redis-server", "--version"]),
        "pdns": version(["/usr/sbin/pdns_server", "--version"]) if Path("/usr/sbin/pdns_server").exists() else "?",
    }


def _fmt(v: float | None) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    return f"{v:.3g}"


def markdown(metrics: list[Metric], failures: dict[str, str], meta: dict[str, Any]) -> str:
    m = meta["machine"]
    lines = [
        f"# hbdns benchmark report ({meta['date']})",
        "",
        f"Machine: {m['cores']} cores, {m['memory_gib']} GiB, {m['cpu']}; {m['redis']}; {m['pdns']}; "
        f"Python {m['python']}. Mode: {'quick' if meta['quick'] else 'full'}; took {meta['seconds']:.0f} s.",
        "",
        "| metric | unit | median | max | runs | same-run reference | ref. median | ratio | goal | met |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for x in metrics:
        met = "-" if x.met is None else ("yes" if x.met else "**no**")
        lines.append(
            f"| {x.name} | {x.unit} | {_fmt(x.median)} | {_fmt(x.max)} | {len(x.samples)} | "
            f"{x.reference_name or '-'} | {_fmt(x.reference_median)} | {_fmt(x.ratio)} | {x.goal or '-'} | {met} |"
        )
    notes = [f"- {x.name}: {x.notes}" for x in metrics if x.notes]
    if notes:
        lines += ["", "Notes:", *notes]
    if failures:
        lines += ["", "Failed benchmarks:", *[f"- {k}: {v}" for k, v in failures.items()]]
    return "\n".join(lines) + "\n"


def plot(metrics: list[Metric], path: Path) -> bool:
    """Latency distributions (every metric in seconds with >= 3 samples) as one PNG."""
    series = [x for x in metrics if x.unit == "s" and len(x.samples) >= 3]
    if not series:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 0.6 * len(series) + 1.8))
    ax.boxplot([list(x.samples) for x in series], vert=False, showfliers=True)
    for i, x in enumerate(series, start=1):
        ax.scatter(list(x.samples), [i] * len(x.samples), s=8, alpha=0.5)
    ax.set_yticks(range(1, len(series) + 1), [x.name for x in series], fontsize=8)
    ax.set_xlabel("seconds")
    ax.set_title("hbdns latency distributions")
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run")
    parser.add_argument("--quick", action="store_true", help="fewer runs, smaller loads (a smoke test)")
    parser.add_argument("--only", action="append", help="run only these modules (e.g. bench_listener)")
    args = parser.parse_args(argv)
    OUT.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    metrics: list[Metric] = []
    failures: dict[str, str] = {}
    for name in args.only or MODULES:
        print(f"== {name}", flush=True)
        try:
            module = importlib.import_module(f"bench.{name}")
            got = module.run(quick=args.quick)
            metrics.extend(got)
            for x in got:
                print(f"   {x.name}: median {_fmt(x.median)} {x.unit} (ref {_fmt(x.reference_median)})", flush=True)
        except Exception as exc:
            traceback.print_exc()
            failures[name] = f"{type(exc).__name__}: {exc}"
    meta = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": _machine(),
        "quick": args.quick,
        "seconds": time.monotonic() - start,
    }
    (OUT / "report.json").write_text(
        json.dumps({"meta": meta, "metrics": [x.to_dict() for x in metrics], "failures": failures}, indent=2)
    )
    report = markdown(metrics, failures, meta)
    if plot(metrics, OUT / "latency.png"):
        report += "\n![latency distributions](latency.png)\n"
    (OUT / "report.md").write_text(report)
    print(report)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
