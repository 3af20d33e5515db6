"""The whole stack as ``make run`` starts it (``python -m tools.devstack``: honcho running redis-server,
backend, listener, update API, sweeper, notifier and pdns_server), in a temp dir on free loopback
ports, plus an SMTP sink (aiosmtpd). Used by the acceptance test and the system benchmark."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import dns.message
import dns.query
import dns.rdatatype

from hbdns.metrics import parse_metrics
from tests.support.servers import Process, free_port, wait_for
from tests.support.sinks import Mail, SmtpSink

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


# the stack's services with a metrics address setting (the listener has HBDNS_METRICS_PORT)
METRICS_SETTINGS = {
    "backend": "HBDNS_BACKEND_METRICS_ADDR",
    "updates": "HBDNS_UPDATE_METRICS_ADDR",
    "sweeper": "HBDNS_SWEEPER_METRICS_ADDR",
    "notifier": "HBDNS_NOTIFIER_METRICS_ADDR",
    "adminapi": "HBDNS_ADMIN_API_METRICS_ADDR",
    "status": "HBDNS_STATUS_METRICS_ADDR",
}


class Stack:
    """The dev stack on free ports. ``env`` is what CLI calls and clients need."""

    def __init__(self, workdir: Path, extra_env: dict[str, str] | None = None) -> None:
        self.workdir = workdir
        self.smtp = SmtpSink()
        self.dns_port = free_port()
        self.redis_port = free_port()
        self.api_port = free_port()
        self.backend_port = free_port()
        self.heartbeat_port = free_port()
        self.update_port = free_port()
        self.metrics_port = free_port()
        # every service's /metrics on a port of its own (the acceptance test scrapes them)
        self.metrics_ports = {name: free_port() for name in METRICS_SETTINGS}
        self.admin_api_port = free_port()
        self.status_port = free_port()
        self.extra_env = extra_env or {}
        self.process: Process | None = None

    @property
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("HBDNS_")}
        env.update(
            {
                "HBDNS_REDIS_URL": f"redis://127.0.0.1:{self.redis_port}/0",
                "HBDNS_BACKEND_PORT": str(self.backend_port),
                "HBDNS_HEARTBEAT_PORT": str(self.heartbeat_port),
                "HBDNS_HEARTBEAT_HOST": "127.0.0.1",
                "HBDNS_UPDATE_PORT": str(self.update_port),
                "HBDNS_METRICS_PORT": str(self.metrics_port),
                **{setting: f"127.0.0.1:{self.metrics_ports[name]}" for name, setting in METRICS_SETTINGS.items()},
                "HBDNS_ADMIN_API_PORT": str(self.admin_api_port),
                "HBDNS_STATUS_PORT": str(self.status_port),
                "HBDNS_SMTP_HOST": "127.0.0.1",
                "HBDNS_SMTP_PORT": str(self.smtp.port),
                "HBDNS_SMTP_FROM": "hbdns@provider.test",
                "PATH": f"{BIN}:/usr/sbin:/sbin:{os.environ.get('PATH', '/usr/bin:/bin')}",
                "STATE_DIRECTORY": str(self.workdir / "client-state"),  # hbdns-client's counter, not /var/lib
                **self.extra_env,
            }
        )
        return env

    def start(self, zone_cmd: list[str]) -> Stack:
        """Start everything; ``zone_cmd`` (hbdns CLI args) creates the zone before pdns starts."""
        self.smtp.start()
        argv = [
            sys.executable, "-m", "tools.devstack", "run", "--no-demo",
            "--var-dir", str(self.workdir / "var"),
            "--dns-port", str(self.dns_port), "--redis-port", str(self.redis_port),
            "--api-port", str(self.api_port), "--backend-port", str(self.backend_port),
        ]  # fmt: skip
        self.process = Process(argv, self.workdir / "stack.log", env=self.env, cwd=str(ROOT))
        wait_for(lambda: self.cli("zone", "list").returncode == 0, 30, what="redis in the stack")
        result = self.cli(*zone_cmd)
        assert result.returncode == 0, result.stderr
        apex = zone_cmd[2]
        wait_for(lambda: self.query(apex, "SOA").rcode() == 0, 60, what="pdns answering the zone")
        for service in ("listener", *METRICS_SETTINGS):  # every service up (each serves /metrics first)
            wait_for(lambda s=service: self.metrics(s), 60, what=f"{service} metrics")
        return self

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop(timeout=20)
        self.smtp.stop()

    def mails(self, *words: str) -> list[Mail]:
        """Mails received so far whose subject or text contains every one of ``words``."""
        with self.smtp.lock:
            mails = list(self.smtp.mails)
        return [m for m in mails if all(w.lower() in f"{m.subject}\n{m.text}".lower() for w in words)]

    def metrics(self, service: str) -> dict[str, float]:
        """One service's /metrics (``listener`` or a name of METRICS_SETTINGS), parsed."""
        port = self.metrics_port if service == "listener" else self.metrics_ports[service]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            return parse_metrics(resp.read().decode())

    def log(self) -> str:
        return self.process.log_text() if self.process else ""

    def cli(self, *argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(BIN / "hbdns"), *argv], env=self.env, capture_output=True, text=True, timeout=30, check=False
        )

    def query(self, name: str, rdtype: str, tcp: bool = False) -> dns.message.Message:
        q = dns.message.make_query(name, rdtype)
        if tcp:
            return dns.query.tcp(q, "127.0.0.1", port=self.dns_port, timeout=2)
        return dns.query.udp(q, "127.0.0.1", port=self.dns_port, timeout=2)

    def answers(self, name: str, rdtype: str) -> set[str]:
        resp = self.query(name, rdtype)
        want = dns.rdatatype.from_text(rdtype)
        return {rd.to_text() for rrset in resp.answer if rrset.rdtype == want for rd in rrset}

    def client(self, config: Path, command: str = "run", source: str | None = None) -> Process:
        """Start ``hbdns-client --config FILE [--source ADDR] COMMAND`` as a process."""
        args = [str(BIN / "hbdns-client"), "--config", str(config)]
        if source:
            args += ["--source", source]
        args.append(command)
        log = self.workdir / f"client-{time.monotonic_ns()}.log"
        return Process(args, log, env=self.env)
