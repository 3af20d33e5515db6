"""hbdns-backup-mx-maps' server on loopback: requests pipelined and split on one connection, a
protocol error closes only that connection, the connection cap, the unix socket, and the real
service process (SIGTERM, a bad setting)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from backup_mx import socketmap
from backup_mx.server import MapServer
from tests.support.servers import Process, RedisServer, free_port, short_dir, wait_for

ROOT = Path(__file__).resolve().parents[2]


def _echo(req: socketmap.Request) -> bytes:
    return socketmap.ok(f"{req.name}={req.key}")


@pytest.fixture
def server() -> Iterator[MapServer]:
    srv = MapServer(_echo, host="127.0.0.1", port=0, max_connections=3, idle_timeout=1.0).start()
    yield srv
    srv.stop()


def _recv_replies(s: socket.socket, count: int) -> list[bytes]:
    data = b""
    while data.count(b",") < count:
        chunk = s.recv(4096)
        if not chunk:
            break
        data += chunk
    return [part + b"," for part in data.split(b",") if part]


def _closed_without_answer(s: socket.socket) -> bool:
    """The server closed the connection unanswered: a FIN, or a reset when our request was unread."""
    try:
        return s.recv(100) == b""
    except ConnectionResetError:
        return True


def test_requests_are_pipelined_and_may_arrive_split(server: MapServer) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
        s.sendall(b"9:domains a,11:transport b,")
        s.sendall(b"11:recip")
        s.sendall(b"ient c,")
        assert _recv_replies(s, 3) == [
            socketmap.ok("domains=a"),
            socketmap.ok("transport=b"),
            socketmap.ok("recipient=c"),
        ]
    wait_for(lambda: server.lookups == 3, 5, what="3 lookups counted")


def test_a_protocol_error_closes_that_connection_only(server: MapServer) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as bad:
        bad.sendall(b"not a netstring")
        assert _closed_without_answer(bad)
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as good:
        good.sendall(b"9:domains a,")
        assert _recv_replies(good, 1) == [socketmap.ok("domains=a")]


def test_connections_are_capped_and_idle_ones_closed(server: MapServer) -> None:
    held = [socket.create_connection(("127.0.0.1", server.port), timeout=5) for _ in range(3)]
    for s in held:
        s.sendall(b"9:domains a,")
        assert _recv_replies(s, 1) == [socketmap.ok("domains=a")]
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as extra:
        extra.sendall(b"9:domains a,")
        assert _closed_without_answer(extra)  # over the cap
    for s in held:  # idle for longer than idle_timeout: the server closes them, freeing the slots
        s.settimeout(5)
        assert _closed_without_answer(s)
        s.close()
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as again:
        again.sendall(b"9:domains a,")
        assert _recv_replies(again, 1) == [socketmap.ok("domains=a")]


def test_unix_socket() -> None:
    path = str(short_dir() / "maps.sock")
    srv = MapServer(_echo, unix_path=path).start()
    try:
        assert oct(os.stat(path).st_mode & 0o777) == "0o660"
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(5)
            s.connect(path)
            s.sendall(b"9:domains a,")
            assert _recv_replies(s, 1) == [socketmap.ok("domains=a")]
    finally:
        srv.stop()
    assert not os.path.exists(path)


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HBDNS_")}
    env.update(extra)
    return env


def test_the_service_answers_from_redis_and_stops_on_sigterm(redis_server: RedisServer, tmp_path: Path) -> None:
    port = free_port()
    proc = Process(
        [sys.executable, "-m", "backup_mx.main"],
        tmp_path / "maps.log",
        env=_env(HBDNS_REDIS_URL=redis_server.url, HBDNS_BACKUP_MX_MAP_PORT=str(port)),
        cwd=str(ROOT),
    )
    try:

        def ask() -> bytes:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
                s.sendall(socketmap.encode("domains nobody.test"))
                return s.recv(100)

        assert wait_for(ask, 20, what="the service") == socketmap.notfound()
        proc.signal(signal.SIGTERM)
        wait_for(lambda: not proc.alive(), 10, what="exit after SIGTERM")
        assert proc.proc.returncode == 0
        assert '"backup MX tables stopped"' in proc.log_text()
    finally:
        proc.stop()


def test_a_bad_setting_stops_the_service_with_its_name() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "backup_mx.main"],
        env=_env(HBDNS_BACKUP_MX_MAP_PORT="eighty"),
        capture_output=True,
        text=True,
        timeout=30,
        cwd=str(ROOT),
    )
    assert done.returncode == 2 and "HBDNS_BACKUP_MX_MAP_PORT" in done.stderr
