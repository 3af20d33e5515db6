"""The neutral host's sockets: SMTP (421 and close) and HTTP (the neutral page) on every address.

One asyncio loop serves both. Every connection is bounded: admitted only under the global and
per-source caps (:mod:`neutral_host.admission`), and given ``timeout`` seconds in total to send its
request head (HTTP) or to close after the greeting (SMTP), however slowly it trickles bytes. A
connection over a cap still gets the SMTP greeting (one write, no waiting) or is reset (HTTP).
Nothing else is listened on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
from collections import Counter
from dataclasses import dataclass

from neutral_host import replies
from neutral_host.admission import Admission, source_key

log = logging.getLogger("neutral_host.server")

DRAIN_BYTES = 4096  # what an SMTP client may still send after the greeting before it is cut off


@dataclass(frozen=True)
class Limits:
    max_connections: int = 512
    per_source: int = 16
    timeout: float = 10.0  # whole-request deadline for HTTP heads, linger after the SMTP greeting


class NeutralHost:
    """Listeners on ``addresses`` x (``smtp_port``, ``http_port``); port 0 picks a free port (tests)."""

    def __init__(
        self, *, addresses: tuple[str, ...], smtp_port: int, http_port: int, name: str, limits: Limits
    ) -> None:
        if not addresses:
            raise ValueError("the neutral host needs at least one address")
        self.addresses = addresses
        self.smtp_port = smtp_port
        self.http_port = http_port
        self.greeting = replies.greeting(name)
        self.limits = limits
        self.admission = Admission(limits.max_connections, limits.per_source)
        self.counts: Counter[str] = Counter()
        self.servers: list[asyncio.Server] = []
        self._open: set[asyncio.StreamWriter] = set()

    async def start(self) -> NeutralHost:
        for addr in self.addresses:
            family = socket.AF_INET6 if ":" in addr else socket.AF_INET
            for port, handler in ((self.smtp_port, self._smtp), (self.http_port, self._http)):
                server = await asyncio.start_server(
                    handler, addr, port, family=family, reuse_address=True, backlog=1024, limit=replies.MAX_HEAD
                )
                self.servers.append(server)
        log.info("neutral host listening", extra={"sockets": self.bound()})
        return self

    def bound(self) -> list[str]:
        out = []
        for server in self.servers:
            for sock in server.sockets:
                host, port = sock.getsockname()[:2]
                out.append(f"[{host}]:{port}" if ":" in host else f"{host}:{port}")
        return out

    def port_of(self, kind: str) -> int:
        """The bound port of the SMTP or HTTP listeners (they share one port per kind)."""
        index = 0 if kind == "smtp" else 1
        return int(self.servers[index].sockets[0].getsockname()[1])

    async def close(self) -> None:
        """Stop listening and reset open connections (their handlers then end on their own)."""
        for server in self.servers:
            server.close()
        for writer in list(self._open):
            _close(writer, reset=True)
        for server in self.servers:
            await server.wait_closed()

    def _enter(self, writer: asyncio.StreamWriter, kind: str) -> str | None:
        peer = writer.get_extra_info("peername")
        key = source_key(str(peer[0])) if peer else "?"
        if not self.admission.admit(key):
            self.counts[f"{kind}_over_limit"] += 1
            return None
        self.counts[f"{kind}_connections"] += 1
        self._open.add(writer)
        return key

    def _leave(self, writer: asyncio.StreamWriter, key: str) -> None:
        self._open.discard(writer)
        self.admission.release(key)

    async def _smtp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        key = self._enter(writer, "smtp")
        if key is None:
            with contextlib.suppress(OSError):
                writer.write(self.greeting)  # one write, no waiting: the sender still defers at once
            _close(writer)
            return
        try:
            writer.write(self.greeting)
            # FIN after the greeting, then read what the client still sends (QUIT, or an early EHLO) so
            # that closing with unread data does not reset the connection before the 421 arrives.
            async with asyncio.timeout(self.limits.timeout):
                await writer.drain()
                if writer.can_write_eof():
                    writer.write_eof()
                drained = 0
                while drained <= DRAIN_BYTES:
                    chunk = await reader.read(1024)
                    if not chunk:
                        break
                    drained += len(chunk)
        except (TimeoutError, OSError):
            self.counts["smtp_cut"] += 1
        finally:
            self._leave(writer, key)
            _close(writer, reset=not reader.at_eof())

    async def _http(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        key = self._enter(writer, "http")
        if key is None:
            _close(writer, reset=True)
            return
        try:
            async with asyncio.timeout(self.limits.timeout):
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                    answer = replies.response(replies.parse_head(head))
                    self.counts["http_pages"] += 1
                except replies.BadRequest as exc:
                    answer = replies.error_response(exc.status)
                    self.counts["http_bad"] += 1
                except asyncio.LimitOverrunError:
                    answer = replies.error_response(431)
                    self.counts["http_bad"] += 1
                except asyncio.IncompleteReadError:
                    return  # closed before a whole head: nothing to answer
                writer.write(answer)
                await writer.drain()
        except (TimeoutError, OSError):
            self.counts["http_cut"] += 1
        finally:
            self._leave(writer, key)
            _close(writer)


def _close(writer: asyncio.StreamWriter, reset: bool = False) -> None:
    """Close, or reset (RST, no TIME_WAIT here) when asked or when unsent bytes are left (a reader
    too slow to take them)."""
    if reset or writer.transport.get_write_buffer_size():
        sock = writer.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()
    else:
        writer.close()
