"""SMTP servers that stand for people in the mail scenarios, on fixed addresses inside a namespace.

- :class:`Mailbox` is the customer's own mail server (aiosmtpd): it knows its users, refuses the
  rest with ``550 5.1.1`` during RCPT like a real server, and records each message with its
  Message-ID and arrival time. It can be stopped (the customer's line is down) and started again.
- The same class with ``users=None`` accepts everything: the sender's mailbox, where bounces land.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from email.parser import BytesHeaderParser
from typing import Any

from aiosmtpd.controller import Controller


@dataclass(frozen=True)
class Received:
    at: float
    sender: str
    rcpts: tuple[str, ...]
    message_id: str
    subject: str
    peer: str
    raw: bytes


class _Handler:
    def __init__(self, box: Mailbox) -> None:
        self.box = box

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
        local, _, domain = address.lower().rpartition("@")
        if self.box.users is not None and (local not in self.box.users or domain not in self.box.domains):
            with self.box.lock:
                self.box.refused.append(address)
            return f"550 5.1.1 <{address}>: Recipient address rejected: User unknown"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 Ok"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        headers = BytesHeaderParser().parsebytes(envelope.original_content or b"")
        item = Received(
            at=time.time(),
            sender="" if envelope.mail_from in (None, "", "<>") else envelope.mail_from,  # "" = a DSN
            rcpts=tuple(envelope.rcpt_tos),
            message_id=str(headers.get("Message-ID", "")).strip(),
            subject=str(headers.get("Subject", "")),
            peer=session.peer[0] if session.peer else "",
            raw=envelope.original_content or b"",
        )
        with self.box.lock:
            self.box.mails.append(item)
        return "250 2.0.0 Ok: delivered"


class Mailbox:
    """aiosmtpd on ``host:port``; ``users`` (local parts) of ``domains``, or None to accept all."""

    def __init__(
        self, host: str, port: int = 25, *, name: str, users: set[str] | None = None, domains: set[str] | None = None
    ) -> None:
        self.host = host
        self.port = port
        self.name = name
        self.users = users
        self.domains = domains or set()
        self.lock = threading.Lock()
        self.mails: list[Received] = []
        self.refused: list[str] = []
        self._controller: Controller | None = None

    def start(self) -> Mailbox:
        self._controller = Controller(_Handler(self), hostname=self.host, port=self.port, server_hostname=self.name)
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def move(self, host: str) -> Mailbox:
        """The server comes back on another address (the customer's line got a new IP)."""
        self.stop()
        self.host = host
        return self.start()

    @property
    def running(self) -> bool:
        return self._controller is not None

    def received(self) -> list[Received]:
        with self.lock:
            return list(self.mails)

    def ids(self) -> list[str]:
        return [m.message_id for m in self.received()]
