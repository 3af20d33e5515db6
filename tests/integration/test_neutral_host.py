"""The neutral host on loopback: 421 at once on SMTP, the page on HTTP, bounded connections, slow
clients cut off, and no other socket open (checked in /proc for the real service process)."""

from __future__ import annotations

import os
import signal
import smtplib
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.neutral import NeutralHostProcess, NeutralHostThread
from tests.support.servers import free_port, wait_for

GREETING = b"421 4.4.2 neutral.test is offline; mail is queued by its backup MX\r\n"


@pytest.fixture
def neutral() -> Iterator[NeutralHostThread]:
    host = NeutralHostThread(timeout=1.0, per_source=4, max_connections=6).start()
    yield host
    host.stop()


def _connect(port: int, source: str = "127.0.0.1") -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=5, source_address=(source, 0))
    return s


def _read_all(s: socket.socket) -> bytes:
    out = b""
    while chunk := s.recv(4096):
        out += chunk
    return out


def test_smtp_answers_421_at_once_and_closes(neutral: NeutralHostThread) -> None:
    t0 = time.monotonic()
    with _connect(neutral.host.port_of("smtp")) as s:
        assert _read_all(s) == GREETING  # then EOF: the server closed after the greeting
    assert time.monotonic() - t0 < 0.5


def test_an_early_client_still_gets_the_greeting(neutral: NeutralHostThread) -> None:
    """A client that talks before the greeting (or sends QUIT) must not get a reset instead."""
    with _connect(neutral.host.port_of("smtp")) as s:
        s.sendall(b"EHLO sender.test\r\nMAIL FROM:<a@b.test>\r\n")
        assert s.recv(4096) == GREETING
        s.sendall(b"QUIT\r\n")
        s.shutdown(socket.SHUT_WR)
        assert _read_all(s) == b""


def test_smtplib_sees_a_temporary_refusal(neutral: NeutralHostThread) -> None:
    with pytest.raises(smtplib.SMTPConnectError) as err:
        smtplib.SMTP("127.0.0.1", neutral.host.port_of("smtp"), timeout=5)
    assert err.value.smtp_code == 421


def test_http_serves_the_page_for_any_host(neutral: NeutralHostThread) -> None:
    with _connect(neutral.host.port_of("http")) as s:
        s.sendall(b"GET /index.html HTTP/1.1\r\nHost: shop.customer.example\r\nAccept-Language: en\r\n\r\n")
        out = _read_all(s)
    assert out.startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
    assert b"shop.customer.example is offline" in out


def test_slow_http_client_is_cut_off_at_the_deadline(neutral: NeutralHostThread) -> None:
    """Slowloris: a byte every 0.2 s never completes a head; the 1 s deadline is for the whole head."""
    with _connect(neutral.host.port_of("http")) as s:
        t0 = time.monotonic()
        closed = None
        for byte in b"GET / HTTP/1.1\r\nHost: a.test\r\nX-Slow: " + b"a" * 100:
            try:
                s.sendall(bytes([byte]))
            except OSError:
                closed = time.monotonic() - t0
                break
            s.settimeout(0.2)
            try:
                if s.recv(1) == b"":
                    closed = time.monotonic() - t0
                    break
            except TimeoutError:
                continue
            except OSError:
                closed = time.monotonic() - t0
                break
    assert closed is not None and 0.9 <= closed < 3.0, closed
    wait_for(lambda: neutral.call(lambda: neutral.host.counts["http_cut"]) == 1, 5, what="cut counted")


def test_connections_are_capped_per_source_and_in_total(neutral: NeutralHostThread) -> None:
    port = neutral.host.port_of("http")
    held = [_connect(port) for _ in range(4)]  # idle, holding their slots until the deadline
    wait_for(lambda: neutral.call(lambda: neutral.host.admission.total) == 4, 5, what="4 admitted")
    with pytest.raises((ConnectionResetError, BrokenPipeError)), _connect(port) as fifth:  # over its source's cap
        fifth.sendall(b"GET / HTTP/1.1\r\n\r\n")  # the reset may come before connect() even returns
        fifth.recv(100)  # reset without an answer
    others = [_connect(port, source="127.0.0.2"), _connect(port, source="127.0.0.3")]
    wait_for(lambda: neutral.call(lambda: neutral.host.admission.total) == 6, 5, what="6 admitted")
    with _connect(neutral.host.port_of("smtp"), source="127.0.0.4") as smtp:  # total cap: SMTP still greets
        assert _read_all(smtp) == GREETING
    assert neutral.call(lambda: neutral.host.counts["smtp_over_limit"]) == 1
    for s in held + others:
        s.close()
    wait_for(lambda: neutral.call(lambda: neutral.host.admission.total) == 0, 5, what="slots released")
    with _connect(port) as s:
        s.sendall(b"GET / HTTP/1.0\r\n\r\n")
        assert _read_all(s).startswith(b"HTTP/1.1 503")


def _listening_sockets(pid: int) -> tuple[set[tuple[str, int]], int]:
    """(TCP listening (address, port) of ``pid``, number of its UDP sockets), from /proc."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if link.startswith("socket:["):
            inodes.add(link[8:-1])
    listening: set[tuple[str, int]] = set()
    udp = 0
    for table in ("tcp", "tcp6", "udp", "udp6"):
        try:
            lines = Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            if parts[9] not in inodes:
                continue
            if table.startswith("udp"):
                udp += 1
                continue
            if parts[3] != "0A":  # LISTEN
                continue
            hexaddr, hexport = parts[1].split(":")
            raw = bytes.fromhex(hexaddr)
            if len(raw) == 4:
                addr = socket.inet_ntop(socket.AF_INET, raw[::-1])
            else:
                addr = socket.inet_ntop(socket.AF_INET6, b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4)))
            listening.add((addr, int(hexport, 16)))
    return listening, udp


def test_the_service_opens_nothing_else_and_stops_on_sigterm(tmp_path: Path) -> None:
    smtp_port, http_port = free_port(), free_port()
    proc = NeutralHostProcess(
        tmp_path, ("127.0.0.1", "::1"), name="neutral.test", smtp_port=smtp_port, http_port=http_port
    ).start()
    try:
        assert proc.process is not None
        listening, udp = _listening_sockets(proc.process.pid)
        assert listening == {
            ("127.0.0.1", smtp_port),
            ("127.0.0.1", http_port),
            ("::1", smtp_port),
            ("::1", http_port),
        }
        assert udp == 0
        with socket.create_connection(("::1", smtp_port), timeout=5) as s:
            assert _read_all(s) == GREETING
        proc.process.signal(signal.SIGTERM)
        wait_for(lambda: not proc.process.alive(), 10, what="neutral host exit")  # type: ignore[union-attr]
        assert proc.process.proc.returncode == 0
        assert '"neutral host stopped"' in proc.process.log_text()
    finally:
        proc.stop()


def test_a_bad_setting_stops_the_service_with_its_name(tmp_path: Path) -> None:
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("HBDNS_")}
    env["HBDNS_NEUTRAL_HOST_ADDRESSES"] = "127.0.0.300"
    done = subprocess.run(
        [sys.executable, "-m", "neutral_host.main"], env=env, capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 2
    assert "HBDNS_NEUTRAL_HOST_ADDRESSES" in done.stderr
