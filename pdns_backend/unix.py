"""Unix-socket transport for PowerDNS' ``unix:`` connector: one JSON object per line each way.

``remote-connection-string=unix:path=/run/hbdns/backend.sock,timeout=2000``. Each pdns backend
instance (one per distributor thread, plus a few for the API and zone-cache refresh) keeps one
connection, sends ``initialize`` and then one call at a time, so a thread per connection never
waits on another connection. Same handlers as HTTP, without the HTTP parsing: several times faster.

A failed call is answered with an object that has no ``result`` key: pdns raises, answers SERVFAIL
and reconnects; ``{"result": false}`` would be cached as NXDOMAIN.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import stat
import threading
from pathlib import Path

from pdns_backend.handlers import Backend, BackendError

log = logging.getLogger(__name__)

_FALSE = b'{"result":false}\n'
_TRUE = b'{"result":true}\n'


def _encode(result: object) -> bytes:
    if result is False:
        return _FALSE
    if result is True:
        return _TRUE
    return json.dumps({"result": result}, separators=(",", ":")).encode() + b"\n"


def answer_line(backend: Backend, line: bytes) -> bytes:
    """One request line -> one reply line (with its newline)."""
    try:
        req = json.loads(line)
        method = req["method"]
        params = req.get("parameters") or {}
    except (ValueError, KeyError, TypeError, AttributeError):
        return b'{"error":"malformed request"}\n'
    try:
        return _encode(backend.call(str(method), params))
    except BackendError as exc:
        return json.dumps({"error": str(exc)}).encode() + b"\n"


class UnixServer:
    """Listens on a unix socket path; one daemon thread per pdns connection."""

    def __init__(self, path: str | Path, backend: Backend, *, mode: int = 0o666, backlog: int = 64) -> None:
        self.path = Path(path)
        self.backend = backend
        self.mode = mode
        self.backlog = backlog
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    def _remove_stale(self) -> None:
        """Remove a socket file left by a dead process; refuse to steal one a live server answers on."""
        try:
            st = self.path.lstat()
        except FileNotFoundError:
            return
        if not stat.S_ISSOCK(st.st_mode):
            raise RuntimeError(f"{self.path} exists and is not a socket")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(str(self.path))
        except OSError:
            self.path.unlink(missing_ok=True)
            return
        finally:
            probe.close()
        raise RuntimeError(f"another process is serving {self.path}")

    def start(self) -> UnixServer:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._remove_stale()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(str(self.path))
        os.chmod(self.path, self.mode)
        sock.listen(self.backlog)
        self._sock = sock
        self._thread = threading.Thread(target=self._accept_loop, name="unix-accept", daemon=True)
        self._thread.start()
        log.info("unix socket listening", extra={"path": str(self.path)})
        return self

    def _accept_loop(self) -> None:
        assert self._sock is not None
        while not self._stopping.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                if self._stopping.is_set():
                    return
                continue
            threading.Thread(target=self._serve, args=(conn,), name="unix-conn", daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        backend = self.backend
        buf = b""
        try:
            with conn:
                while True:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    buf += chunk
                    if b"\n" not in buf:
                        if len(buf) > 1 << 20:
                            return  # no request is this long: drop the connection
                        continue
                    *lines, buf = buf.split(b"\n")
                    out = b"".join(answer_line(backend, line) for line in lines if line.strip())
                    if out:
                        conn.sendall(out)
        except OSError:
            return

    def stop(self) -> None:
        self._stopping.set()
        if self._sock is not None:
            try:
                self._sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self._sock.close()
            self._sock = None
        self.path.unlink(missing_ok=True)
