"""Local receivers for notifications: an SMTP server (aiosmtpd) and an HTTP server, both on loopback.

Each records what it accepted, with the arrival time, and can be scripted to fail (SMTP reply codes,
HTTP status codes), to hold a delivery until released (to kill a sender mid-send), to answer slowly
(``delay``), or, for SMTP, to go down and come back on the same port (``down``/``up``: an outage),
or to accept a message and then hold the reply (``hold_replies``: a relay whose "250" never reaches
the sender, which then sends the message again).
"""

from __future__ import annotations

import asyncio
import base64
import email
import email.policy
import json
import ssl
import subprocess
import threading
import time
from dataclasses import dataclass, field
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from tests.support.servers import free_port


@dataclass
class Mail:
    received: float
    sender: str
    rcpts: list[str]
    raw: bytes
    _parsed: EmailMessage | None = None

    @property
    def message(self) -> EmailMessage:
        """Parsed on first use: parsing in the SMTP handler would slow the server down."""
        if self._parsed is None:
            self._parsed = email.message_from_bytes(self.raw, policy=email.policy.default)  # type: ignore[assignment]
        assert self._parsed is not None
        return self._parsed

    @property
    def subject(self) -> str:
        return str(self.message["Subject"])

    @property
    def text(self) -> str:
        body = self.message.get_body(("plain",))
        return body.get_content() if body is not None else ""  # type: ignore[attr-defined]

    def header(self, name: str) -> str:
        return str(self.message.get(name, ""))


@dataclass
class _SmtpHandler:
    sink: SmtpSink
    replies: list[str] = field(default_factory=list)  # scripted DATA replies, consumed in order

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: Any) -> str:
        if address in self.sink.reject:
            return self.sink.reject[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        sink = self.sink
        if sink.delay:
            await asyncio.sleep(sink.delay)
        with sink.lock:
            hold_reply = sink.hold_replies > 0
            sink.hold_replies -= hold_reply
        if hold_reply:  # accepted, but the sender never hears so
            with sink.lock:
                sink.mails.append(
                    Mail(time.time(), envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content)
                )
            await asyncio.get_running_loop().run_in_executor(None, sink.release.wait, 60)
            return "250 OK"
        if sink.hold.is_set():
            sink.held.set()
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(None, sink.release.wait, 60)
            return "451 held and dropped"
        with sink.lock:
            reply = sink.replies.pop(0) if sink.replies else "250 OK"
        if not reply.startswith("250"):
            with sink.lock:
                sink.refused += 1
            return reply
        with sink.lock:
            sink.mails.append(Mail(time.time(), envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content))
        return "250 OK"


class SmtpSink:
    """aiosmtpd on a free loopback port. ``tls_dir``: serve STARTTLS (required) with a fresh self-signed cert."""

    def __init__(self, tls_dir: Path | None = None, auth: tuple[str, str] | None = None) -> None:
        self.port = free_port()
        self.mails: list[Mail] = []
        self.replies: list[str] = []
        self.reject: dict[str, str] = {}
        self.refused = 0
        self.lock = threading.Lock()
        self.hold = threading.Event()
        self.held = threading.Event()
        self.release = threading.Event()
        self.cert_file: Path | None = None
        self.delay = 0.0  # seconds before answering DATA
        self.hold_replies = 0  # accept this many messages without answering (until release)
        kw: dict[str, Any] = {}
        if tls_dir is not None:
            self.cert_file = tls_dir / "cert.pem"
            key_file = tls_dir / "key.pem"
            subprocess.run(
                ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
                 "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
                 "-keyout", str(key_file), "-out", str(self.cert_file)],
                check=True, capture_output=True,
            )  # fmt: skip
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ctx.load_cert_chain(self.cert_file, key_file)
            kw.update(tls_context=ctx, require_starttls=True)
        if auth is not None:
            user, password = auth

            def check(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
                ok = (
                    isinstance(data, LoginPassword)
                    and data.login.decode() == user
                    and data.password.decode() == password
                )
                return AuthResult(success=ok, handled=False)

            kw.update(authenticator=check, auth_require_tls=tls_dir is not None)
        self._kw = kw
        self.controller = Controller(_SmtpHandler(self), hostname="127.0.0.1", port=self.port, **kw)

    def start(self) -> SmtpSink:
        self.controller.start()
        return self

    def down(self) -> None:
        """Stop listening (connections are refused) until :meth:`up`; what was accepted is kept."""
        self.controller.stop()

    def up(self) -> None:
        """Listen again on the same port."""
        self.controller = Controller(_SmtpHandler(self), hostname="127.0.0.1", port=self.port, **self._kw)
        self.controller.start()

    def stop(self) -> None:
        self.release.set()
        self.controller.stop()

    def mails_for(self, rcpt: str) -> list[Mail]:
        with self.lock:
            return [m for m in self.mails if rcpt in m.rcpts]

    def count(self) -> int:
        with self.lock:
            return len(self.mails)


@dataclass
class Request:
    received: float
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    status: int

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def basic_auth(self) -> tuple[str, str] | None:
        value = self.headers.get("authorization", "")
        if not value.lower().startswith("basic "):
            return None
        user, _, password = base64.b64decode(value[6:]).decode().partition(":")
        return user, password


class HttpSink:
    """Records every request; answers the scripted status codes in order, then ``default``."""

    def __init__(self, statuses: list[int] | None = None, default: int = 200) -> None:
        self.statuses = list(statuses or [])
        self.default = default
        self.requests: list[Request] = []
        self.lock = threading.Lock()
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def _any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                with sink.lock:
                    status = sink.statuses.pop(0) if sink.statuses else sink.default
                    sink.requests.append(
                        Request(
                            time.time(),
                            self.command,
                            self.path,
                            {k.lower(): v for k, v in self.headers.items()},
                            body,
                            status,
                        )
                    )
                payload = json.dumps({"status": status}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = _any

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> HttpSink:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def log(self, path: str | None = None) -> list[Request]:
        with self.lock:
            return [r for r in self.requests if path is None or r.path.startswith(path)]

    def ok(self, path: str | None = None) -> list[Request]:
        return [r for r in self.log(path) if 200 <= r.status < 300]
