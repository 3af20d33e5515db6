"""The admin API for tests: the real Flask app (answers checked against their documented models)
on the test's real Redis, tokens of each scope, a Redis snapshot that ignores rate-limit buckets
(every request takes one; nothing else may change when a request is refused), and the real
``hbdns-admin-api`` process."""

from __future__ import annotations

import json
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import redis
from flask.testing import FlaskClient

from admin.api.app import create_app
from admin.api.service import AdminApi
from hbdns.config import Settings
from hbdns.purge import Purger
from hbdns.tokens import Scope, Tokens
from tests.support.servers import METRICS_OFF, Process, free_port, wait_for
from tests.support.update_api import REPO, redis_snapshot

ZONE, OTHER = "dyn.example.net", "dyn.other.org"


def snapshot(r: redis.Redis) -> dict[str, Any]:
    """Everything in Redis but the ``hbdns:rl:*`` rate-limit buckets."""
    return {k: v for k, v in redis_snapshot(r).items() if not k.startswith("hbdns:rl:")}


class ApiClient:
    """Requests with a token; ``call`` returns (status, JSON body or None, headers)."""

    def __init__(self, r: redis.Redis, settings: Settings, purger: Purger | None = None) -> None:
        self.r = r
        self.service = AdminApi.build(settings, r, purger)
        self.app = create_app(self.service, validate_responses=True)
        self.client: FlaskClient = self.app.test_client()
        self.tokens = Tokens(r)

    def token(self, scope: Scope, **kw: Any) -> str:
        return self.tokens.add(scope, **kw)[1]

    def call(
        self, method: str, path: str, token: str | None, json: Any = None, headers: dict[str, str] | None = None
    ) -> tuple[int, Any, dict[str, str]]:
        h = dict(headers or {})
        if token:
            h["Authorization"] = f"Bearer {token}"
        resp = self.client.open(path, method=method, json=json, headers=h)
        body = resp.get_json(silent=True) if resp.data else None
        return resp.status_code, body, dict(resp.headers)


def is_problem(status: int, body: Any, headers: dict[str, str], expected: int) -> bool:
    return (
        status == expected
        and headers["Content-Type"] == "application/problem+json"
        and body["status"] == expected
        and body["type"] == "about:blank"
        and bool(body["title"])
    )


class AdminApiProcess:
    """The real ``python -m admin.api.main`` (waitress) on a free loopback port."""

    def __init__(self, workdir: Path, redis_url: str, env: dict[str, str] | None = None) -> None:
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("HBDNS_")}
        self.env.update(
            HBDNS_REDIS_URL=redis_url,
            HBDNS_ADMIN_API_HOST="127.0.0.1",
            HBDNS_ADMIN_API_PORT=str(self.port),
            HBDNS_LOG_LEVEL="INFO",
            PYTHONUNBUFFERED="1",
        )
        self.env.update(METRICS_OFF)
        self.env.update(env or {})
        self.process: Process | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/v1"

    def start(self) -> AdminApiProcess:
        self.process = Process(
            [sys.executable, "-m", "admin.api.main"], self.workdir / "admin-api.log", env=self.env, cwd=str(REPO)
        )
        wait_for(self._ready, 30, what=f"admin API on port {self.port}")
        return self

    def _ready(self) -> bool:
        if self.process is None or not self.process.alive():
            raise RuntimeError("admin API exited:\n" + (self.process.log_text() if self.process else ""))
        return self.request("GET", "/openapi.json")[0] == 200

    def request(self, method: str, path: str, token: str = "", body: Any = None) -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json"} if data is not None else {}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        req = urllib.request.Request(self.url + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                raw = resp.read()
                return resp.status, json.loads(raw) if raw else None
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            return exc.code, json.loads(raw) if raw else None

    def log_text(self) -> str:
        return self.process.log_text() if self.process else ""

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
