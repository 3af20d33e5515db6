"""The real heartbeat listener as a subprocess on free loopback ports, plus helpers to beat at it."""

from __future__ import annotations

import os
import socket
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import redis
from hbdns_client import wire

from hbdns import keys, zone_serial
from hbdns.metrics import parse_metrics
from tests.support.servers import Process, free_port, wait_for

ROOT = Path(__file__).resolve().parents[2]
ZONE = "dyn.test"  # the zone of the integration tests' heartbeat account


def now_ms() -> int:
    """A beat counter for now (Unix ms), as the client makes them."""
    return time.time_ns() // 1_000_000


def snapshot(r: redis.Redis, account_id: int, zone: str) -> tuple[Any, ...]:
    """Everything a beat could change, minus the alive key's shrinking TTL."""
    return (
        r.hgetall(keys.account(account_id)),
        r.exists(keys.alive(account_id)),
        r.zscore(keys.deadlines(keys.shard_of(account_id)), keys.deadline_member(account_id, 4)),
        r.xlen(keys.events(keys.shard_of(account_id))),
        zone_serial.read(r, zone),
    )


def free_udp_port() -> int:
    """A port free for UDP on 127.0.0.1 and ::1 (and TCP on 127.0.0.1)."""
    for _ in range(50):
        port = free_port(socket.SOCK_DGRAM)
        try:
            with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
                s.bind(("::1", port))
            return port
        except OSError:
            continue
    raise RuntimeError("no free UDP port")


class Listener:
    """``python -m heartbeat_listener.main`` with HBDNS_* env; ``port`` may be shared (SO_REUSEPORT)."""

    def __init__(self, workdir: Path, redis_url: str, port: int | None = None, **env: str) -> None:
        self.port = port or free_udp_port()
        self.metrics_port = free_port()
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("HBDNS_")}
        self.env.update(
            HBDNS_REDIS_URL=redis_url,
            HBDNS_HEARTBEAT_HOST="127.0.0.1",
            HBDNS_HEARTBEAT_HOST6="::1",
            HBDNS_HEARTBEAT_PORT=str(self.port),
            HBDNS_METRICS_PORT=str(self.metrics_port),
            HBDNS_LOG_LEVEL="INFO",
        )
        self.env.update(env)
        self.log_path = workdir / f"listener-{self.metrics_port}.log"
        self.process: Process | None = None

    def start(self) -> Listener:
        self.process = Process(
            [sys.executable, "-m", "heartbeat_listener.main"], self.log_path, env=self.env, cwd=str(ROOT)
        )
        wait_for(self._ready, 30, what="heartbeat listener metrics")
        return self

    def _ready(self) -> bool:
        if self.process is None or not self.process.alive():
            raise RuntimeError("listener exited:\n" + (self.process.log_text() if self.process else ""))
        return bool(self.metrics())

    def metrics(self) -> dict[str, float]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as resp:
            return parse_metrics(resp.read().decode())

    def count(self, result: str) -> int:
        return int(self.metrics().get(f'hbdns_heartbeat_packets_total{{result="{result}"}}', 0))

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()

    def log(self) -> str:
        return self.process.log_text() if self.process else ""


def send(data: bytes, port: int, source: str = "127.0.0.1", wait: float = 0.0) -> bytes | None:
    """Send one datagram from ``source`` (any port); with ``wait``, return the first answer or None."""
    family = socket.AF_INET6 if ":" in source else socket.AF_INET
    dest = "::1" if family == socket.AF_INET6 else "127.0.0.1"
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        s.bind((source, 0))
        s.sendto(data, (dest, port))
        if not wait:
            return None
        s.settimeout(wait)
        try:
            return s.recv(64)
        except TimeoutError:
            return None


def beat(account_id: int, key: bytes, counter: int, flags: int = wire.FLAG_REPLY) -> bytes:
    return wire.encode_beat(account_id, counter, key, flags)
