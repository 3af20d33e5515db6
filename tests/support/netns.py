"""Private network + mount + pid namespaces for the mail scenarios.

A test (or ``make bench``) calls :func:`run` to re-execute a scenario module inside
``unshare --net --mount --pid --fork --kill-child --mount-proc``. In there only ``lo`` exists, so
nothing the scenario starts can reach beyond loopback; :func:`enter` brings ``lo`` up, adds the
scenario's 127.0.0.x and ULA (fd00::/8) addresses, and bind-mounts a resolv.conf of its own over
/etc/resolv.conf in the private mount namespace (the machine's file is never touched). The
scenario process is pid 1 of its namespace: when it ends, however it ends (exit, crash, SIGKILL
of ``unshare`` on a timeout), the kernel kills every process left in there, Postfix daemons
included, so cleanup cannot be skipped.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
UNSHARE = ["--net", "--mount", "--pid", "--fork", "--kill-child", "--mount-proc", "--propagation", "private"]


@functools.cache
def unavailable() -> str | None:
    """Why a namespace cannot be made here (None when it can): the reason a test skips with."""
    binary = shutil.which("unshare")
    if binary is None:
        return "unshare (util-linux) is not installed"
    if os.geteuid() != 0:
        return "network namespaces and Postfix instances need root"
    try:
        done = subprocess.run([binary, *UNSHARE, "true"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unshare failed: {exc}"
    if done.returncode != 0:
        return f"cannot create namespaces: {done.stderr.strip()[:200]}"
    for tool in ("ip", "mount"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    return None


@dataclass(frozen=True)
class Run:
    returncode: int
    stdout: str
    stderr: str
    result: dict[str, Any]

    def explain(self) -> str:
        return f"scenario exit {self.returncode}\n--- stderr (tail) ---\n{self.stderr[-8000:]}"


def run(module: str, args: list[str], *, workdir: Path, timeout: float) -> Run:
    """Run ``python -m module --result FILE ARGS`` as pid 1 of fresh namespaces; its JSON result."""
    reason = unavailable()
    if reason:
        raise RuntimeError(reason)
    workdir.mkdir(parents=True, exist_ok=True)
    result_path = workdir / "result.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("HBDNS_")}
    env["PYTHONUNBUFFERED"] = "1"
    argv = [shutil.which("unshare") or "unshare", *UNSHARE, sys.executable, "-m", module]
    argv += ["--result", str(result_path), "--workdir", str(workdir), *args]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, cwd=str(ROOT), env=env)
        rc, out, err = done.returncode, done.stdout, done.stderr
    except subprocess.TimeoutExpired as exc:  # unshare got SIGKILL; --kill-child takes the namespace down
        rc = -9
        out = _text(exc.stdout)
        err = _text(exc.stderr) + f"\n[timed out after {timeout:g} s]"
    result = json.loads(result_path.read_text()) if result_path.exists() else {}
    return Run(rc, out, err, result)


def _text(data: bytes | str | None) -> str:
    if data is None:
        return ""
    return data.decode("utf-8", "replace") if isinstance(data, bytes) else data


def inside() -> bool:
    """True in a network namespace whose only interface is ``lo`` (never the machine's)."""
    return [name for _, name in socket.if_nameindex()] == ["lo"]


def enter(addresses: list[str], nameserver: str, workdir: Path) -> None:
    """Set up the namespace this process is in: addresses on ``lo``, our own resolv.conf."""
    if not inside():
        raise RuntimeError("refusing to change the network or /etc/resolv.conf outside a private namespace")
    _sh("ip", "link", "set", "lo", "up")
    for addr in addresses:
        if ":" in addr:
            _sh("ip", "-6", "addr", "add", f"{addr}/128", "dev", "lo", "nodad")
        elif addr != "127.0.0.1":
            _sh("ip", "addr", "add", f"{addr}/32", "dev", "lo")
    resolv = workdir / "resolv.conf"
    resolv.write_text(f"nameserver {nameserver}\noptions timeout:1 attempts:2\n")
    _sh("mount", "--bind", str(resolv), "/etc/resolv.conf")


def _sh(*argv: str) -> None:
    done = subprocess.run(list(argv), capture_output=True, text=True, timeout=20)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {done.stderr.strip()}")
