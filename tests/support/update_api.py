"""The real update API process (``python -m update_api.main``) on a free loopback port, a dyndns2
request from a chosen loopback source address, and a snapshot of everything in Redis.

Addresses in these tests: 203.0.114.0/24, 198.51.101.0/24 and 2001:db9::/32 sit right next to the
documentation ranges but are public unicast, which the update API requires; they are only ever
stored and answered by the test's own pdns, never contacted.
"""

from __future__ import annotations

import base64
import http.client
import os
import sys
import urllib.parse
from pathlib import Path
from typing import Any

import redis

from tests.support.servers import METRICS_OFF, Process, free_port, wait_for

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
        env.update(METRICS_OFF)
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
        # any answer will do: checkip refuses a loopback client (503), which is what we are
        return update(self, path="/nic/checkip", timeout=2)[0] in (200, 503)

    def update(self, *args: Any, **kwargs: Any) -> tuple[int, str]:
        return update(self, *args, **kwargs)

    def log_text(self) -> str:
        return self.process.log_text() if self.process else ""

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()

    def __enter__(self) -> UpdateApiServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def update(
    api: UpdateApiServer,
    params: dict[str, str] | None = None,
    auth: tuple[str, str] | None = None,
    *,
    source: str = "127.0.0.1",
    path: str = "/nic/update",
    timeout: float = 10,
) -> tuple[int, str]:
    """One GET from the loopback address ``source`` (any of 127/8 works on Linux): (status, body)."""
    conn = http.client.HTTPConnection("127.0.0.1", api.port, timeout=timeout, source_address=(source, 0))
    headers = {"User-Agent": "hbdns-tests/1.0"}
    if auth:
        headers["Authorization"] = "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
    try:
        conn.request("GET", path + ("?" + urllib.parse.urlencode(params) if params else ""), headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.read().decode()
    finally:
        conn.close()


def redis_snapshot(r: redis.Redis) -> dict[str, Any]:
    """Every key with its type, value and whether it expires: equal snapshots = nothing written."""
    c: Any = r
    out: dict[str, Any] = {}
    for key in sorted(c.keys("*")):
        kind = c.type(key)
        if kind == "string":
            value: Any = c.get(key)
        elif kind == "hash":
            value = c.hgetall(key)
        elif kind == "set":
            value = sorted(c.smembers(key))
        elif kind == "zset":
            value = c.zrange(key, 0, -1, withscores=True)
        elif kind == "list":
            value = c.lrange(key, 0, -1)
        elif kind == "stream":
            value = c.xrange(key)
        else:
            value = kind
        out[key] = (kind, value, c.pttl(key) > 0)
    return out
