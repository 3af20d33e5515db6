"""The real update API process (``python -m update_api.main``) on a free loopback port."""

from __future__ import annotations

import os
import sys
import urllib.request
from pathlib import Path

from tests.support.servers import Process, free_port, wait_for

REPO = Path(__file__).resolve().parents[2]


class UpdateApiServer:
    def __init__(self, workdir: Path, redis_url: str, env: dict[str, str] | None = None) -> None:
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.redis_url = redis_url
        self.port = free_port()
        self.extra_env = env or {}
        self.process: Process | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("HBDNS_")}
        env.update(
            HBDNS_REDIS_URL=self.redis_url,
            HBDNS_UPDATE_HOST="127.0.0.1",
            HBDNS_UPDATE_PORT=str(self.port),
            HBDNS_UPDATE_THREADS="4",
            HBDNS_LOG_LEVEL="INFO",
            PYTHONUNBUFFERED="1",
        )
        env.update(self.extra_env)
        return env

    def start(self, timeout: float = 30.0) -> UpdateApiServer:
        self.process = Process(
            [sys.executable, "-m", "update_api.main"],
            self.workdir / "update-api.log",
            env=self.env(),
            cwd=str(REPO),
        )
        wait_for(self._ready, timeout, what=f"update API on port {self.port}")
        return self

    def _ready(self) -> bool:
        if self.process is None or not self.process.alive():
            raise RuntimeError("update API exited:\n" + (self.process.log_text() if self.process else ""))
        with urllib.request.urlopen(self.url + "/nic/checkip", timeout=2) as resp:
            return bool(resp.status == 200)

    def log_text(self) -> str:
        return self.process.log_text() if self.process else ""

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()

    def __enter__(self) -> UpdateApiServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
