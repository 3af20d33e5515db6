"""The socketmap server: TCP (or a unix socket) for Postfix, one thread per open connection.

Postfix opens one connection per process that uses a table and keeps it, so connections are few
and long-lived; a thread each is simple and enough. The number of connections is capped, a
connection idle for ``idle_timeout`` is closed (Postfix reconnects on its next lookup), and
anything that is not a socketmap request closes the connection. The server holds no state: every
answer is read from Redis when asked, so an account change is visible to the next lookup.
"""

from __future__ import annotations

import logging
import os
import socket
import socketserver
import threading
from collections.abc import Callable
from typing import Any

from backup_mx import socketmap
from hbdns.logs import RateLimitedLog

log = logging.getLogger("backup_mx.server")
_limited = RateLimitedLog(log, interval=30)

Answer = Callable[[socketmap.Request], bytes]


class _Handler(socketserver.BaseRequestHandler):
    server: _Server

    def handle(self) -> None:
        srv = self.server
        if not srv.slots.acquire(blocking=False):
            _limited.log(logging.WARNING, "full", "socketmap connection refused: too many open")
            return
        try:
            self.request.settimeout(srv.idle_timeout)
            reader = socketmap.NetstringReader()
            while not srv.stopping.is_set():
                try:
                    data = self.request.recv(65536)
                except (TimeoutError, OSError):
                    return
                if not data:
                    return
                try:
                    requests = reader.feed(data)
                except socketmap.ProtocolError as exc:
                    _limited.log(logging.WARNING, "protocol", "socketmap protocol error", error=str(exc))
                    return
                for req in requests:
                    reply = srv.answer(req)
                    srv.count()
                    self.request.sendall(reply)
        finally:
            srv.slots.release()


class _Server(socketserver.ThreadingMixIn, socketserver.BaseServer):
    daemon_threads = True
    answer: Answer
    slots: threading.BoundedSemaphore
    idle_timeout: float
    stopping: threading.Event
    lookups: int
    _lock: threading.Lock

    def count(self) -> None:
        with self._lock:
            self.lookups += 1


class _TCPServer(_Server, socketserver.TCPServer):
    allow_reuse_address = True


class _UnixServer(_Server, socketserver.UnixStreamServer):
    pass


class MapServer:
    """``answer`` turns a request into a reply netstring (:meth:`backup_mx.maps.MxMaps.answer`)."""

    def __init__(
        self,
        answer: Answer,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        unix_path: str = "",
        max_connections: int = 256,
        idle_timeout: float = 600.0,
    ) -> None:
        self.unix_path = unix_path
        server: _Server
        if unix_path:
            if os.path.exists(unix_path):
                os.unlink(unix_path)
            server = _UnixServer(unix_path, _Handler)
            os.chmod(unix_path, 0o660)
        else:
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            cls: Any = type("_TCP", (_TCPServer,), {"address_family": family})
            server = cls((host, port), _Handler)
        server.answer = answer
        server.slots = threading.BoundedSemaphore(max_connections)
        server.idle_timeout = idle_timeout
        server.stopping = threading.Event()
        server.lookups = 0
        server._lock = threading.Lock()
        self._server = server
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        if self.unix_path:
            return 0
        address: Any = self._server.server_address
        return int(address[1])

    @property
    def lookups(self) -> int:
        return self._server.lookups

    def start(self) -> MapServer:
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.stopping.set()
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(5)
        if self.unix_path and os.path.exists(self.unix_path):
            os.unlink(self.unix_path)
