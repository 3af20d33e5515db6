"""Postfix instances of the tests' own: a config dir, queue and data dirs under a root of their own,
``maillog_file`` instead of syslog, every service with chroot ``n`` (so smtp(8) reads the
namespace's /etc/resolv.conf), started and stopped with ``postfix -c DIR``.

Never /etc/postfix, never the system instance: Debian's ``master.cf.proto`` is only read. A running
instance looks up DNS and the reverse names of its clients, so it belongs inside a private
namespace (:mod:`tests.support.netns`); :func:`check_config` needs no daemon and runs anywhere.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from tests.support.servers import wait_for, which

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy" / "postfix"
MASTER_PROTO = Path("/etc/postfix/master.cf.proto")
_SERVICE = re.compile(r"^(\S+\s+(?:inet|unix|unix-dgram|fifo|pass)\s+\S+\s+\S+\s+)(\S+)(\s.*)$")


def mail_root(prefix: str = "hbmail-") -> Path:
    """A directory Postfix's unprivileged daemons can traverse (pytest's tmp dirs are 0700)."""
    root = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    root.chmod(0o755)
    return root


def parse_main(text: str) -> dict[str, str]:
    """``name = value`` settings of a main.cf (continuation lines joined, comments skipped)."""
    out: dict[str, str] = {}
    name = ""
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if line[0].isspace() and name:
            out[name] += " " + line.strip()
            continue
        name, _, value = line.partition("=")
        name = name.strip()
        out[name] = value.strip()
    return out


def render_main(text: str, overrides: Mapping[str, str]) -> str:
    """``text`` with the values of ``overrides`` replaced in place (or appended when absent)."""
    lines = text.splitlines()
    out: list[str] = []
    seen: set[str] = set()
    skipping = False
    for line in lines:
        if skipping and line[:1].isspace() and line.strip() and not line.lstrip().startswith("#"):
            continue
        skipping = False
        name = line.partition("=")[0].strip() if "=" in line and not line[:1].isspace() else ""
        if name in overrides and not line.lstrip().startswith("#"):
            out.append(f"{name} = {overrides[name]}")
            seen.add(name)
            skipping = True
            continue
        out.append(line)
    out += [f"{k} = {v}" for k, v in overrides.items() if k not in seen]
    return "\n".join(out) + "\n"


def master_cf(extra: str = "") -> str:
    """Debian's master.cf with chroot ``n`` for every service, plus ``extra`` lines."""
    out = []
    for line in MASTER_PROTO.read_text().splitlines():
        m = _SERVICE.match(line)
        out.append(f"{m.group(1)}n{m.group(3)}" if m and not line.startswith("#") else line)
    return "\n".join(out) + "\n" + extra


class Postfix:
    """One instance under ``root/name``. ``main`` overrides the base main.cf (deploy's by default)."""

    def __init__(self, root: Path, name: str, main: Mapping[str, str], base: str = "") -> None:
        self.dir = root / name
        self.config_dir = self.dir / "etc"
        self.queue_dir = self.dir / "spool"
        self.data_dir = self.dir / "data"
        self.maillog = self.dir / "maillog"
        self.name = name
        self.base = base
        paths = {
            "queue_directory": str(self.queue_dir),
            "data_directory": str(self.data_dir),
            "maillog_file": str(self.maillog),
            "maillog_file_prefixes": str(self.dir),
        }
        self.main = {**paths, **main}

    # --- config -----------------------------------------------------------------------------------

    def write(self) -> Postfix:
        for d in (self.config_dir, self.queue_dir, self.data_dir):
            d.mkdir(parents=True, exist_ok=True)
        self.dir.chmod(0o755)
        self.config_dir.chmod(0o755)
        shutil.chown(self.data_dir, user="postfix")
        (self.config_dir / "main.cf").write_text(render_main(self.base, self.main))
        (self.config_dir / "master.cf").write_text(master_cf())
        return self

    def file(self, name: str, text: str) -> str:
        """Write a table or other file into the config dir; returns its path."""
        path = self.config_dir / name
        path.write_text(text)
        return str(path)

    def postconf(self, *args: str) -> str:
        return self._run(which("postconf"), "-c", str(self.config_dir), *args).stdout

    def set(self, **params: str) -> None:
        """Change main.cf settings and reload a running instance."""
        self.main.update(params)
        (self.config_dir / "main.cf").write_text(render_main(self.base, self.main))
        if self.running():
            mark = self.log_size()
            self._run(which("postfix"), "-c", str(self.config_dir), "reload")
            wait_for(lambda: "reload -- version" in self.log_since(mark), 20, what=f"{self.name} reload")

    # --- daemon -----------------------------------------------------------------------------------

    def start(self, listen: tuple[str, int] | None = None, resolv_conf: Path | None = None) -> Postfix:
        """``postfix start``; with ``resolv_conf``, in a mount namespace of its own where that file is
        /etc/resolv.conf (the instance's daemons, children of its master, resolve through it)."""
        argv = [which("postfix"), "-c", str(self.config_dir), "start"]
        if resolv_conf is not None:
            script = f'mount --bind {resolv_conf} /etc/resolv.conf && exec "$0" "$@"'
            argv = ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, *argv]
        self._run(*argv)
        wait_for(self.running, 20, what=f"postfix {self.name} master")
        if listen is not None:
            wait_for(lambda: _greets(*listen), 20, what=f"postfix {self.name} smtpd on {listen}")
        return self

    def master_pid(self) -> int:
        try:
            return int((self.queue_dir / "pid" / "master.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return 0

    def running(self) -> bool:
        pid = self.master_pid()
        if not pid:
            return False
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            return False
        return state != "Z"

    def stop(self) -> None:
        """``postfix stop``; if the master is still there after 10 s, SIGKILL its process group."""
        if not self.running():
            return
        subprocess.run([which("postfix"), "-c", str(self.config_dir), "stop"], capture_output=True, timeout=30)
        try:
            wait_for(lambda: not self.running(), 10, what=f"postfix {self.name} stop")
        except TimeoutError:
            pid = self.master_pid()
            if pid:
                os.kill(pid, 9)

    # --- queue and log ----------------------------------------------------------------------------

    def queue(self) -> list[dict[str, object]]:
        """The queue as ``postqueue -j`` lists it (one dict per message)."""
        out = self._run(which("postqueue"), "-c", str(self.config_dir), "-j").stdout
        return [json.loads(line) for line in out.splitlines() if line.strip()]

    def postmap_query(self, key: str, table: str) -> subprocess.CompletedProcess[str]:
        """``postmap -q KEY TABLE`` with this config (exit 0 found, 1 not found, else an error)."""
        return subprocess.run(
            [which("postmap"), "-c", str(self.config_dir), "-q", key, table], capture_output=True, text=True, timeout=30
        )

    def flush_site(self, domain: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [which("postqueue"), "-c", str(self.config_dir), "-s", domain], capture_output=True, text=True, timeout=30
        )

    def log_size(self) -> int:
        try:
            return self.maillog.stat().st_size
        except OSError:
            return 0

    def log_since(self, offset: int = 0) -> str:
        try:
            with open(self.maillog, "rb") as f:
                f.seek(offset)
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def wait_log(self, pattern: str, timeout: float, offset: int = 0, count: int = 1) -> list[re.Match[str]]:
        rx = re.compile(pattern)

        def found() -> list[re.Match[str]]:
            hits = list(rx.finditer(self.log_since(offset)))
            return hits if len(hits) >= count else []

        return wait_for(found, timeout, interval=0.05, what=f"{self.name} log /{pattern}/ x{count}")

    def _run(self, *argv: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(list(argv), capture_output=True, text=True, timeout=60)
        if done.returncode != 0:
            raise RuntimeError(
                f"{' '.join(argv)} -> {done.returncode}: {done.stderr.strip()}\n{self.log_since()[-3000:]}"
            )
        return done


def _greets(host: str, port: int) -> bool:
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.settimeout(2)
        s.connect((host, port))
        return s.recv(512).startswith(b"220 ")


def check_config(root: Path, base: str, overrides: Mapping[str, str]) -> tuple[int, str]:
    """``postfix check`` plus ``postconf -n`` warnings for a config (no daemon is started):
    (exit status of check, every warning and fatal line)."""
    pf = Postfix(root, "check", overrides, base=base).write()
    check = subprocess.run(
        [which("postfix"), "-c", str(pf.config_dir), "check"], capture_output=True, text=True, timeout=60
    )
    conf = subprocess.run(
        [which("postconf"), "-c", str(pf.config_dir), "-n"], capture_output=True, text=True, timeout=60
    )
    problems = [
        line
        for line in (check.stdout + check.stderr + conf.stderr + pf.log_since()).splitlines()
        if "warning" in line or "fatal" in line or "error" in line
    ]
    return check.returncode, "\n".join(problems)


def wait_queue(pf: Postfix, count: int, timeout: float, deferred: bool = False) -> list[dict[str, object]]:
    """Wait until the queue holds exactly ``count`` messages (with ``deferred``: all of them in the
    deferred queue, i.e. past their delivery attempt and in the fast-flush log of their domain; a
    message still in its attempt when an ETRN arrives is not flushed by it)."""
    last: list[dict[str, object]] = []

    def done() -> bool:
        nonlocal last
        last = pf.queue()
        return len(last) == count and (not deferred or all(m.get("queue_name") == "deferred" for m in last))

    wait_for(done, timeout, interval=0.05, what=f"{pf.name} queue of {count}{' deferred' if deferred else ''}")
    return last


@dataclass(frozen=True)
class Delivery:
    """One delivery attempt of one recipient, from a maillog line of smtp(8)/error(8)."""

    queue_id: str
    rcpt: str
    relay: str
    delay: float
    status: str  # sent, deferred, bounced
    reason: str


_MSGID = re.compile(r"\b([0-9A-F]{6,}): message-id=(<[^>]*>)")
_ATTEMPT = re.compile(
    r"\b([0-9A-F]{6,}): to=<([^>]*)>,(?: orig_to=<[^>]*>,)? relay=([^,]+), .*?delay=([0-9.]+), .*?"
    r"status=(\w+) \((.*)\)$",
    re.M,
)


def deliveries(log: str) -> dict[str, list[Delivery]]:
    """Delivery attempts per Message-ID, in log order."""
    ids = {qid: mid for qid, mid in _MSGID.findall(log)}
    out: dict[str, list[Delivery]] = {}
    for qid, rcpt, relay, delay, status, reason in _ATTEMPT.findall(log):
        out.setdefault(ids.get(qid, qid), []).append(Delivery(qid, rcpt, relay, float(delay), status, reason))
    return out
