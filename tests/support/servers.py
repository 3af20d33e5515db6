"""Real server processes for tests: started on free loopback ports, awaited with a deadline, stopped after."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


def short_dir() -> Path:
    """A short directory for unix sockets (paths are limited to 107 bytes; pytest's are long)."""
    return Path(tempfile.mkdtemp(prefix="hb", dir="/tmp"))


# Spawned services keep their metrics endpoints off (their defaults are fixed loopback ports another
# run, or `make run`, may hold); a test that scrapes one sets its address to a free port.
METRICS_OFF = {
    "HBDNS_BACKEND_METRICS_ADDR": "",
    "HBDNS_UPDATE_METRICS_ADDR": "",
    "HBDNS_SWEEPER_METRICS_ADDR": "",
    "HBDNS_NOTIFIER_METRICS_ADDR": "",
    "HBDNS_ADMIN_API_METRICS_ADDR": "",
    "HBDNS_STATUS_METRICS_ADDR": "",
}


def metrics_addr(port: int) -> str:
    return f"127.0.0.1:{port}"


def free_port(kind: int = socket.SOCK_STREAM, host: str = "127.0.0.1") -> int:
    """A port free for TCP (and, for DNS, UDP too) on ``host``."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, kind) as s:
            s.bind((host, 0))
            port = s.getsockname()[1]
        # make sure both protocols can have it (pdns binds UDP and TCP on one port)
        try:
            with (
                socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t,
                socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u,
            ):
                t.bind((host, port))
                u.bind((host, port))
            return port
        except OSError:
            continue
    raise RuntimeError("no free port")


def wait_for(cond: Callable[[], T], timeout: float = 10.0, interval: float = 0.02, what: str = "condition") -> T:
    """Poll ``cond`` until it returns a truthy value; fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last_exc: BaseException | None = None
    while True:
        try:
            value = cond()
            if value:
                return value
        except Exception as exc:  # a condition may raise while a server is still starting
            last_exc = exc
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"timed out after {timeout}s waiting for {what}" + (f": {last_exc!r}" if last_exc else "")
            )
        time.sleep(interval)


def which(name: str) -> str:
    for path in (shutil.which(name), f"/usr/sbin/{name}", f"/usr/bin/{name}"):
        if path and os.path.exists(path):
            return path
    raise RuntimeError(f"{name} not installed: run 'make deps' (installs Debian's packages)")


class Process:
    """A child process with its log in a file; stop() is SIGTERM then SIGKILL."""

    def __init__(self, argv: list[str], log_path: Path, env: dict[str, str] | None = None, cwd: str | None = None):
        self.argv = argv
        self.log_path = log_path
        self._log = open(log_path, "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            argv, stdout=self._log, stderr=subprocess.STDOUT, env=env, cwd=cwd, start_new_session=True
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def signal(self, sig: int) -> None:
        if self.alive():
            os.kill(self.proc.pid, sig)

    def stop(self, timeout: float = 5.0) -> None:
        if self.alive():
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout)
        self._log.close()

    def kill(self) -> None:
        if self.alive():
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)


class RedisServer:
    """A throw-away redis-server with keyspace ``expired`` events on, no persistence unless asked."""

    def __init__(
        self,
        workdir: Path,
        port: int | None = None,
        persist: bool = False,
        extra: list[str] | None = None,
        unix_socket: bool = False,
    ):
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.persist = persist
        self.extra = extra or []
        # also a unix socket (a short path: sun_path holds 107 bytes), as a co-located backend uses
        self.socket_path = str(short_dir() / "redis.sock") if unix_socket else ""
        self.process: Process | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def unix_url(self) -> str:
        """The unix-socket URL (only with ``unix_socket=True``)."""
        if not self.socket_path:
            raise RuntimeError("started without a unix socket")
        return f"unix://{self.socket_path}?db=0"

    def start(self) -> RedisServer:
        conf = self.workdir / "redis.conf"
        lines = [
            f"include {Path(__file__).resolve().parents[2] / 'deploy' / 'redis.conf'}",
            f"port {self.port}",
            "bind 127.0.0.1",
            f"dir {self.workdir}",
            "notify-keyspace-events Ex",
            "daemonize no",
            "protected-mode yes",
            "save ''" if not self.persist else "save 1 1",
            f"appendonly {'yes' if self.persist else 'no'}",
            "appendfsync always" if self.persist else "",
            f"unixsocket {self.socket_path}" if self.socket_path else "",
            "unixsocketperm 700" if self.socket_path else "",
            *self.extra,
        ]
        conf.write_text("\n".join(lines) + "\n")
        self.process = Process([which("redis-server"), str(conf)], self.workdir / "redis.log")
        wait_for(self.ping, 10, what=f"redis-server on port {self.port}")
        return self

    def ping(self) -> bool:
        if self.process is None or not self.process.alive():
            raise RuntimeError("redis-server exited:\n" + (self.process.log_text() if self.process else ""))
        with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
            s.sendall(b"PING\r\n")
            reply = s.recv(16)
            return reply.startswith(b"+PONG") or reply.startswith(b"-NOAUTH")  # up, with a requirepass

    def stop(self) -> None:
        if self.process:
            self.process.stop()

    def kill(self) -> None:
        if self.process:
            self.process.kill()

    def restart(self) -> RedisServer:
        self.stop()
        return self.start()

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
