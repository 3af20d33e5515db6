"""An SMTP server that understands ETRN (RFC 1985): aiosmtpd taught one more command.

Stands in for a backup MX in the flush client's unit tests: every ETRN is recorded (time, domain,
client address) and answered from a per-domain script of replies (then ``default``), so a test can
make a backup MX fail, refuse or succeed in any order. Runs on a free loopback port.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP

from tests.support.servers import free_port


class _EtrnSMTP(SMTP):
    async def smtp_ETRN(self, arg: str) -> None:
        if await self.check_helo_needed():
            return
        if not arg or " " in arg.strip():
            await self.push("501 Syntax: ETRN domain")
            return
        status = await self._call_handler_hook("ETRN", arg.strip())
        await self.push(status)
        if status.startswith("421") and self.transport is not None:
            self.transport.close()


@dataclass
class _Handler:
    server: EtrnServer

    async def handle_ETRN(self, server: Any, session: Any, envelope: Any, domain: str) -> str:
        return self.server.answer(domain, session.peer[0] if session.peer else "", id(session))


@dataclass
class Etrn:
    at: float
    domain: str
    peer: str
    session: int


@dataclass
class EtrnServer:
    """``replies[domain]``: reply lines used in order, one per ETRN for that domain."""

    default: str = "250 Queuing started"
    replies: dict[str, list[str]] = field(default_factory=dict)
    received: list[Etrn] = field(default_factory=list)
    port: int = field(default_factory=free_port)

    def __post_init__(self) -> None:
        self.lock = threading.Lock()

        class _Controller(Controller):
            def factory(self) -> SMTP:
                return _EtrnSMTP(self.handler, hostname="mx-backup.test")

        self.controller = _Controller(_Handler(self), hostname="127.0.0.1", port=self.port)

    def answer(self, domain: str, peer: str, session: int) -> str:
        with self.lock:
            self.received.append(Etrn(time.time(), domain, peer, session))
            script = self.replies.get(domain.lower())
            return script.pop(0) if script else self.default

    @property
    def sessions(self) -> int:
        """SMTP sessions that sent at least one ETRN."""
        with self.lock:
            return len({e.session for e in self.received})

    def domains(self) -> list[str]:
        with self.lock:
            return [e.domain for e in self.received]

    def start(self) -> EtrnServer:
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()
