"""Unix-socket transport for PowerDNS' ``unix:`` connector: one JSON object per line each way.

``remote-connection-string=unix:path=/run/hbdns/backend.sock,timeout=2000``. Each pdns backend
instance (one per distributor thread, plus a few for the API and zone-cache refresh) keeps one
connection, sends ``initialize`` and then one call at a time.

One thread runs a selector loop over all connections: the lookups that arrive together from
several distributor threads are answered with one Redis round trip
(:meth:`~pdns_backend.backend.Backend.lookup_bodies`), and no GIL hand-off between threads sits in
the path of every query (against a thread per connection: docs/performance.md).

A failed call is answered with an object that has no ``result`` key: pdns raises, answers SERVFAIL
and reconnects; ``{"result": false}`` would be cached as NXDOMAIN.
"""

from __future__ import annotations

import json
import logging
import os
import selectors
import socket
import stat
import threading
from pathlib import Path
from typing import Any

from pdns_backend.answers import result_json
from pdns_backend.backend import Backend, BackendError

log = logging.getLogger(__name__)

_FALSE = b'{"result":false}\n'
_TRUE = b'{"result":true}\n'
_MALFORMED = b'{"error":"malformed request"}\n'
_MAX_LINE = 1 << 20  # no pdns request comes near this; a longer line drops the connection


def encode(result: object) -> bytes:
    """One reply line: ``{"result": ...}``, or ``{"error": ...}`` (no result) for a failure."""
    if result is False:
        return _FALSE
    if result is True:
        return _TRUE
    if isinstance(result, BaseException):
        return json.dumps({"error": str(result)}).encode() + b"\n"
    return (result_json(result) + "\n").encode()


def parse(line: bytes) -> tuple[str, dict[str, Any]] | None:
    try:
        req = json.loads(line)
        method = req["method"]
        params = req.get("parameters") or {}
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
    if not isinstance(method, str) or not isinstance(params, dict):
        return None
    return method, params


def answer_lines(backend: Backend, lines: list[bytes]) -> list[bytes]:
    """Reply lines for request lines, in order; all lookups among them share one Redis round trip
    (none for those the answer cache holds)."""
    requests = [parse(line) for line in lines]
    lookups = [
        (str(req[1].get("qname", "")), str(req[1].get("qtype", "ANY")))
        for req in requests
        if req is not None and req[0] == "lookup"
    ]
    looked_up = iter(backend.lookup_bodies(lookups) if lookups else [])
    out = []
    for req in requests:
        if req is None:
            out.append(_MALFORMED)
            continue
        method, params = req
        if method == "lookup":
            reply = next(looked_up)
            out.append(encode(reply) if isinstance(reply, BaseException) else reply + b"\n")
            continue
        try:
            out.append(encode(backend.call(method, params)))
        except BackendError as exc:
            out.append(encode(exc))
    return out


def answer_line(backend: Backend, line: bytes) -> bytes:
    """One request line -> one reply line (with its newline)."""
    return answer_lines(backend, [line])[0]


class _Conn:
    __slots__ = ("inbuf", "outbuf", "sock")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.inbuf = b""
        self.outbuf = b""


class UnixServer:
    """Listens on a unix socket path; one selector thread serves every pdns connection."""

    def __init__(self, path: str | Path, backend: Backend, *, mode: int = 0o666, backlog: int = 64) -> None:
        self.path = Path(path)
        self.backend = backend
        self.mode = mode
        self.backlog = backlog
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._wake_r, self._wake_w = socket.socketpair()

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
        sock.setblocking(False)
        self._sock = sock
        self._thread = threading.Thread(target=self._run, name="unix-backend", daemon=True)
        self._thread.start()
        log.info("unix socket listening", extra={"path": str(self.path)})
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stopping.set()
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        self.path.unlink(missing_ok=True)

    # --- the loop ---------------------------------------------------------------------------------

    def _run(self) -> None:
        assert self._sock is not None
        sel = selectors.DefaultSelector()
        sel.register(self._sock, selectors.EVENT_READ, "accept")
        sel.register(self._wake_r, selectors.EVENT_READ, "wake")
        conns: dict[int, _Conn] = {}
        try:
            while not self._stopping.is_set():
                ready: list[tuple[_Conn, list[bytes]]] = []
                for key, mask in sel.select():
                    if key.data == "accept":
                        self._accept(sel, conns)
                    elif key.data == "wake":
                        continue
                    else:
                        conn: _Conn = key.data
                        if mask & selectors.EVENT_WRITE:
                            self._flush(sel, conns, conn)
                        if mask & selectors.EVENT_READ:
                            lines = self._read(sel, conns, conn)
                            if lines:
                                ready.append((conn, lines))
                if ready:
                    self._answer(sel, conns, ready)
        except Exception:
            log.exception("unix socket loop failed")
            raise
        finally:
            for conn in list(conns.values()):
                self._close(sel, conns, conn)
            sel.close()
            self._sock.close()
            self._wake_r.close()
            self._wake_w.close()

    def _accept(self, sel: selectors.BaseSelector, conns: dict[int, _Conn]) -> None:
        assert self._sock is not None
        while True:
            try:
                sock, _ = self._sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                log.warning("unix accept failed", extra={"error": str(exc)})
                return
            sock.setblocking(False)
            conn = _Conn(sock)
            conns[sock.fileno()] = conn
            sel.register(sock, selectors.EVENT_READ, conn)

    def _read(self, sel: selectors.BaseSelector, conns: dict[int, _Conn], conn: _Conn) -> list[bytes]:
        try:
            data = conn.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return []
        except OSError:
            data = b""
        if not data:
            self._close(sel, conns, conn)
            return []
        buf = conn.inbuf + data
        if b"\n" not in data:
            if len(buf) > _MAX_LINE:
                self._close(sel, conns, conn)
                return []
            conn.inbuf = buf
            return []
        *lines, conn.inbuf = buf.split(b"\n")
        return [line for line in lines if line.strip()]

    def _answer(
        self, sel: selectors.BaseSelector, conns: dict[int, _Conn], ready: list[tuple[_Conn, list[bytes]]]
    ) -> None:
        lines = [line for _, conn_lines in ready for line in conn_lines]
        try:
            replies = answer_lines(self.backend, lines)
        except Exception:
            log.exception("unix batch failed")
            replies = [encode(BackendError("internal error"))] * len(lines)
        i = 0
        for conn, conn_lines in ready:
            n = len(conn_lines)
            conn.outbuf += b"".join(replies[i : i + n])
            i += n
            self._flush(sel, conns, conn)

    def _flush(self, sel: selectors.BaseSelector, conns: dict[int, _Conn], conn: _Conn) -> None:
        if conn.sock.fileno() < 0:
            return
        try:
            sent = conn.sock.send(conn.outbuf) if conn.outbuf else 0
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            self._close(sel, conns, conn)
            return
        conn.outbuf = conn.outbuf[sent:]
        events = selectors.EVENT_READ | (selectors.EVENT_WRITE if conn.outbuf else 0)
        if sel.get_key(conn.sock).events != events:
            sel.modify(conn.sock, events, conn)

    def _close(self, sel: selectors.BaseSelector, conns: dict[int, _Conn], conn: _Conn) -> None:
        fd = conn.sock.fileno()
        if fd < 0:
            return
        conns.pop(fd, None)
        try:
            sel.unregister(conn.sock)
        except (KeyError, ValueError):
            pass
        conn.sock.close()
