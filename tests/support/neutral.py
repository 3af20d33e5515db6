"""The neutral host for tests: in a thread of the test process (fast, ports picked by the kernel)
or as the real service process (``python -m neutral_host.main``) on given addresses and ports."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import threading
from pathlib import Path

from neutral_host.server import Limits, NeutralHost
from tests.support.servers import Process, wait_for

ROOT = Path(__file__).resolve().parents[2]


class NeutralHostThread:
    """A :class:`NeutralHost` on its own event loop in a daemon thread; ``host.port_of(kind)``."""

    def __init__(
        self, addresses: tuple[str, ...] = ("127.0.0.1",), name: str = "neutral.test", **limits: float
    ) -> None:
        self.host = NeutralHost(
            addresses=addresses,
            smtp_port=0,
            http_port=0,
            name=name,
            limits=Limits(**limits),  # type: ignore[arg-type]
        )
        self.loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        self.loop.run_until_complete(self.host.start())
        self._ready.set()
        self.loop.run_forever()

    def start(self) -> NeutralHostThread:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("neutral host did not start")
        return self

    def call(self, fn: object) -> object:
        """Run ``fn()`` on the host's loop (its counters are not thread-safe) and return the result."""

        async def run() -> object:
            return fn()  # type: ignore[operator]

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(10)

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.host.close(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


class NeutralHostProcess:
    """``python -m neutral_host.main`` on ``addresses`` (ports 25 and 80 unless given)."""

    def __init__(
        self, workdir: Path, addresses: tuple[str, ...], *, name: str, smtp_port: int = 25, http_port: int = 80
    ) -> None:
        self.addresses = addresses
        self.smtp_port = smtp_port
        self.http_port = http_port
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("HBDNS_")}
        self.env.update(
            HBDNS_NEUTRAL_HOST_ADDRESSES=",".join(addresses),
            HBDNS_NEUTRAL_HOST_SMTP_PORT=str(smtp_port),
            HBDNS_NEUTRAL_HOST_HTTP_PORT=str(http_port),
            HBDNS_NEUTRAL_HOST_NAME=name,
            HBDNS_NEUTRAL_HOST_TIMEOUT="5",
        )
        self.log_path = workdir / "neutral-host.log"
        self.process: Process | None = None

    def start(self) -> NeutralHostProcess:
        self.process = Process([sys.executable, "-m", "neutral_host.main"], self.log_path, env=self.env, cwd=str(ROOT))
        wait_for(self._ready, 20, what="neutral host")
        return self

    def _ready(self) -> bool:
        if self.process is None or not self.process.alive():
            raise RuntimeError("neutral host exited:\n" + (self.process.log_text() if self.process else ""))
        for addr in self.addresses:
            family = socket.AF_INET6 if ":" in addr else socket.AF_INET
            with socket.socket(family, socket.SOCK_STREAM) as s:
                s.settimeout(2)
                s.connect((addr, self.smtp_port))
                if not s.recv(64).startswith(b"421 "):
                    return False
        return True

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
