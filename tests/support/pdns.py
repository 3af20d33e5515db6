"""Real PowerDNS + real backend processes for tests and benchmarks.

- :class:`BackendProcess` runs ``python -m pdns_backend.main`` with ``HBDNS_*`` env on a free port
  (and a unix socket when asked); :attr:`BackendProcess.connection_string` is the matching pdns
  ``remote-connection-string``.
- :class:`PdnsServer` runs ``pdns_server`` from its own config dir (never ``/etc/powerdns``, so no
  Debian ``bind.conf``) on a free loopback port, with the cache settings of ``deploy/pdns.conf`` and
  the HTTP API on another free port with a random key. :attr:`PdnsServer.writer_env` is what a
  writer (listener, update API) needs to purge this instance.

pdns only serves zones its zone cache got from ``getAllDomains`` at start-up (or at the next
refresh): start it after the test created its zones.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import dns.message
import dns.query
import dns.rdatatype

from tests.support.servers import METRICS_OFF, Process, free_port, short_dir, wait_for, which

REPO = Path(__file__).resolve().parents[2]
DEPLOY_CONF = REPO / "deploy" / "pdns.conf"

# Settings taken from deploy/pdns.conf so that tests run with the production cache behaviour.
_FROM_DEPLOY = (
    "cache-ttl",
    "query-cache-ttl",
    "negquery-cache-ttl",
    "zone-cache-refresh-interval",
    "consistent-backends",
    "distributor-threads",
    "receiver-threads",
    "queue-limit",
    "max-tcp-connections",
)


def deploy_settings(path: Path = DEPLOY_CONF) -> dict[str, str]:
    """``key=value`` lines of a pdns config file (comments and blanks skipped)."""
    out: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        out[key.strip()] = value.strip()
    return out


class BackendProcess:
    """The real backend (``python -m pdns_backend.main``) for one pdns instance."""

    def __init__(
        self,
        workdir: Path,
        redis_url: str,
        *,
        transport: str = "http",
        port: int | None = None,
        threads: int = 8,
        timeout_ms: int = 2000,
        env: dict[str, str] | None = None,
        module: str = "pdns_backend.main",
    ) -> None:
        if transport not in ("http", "unix"):
            raise ValueError("transport must be 'http' or 'unix'")
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.redis_url = redis_url
        self.transport = transport
        self.port = port or free_port()
        self.threads = threads
        self.timeout_ms = timeout_ms
        self._sock_dir = short_dir() if transport == "unix" else None
        self.socket_path = str(self._sock_dir / "backend.sock") if self._sock_dir else ""
        self.extra_env = env or {}
        self.module = module  # the benchmark's ceiling run swaps in bench.stub_backend
        self.process: Process | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def connection_string(self) -> str:
        """pdns ``remote-connection-string`` for this backend and transport."""
        if self.transport == "unix":
            return f"unix:path={self.socket_path},timeout={self.timeout_ms}"
        return f"http:url={self.url}/dnsapi,timeout={self.timeout_ms}"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("HBDNS_")}
        env.update(
            HBDNS_REDIS_URL=self.redis_url,
            HBDNS_BACKEND_HOST="127.0.0.1",
            HBDNS_BACKEND_PORT=str(self.port),
            HBDNS_BACKEND_THREADS=str(self.threads),
            HBDNS_BACKEND_SOCKET=self.socket_path,
            HBDNS_LOG_LEVEL="INFO",
            PYTHONUNBUFFERED="1",
        )
        env.update(METRICS_OFF)
        env.update(self.extra_env)
        return env

    def start(self, timeout: float = 30.0) -> BackendProcess:
        self.process = Process(
            [sys.executable, "-m", self.module], self.workdir / "backend.log", env=self.env(), cwd=str(REPO)
        )
        wait_for(self._ready, timeout, what=f"backend on port {self.port}")
        return self

    def _ready(self) -> bool:
        if self.process is None or not self.process.alive():
            raise RuntimeError("backend exited:\n" + (self.process.log_text() if self.process else ""))
        with urllib.request.urlopen(self.url + "/ping", timeout=2) as resp:
            ok = bool(resp.status == 200)
        return ok and (not self.socket_path or os.path.exists(self.socket_path))

    def log_text(self) -> str:
        return self.process.log_text() if self.process else ""

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
        if self._sock_dir is not None:
            shutil.rmtree(self._sock_dir, ignore_errors=True)


class PdnsServer:
    """A ``pdns_server`` with ``launch=remote`` against ``backend`` (a full remote-connection-string)."""

    def __init__(
        self,
        workdir: Path,
        backend: str,
        *,
        port: int | None = None,
        api: bool = True,
        extra: dict[str, Any] | None = None,
    ) -> None:
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.backend = backend
        self.port = port or free_port()
        self.api = api
        self.api_port = free_port() if api else 0
        self.api_key = secrets.token_hex(16) if api else ""
        self.extra = dict(extra or {})
        self.process: Process | None = None
        self.backend_process: BackendProcess | None = None  # set by the pdns_factory fixture

    @property
    def config_dir(self) -> Path:
        return self.workdir / "conf"

    @property
    def api_url(self) -> str:
        """Base URL of the pdns HTTP API, as ``HBDNS_PDNS_API_URLS`` wants it (no ``/api/v1``)."""
        return f"http://127.0.0.1:{self.api_port}" if self.api else ""

    @property
    def writer_env(self) -> dict[str, str]:
        """``HBDNS_*`` settings that make a writer purge this pdns after a change."""
        return {"HBDNS_PDNS_API_URLS": self.api_url, "HBDNS_PDNS_API_KEY": self.api_key}

    def settings(self) -> dict[str, str]:
        conf = {k: v for k, v in deploy_settings().items() if k in _FROM_DEPLOY}
        conf.update(
            {
                "launch": "remote",
                "remote-connection-string": self.backend,
                "local-address": "127.0.0.1",
                "local-port": str(self.port),
                "socket-dir": str(self.workdir),
                "daemon": "no",
                "guardian": "no",
                "disable-syslog": "yes",
                "log-timestamp": "no",
                "security-poll-suffix": "",
                "loglevel": "4",
            }
        )
        if self.api:
            conf.update(
                {
                    "api": "yes",
                    "api-key": self.api_key,
                    "webserver": "yes",
                    "webserver-address": "127.0.0.1",
                    "webserver-port": str(self.api_port),
                    "webserver-allow-from": "127.0.0.0/8",
                }
            )
        conf.update({k: str(v) for k, v in self.extra.items()})
        if conf["launch"] != "remote":  # e.g. extra={"launch": "bind", ...} for a benchmark reference
            conf.pop("remote-connection-string", None)
        return conf

    def write_config(self) -> Path:
        self.config_dir.mkdir(parents=True, exist_ok=True)
        path = self.config_dir / "pdns.conf"
        path.write_text("".join(f"{k}={v}\n" for k, v in self.settings().items()))
        return path

    def start(self, timeout: float = 30.0) -> PdnsServer:
        self.write_config()
        self.process = Process([which("pdns_server"), f"--config-dir={self.config_dir}"], self.workdir / "pdns.log")
        wait_for(self._ready, timeout, what=f"pdns_server on port {self.port}")
        return self

    def _ready(self) -> bool:
        if self.process is None or not self.process.alive():
            raise RuntimeError("pdns_server exited:\n" + (self.process.log_text() if self.process else ""))
        self.query("version.bind.", "TXT", rdclass="CH", timeout=1.0)
        if self.api:
            self.api_get("/api/v1/servers/localhost")
        return True

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()

    def log_text(self) -> str:
        return self.process.log_text() if self.process else ""

    def query(
        self, qname: str, rdtype: str, tcp: bool = False, *, rdclass: str = "IN", timeout: float = 3.0
    ) -> dns.message.Message:
        """One query over UDP (or TCP) to this pdns; raises dns.exception.Timeout when it does not answer."""
        msg = dns.message.make_query(qname, rdtype, rdclass)
        if tcp:
            return dns.query.tcp(msg, "127.0.0.1", port=self.port, timeout=timeout)
        return dns.query.udp(msg, "127.0.0.1", port=self.port, timeout=timeout)

    def api_request(self, method: str, path: str) -> Any:
        if not self.api:
            raise RuntimeError("this pdns runs without its API")
        req = urllib.request.Request(self.api_url + path, method=method, headers={"X-API-Key": self.api_key})
        with urllib.request.urlopen(req, timeout=5) as resp:
            body = resp.read()
        return json.loads(body) if body else None

    def api_get(self, path: str) -> Any:
        return self.api_request("GET", path)

    def purge(self, name: str) -> int:
        """Flush ``name`` from pdns' caches through the API; returns how many entries went."""
        fqdn = name.rstrip(".") + "."
        res = self.api_request("PUT", f"/api/v1/servers/localhost/cache/flush?domain={fqdn}")
        return int(res.get("count", 0)) if isinstance(res, dict) else 0

    def statistic(self, name: str) -> int:
        """One pdns counter (e.g. ``backend-queries``) from the API."""
        for item in self.api_get("/api/v1/servers/localhost/statistics"):
            if item.get("name") == name:
                return int(item["value"])
        raise KeyError(name)

    def control(self, *args: str, timeout: float = 30.0) -> tuple[int, str]:
        """Run ``pdns_control --config-dir=<ours> ARGS`` (e.g. ``rediscover`` after adding a zone)."""
        import subprocess

        proc = subprocess.run(
            [which("pdns_control"), f"--config-dir={self.config_dir}", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        return proc.returncode, proc.stdout + proc.stderr

    def pdnsutil(self, *args: str, timeout: float = 60.0) -> tuple[int, str]:
        """Run ``pdnsutil --config-dir=<ours> ARGS``: (exit code, stdout + stderr)."""
        import subprocess

        proc = subprocess.run(
            [which("pdnsutil"), f"--config-dir={self.config_dir}", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        return proc.returncode, proc.stdout + proc.stderr

    def wait_answer(self, qname: str, rdtype: str, expect: set[str], timeout: float = 15.0, tcp: bool = False) -> None:
        """Wait until the answer's rdata texts for (qname, rdtype) are exactly ``expect``."""
        last: set[str] = set()

        def check() -> bool:
            nonlocal last
            last = answer_texts(self.query(qname, rdtype, tcp=tcp), qname, rdtype)
            return last == expect

        try:
            wait_for(check, timeout, interval=0.1, what=f"{qname} {rdtype} == {sorted(expect)}")
        except TimeoutError as exc:
            raise TimeoutError(f"{exc}; last answer {sorted(last)}") from None


def answer_texts(msg: dns.message.Message, qname: str, rdtype: str) -> set[str]:
    """Rdata texts of the answer RRset (qname, rdtype), empty if none."""
    out: set[str] = set()
    want = dns.rdatatype.from_text(rdtype)
    for rrset in msg.answer:
        if rrset.rdtype == want and rrset.name.to_text().lower() == qname.lower().rstrip(".") + ".":
            out.update(r.to_text() for r in rrset)
    return out


def started_pdns(
    workdir: Path,
    redis_url: str,
    transport: str = "http",
    *,
    extra: dict[str, Any] | None = None,
    backend_env: dict[str, str] | None = None,
) -> PdnsServer:
    """Backend first, then pdns (pdns exits if its backend is unreachable at start-up)."""
    backend = BackendProcess(workdir / f"backend-{transport}", redis_url, transport=transport, env=backend_env)
    backend.start()
    pdns = PdnsServer(workdir / f"pdns-{transport}", backend.connection_string, extra=extra)
    pdns.backend_process = backend
    try:
        pdns.start()
    except BaseException:
        pdns.stop()
        backend.stop()
        raise
    return pdns


def stop_all(pdns: PdnsServer) -> None:
    pdns.stop()
    if pdns.backend_process is not None:
        pdns.backend_process.stop()
