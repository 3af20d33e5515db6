"""Channels behind one ``notify(message)``; each raises :class:`TransportError` and says whether a retry can help.

Retries, backoff, idempotency and dead letters live in one place (:mod:`notifier.dispatch`), not
here: a transport makes exactly one attempt. Transient: connection errors, timeouts, SMTP 4xx, HTTP
5xx/408/429. Permanent: SMTP 5xx (rejected recipient, auth refused), other HTTP 4xx, redirects.
Transports are shared by the sending threads, so per-connection state is thread-local.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import quopri
import smtplib
import ssl
import threading
from abc import ABC, abstractmethod
from email.header import Header
from email.utils import formatdate
from typing import Any
from urllib.parse import parse_qsl

import requests

from hbdns.config import Settings
from notifier.messages import EMAIL, SMS, WEBHOOK, Message

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Hbdns-Signature"


class TransportError(Exception):
    """One attempt failed. ``permanent``: the same message will never succeed, do not retry."""

    def __init__(self, reason: str, *, permanent: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.permanent = permanent


class Transport(ABC):
    channel = ""

    @abstractmethod
    def notify(self, message: Message) -> None:
        """Deliver one message or raise :class:`TransportError`."""

    def close(self) -> None:  # noqa: B027 - optional hook: most transports hold nothing to close
        """Drop pooled connections (called on shutdown)."""


class LogTransport(Transport):
    """Stands in for a channel that is not configured, so the stack runs without SMTP or a gateway."""

    def __init__(self, channel: str) -> None:
        self.channel = channel

    def notify(self, message: Message) -> None:
        log.info(
            "notification (channel not configured, logged only)",
            extra={
                "channel": message.channel,
                "recipient": message.recipient,
                "account": message.fqdn,
                "event_type": message.event_type,
                "event_id": message.event_id,
                "subject": message.subject,
                "text": message.text,
            },
        )


# --- e-mail ---------------------------------------------------------------------------------------


def _header(value: str) -> str:
    """A header value on one line (no header injection through a subject or an address)."""
    return " ".join(value.split())


def _smtp_error(exc: Exception) -> TransportError:
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        codes = [code for code, _ in exc.recipients.values()]
        detail = "; ".join(f"{rcpt}: {code} {msg!r}" for rcpt, (code, msg) in exc.recipients.items())
        return TransportError(f"recipient refused: {detail}", permanent=all(c >= 500 for c in codes))
    if isinstance(exc, smtplib.SMTPNotSupportedError):
        return TransportError(f"smtp: {exc}", permanent=True)
    if isinstance(exc, smtplib.SMTPResponseException) and not isinstance(exc, smtplib.SMTPConnectError):
        msg = exc.smtp_error.decode(errors="replace") if isinstance(exc.smtp_error, bytes) else str(exc.smtp_error)
        return TransportError(f"smtp {exc.smtp_code} {msg}", permanent=exc.smtp_code >= 500)
    return TransportError(f"smtp: {type(exc).__name__}: {exc}")


class EmailTransport(Transport):
    """smtplib, one kept-alive connection per sending thread; plain, STARTTLS or TLS; optional login."""

    channel = EMAIL

    def __init__(self, settings: Settings) -> None:
        self.host = settings.smtp_host
        self.port = settings.smtp_port
        self.security = settings.smtp_security
        self.user = settings.smtp_user
        self._password = settings.smtp_password
        self.sender = settings.smtp_from
        self.timeout = settings.smtp_timeout
        self._ctx = ssl.create_default_context(cafile=settings.smtp_ca_file or None)
        self._local = threading.local()
        self._all: list[smtplib.SMTP] = []
        self._lock = threading.Lock()

    def _connect(self) -> smtplib.SMTP:
        smtp: smtplib.SMTP
        if self.security == "tls":
            smtp = smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout, context=self._ctx)
        else:
            smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
        try:
            smtp.ehlo()
            if self.security == "starttls":
                smtp.starttls(context=self._ctx)
                smtp.ehlo()
            if self.user:
                smtp.login(self.user, self._password)
        except BaseException:
            smtp.close()
            raise
        with self._lock:
            self._all.append(smtp)
        return smtp

    def _drop(self) -> None:
        smtp = getattr(self._local, "smtp", None)
        self._local.smtp = None
        if smtp is not None:
            with self._lock:
                if smtp in self._all:
                    self._all.remove(smtp)
            try:
                smtp.close()
            except Exception:
                pass

    def build(self, message: Message) -> bytes:
        """The RFC 5322 message, composed directly: ``EmailMessage`` with the default policy costs ~1.6 ms
        per message (measured), several times the SMTP exchange, and the texts are plain ASCII anyway."""
        subject = _header(message.subject)
        if not subject.isascii():
            subject = Header(subject, "utf-8").encode()
        body = message.text.replace("\r\n", "\n").rstrip("\n") + "\n"
        if body.isascii():
            encoding, payload = "7bit", body
        else:
            encoding, payload = "quoted-printable", quopri.encodestring(body.encode()).decode("ascii")
        headers = [
            ("From", _header(self.sender)),
            ("To", _header(message.recipient)),
            ("Subject", subject),
            ("Date", formatdate(usegmt=True)),
            # Stable across retries, so a mailbox can drop the rare duplicate of a crash mid-send.
            ("Message-ID", f"<{hashlib.sha256(message.key.encode()).hexdigest()[:32]}@hbdns>"),
            ("MIME-Version", "1.0"),
            ("Content-Type", "text/plain; charset=utf-8"),
            ("Content-Transfer-Encoding", encoding),
            ("X-Hbdns-Event", _header(message.event_type)),
            ("X-Hbdns-Account", _header(message.fqdn)),
            ("X-Hbdns-Delivery", _header(message.key)),
        ]
        text = "".join(f"{k}: {v}\r\n" for k, v in headers) + "\r\n" + payload.replace("\n", "\r\n")
        return text.encode("utf-8")

    def notify(self, message: Message) -> None:
        mail = self.build(message)
        if not message.recipient.isascii():
            raise TransportError(f"e-mail address {message.recipient!r} is not ASCII", permanent=True)
        for attempt in (1, 2):
            smtp = getattr(self._local, "smtp", None)
            reused = smtp is not None
            try:
                if smtp is None:
                    smtp = self._local.smtp = self._connect()
                smtp.sendmail(self.sender, [message.recipient], mail)
                return
            except (smtplib.SMTPRecipientsRefused, smtplib.SMTPSenderRefused, smtplib.SMTPDataError) as exc:
                try:
                    if smtp is not None:
                        smtp.rset()  # the connection is fine, only this message was refused
                except Exception:
                    self._drop()
                raise _smtp_error(exc) from None
            except smtplib.SMTPServerDisconnected as exc:
                self._drop()
                if reused and attempt == 1:
                    continue  # a kept-alive connection the server closed meanwhile: reconnect once
                raise _smtp_error(exc) from None
            except smtplib.SMTPException as exc:  # subclasses OSError: must come before it
                self._drop()
                raise _smtp_error(exc) from None
            except OSError as exc:
                self._drop()
                if reused and attempt == 1:
                    continue
                raise _smtp_error(exc) from None

    def close(self) -> None:
        with self._lock:
            conns, self._all = self._all, []
        for smtp in conns:
            try:
                smtp.quit()
            except Exception:
                try:
                    smtp.close()
                except Exception:
                    pass


# --- HTTP (SMS gateway, webhooks) -----------------------------------------------------------------


def _http_error(resp: requests.Response, what: str) -> TransportError | None:
    code = resp.status_code
    if 200 <= code < 300:
        return None
    reason = f"{what} answered HTTP {code}: {resp.text[:200]!r}"
    if 300 <= code < 400:
        return TransportError(f"{what} answered HTTP {code} (redirects are not followed)", permanent=True)
    return TransportError(reason, permanent=400 <= code < 500 and code not in (408, 425, 429))


class _HttpTransport(Transport):
    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._local = threading.local()

    def _session(self) -> requests.Session:
        s = getattr(self._local, "session", None)
        if s is None:
            s = self._local.session = requests.Session()
        return s

    def _request(self, what: str, method: str, url: str, **kw: Any) -> None:
        try:
            resp = self._session().request(method, url, timeout=self.timeout, allow_redirects=False, **kw)
        except requests.RequestException as exc:
            raise TransportError(f"{what}: {type(exc).__name__}: {exc}") from None
        err = _http_error(resp, what)
        if err is not None:
            raise err


def _fill(value: Any, to: str, text: str) -> Any:
    """Put ``to`` and ``text`` into every string of a parsed template (so JSON escaping stays right)."""
    if isinstance(value, str):
        return value.replace("{to}", to).replace("{text}", text)
    if isinstance(value, dict):
        return {k: _fill(v, to, text) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, to, text) for v in value]
    return value


class SmsTransport(_HttpTransport):
    """An HTTP SMS gateway: URL, method, JSON or form body from a template with {to} and {text}.

    The template is a JSON object (or, for form bodies, ``a={to}&b={text}``); placeholders are filled
    in after parsing, so a text with quotes or ampersands cannot break the body. GET sends the fields
    as query parameters.
    """

    channel = SMS

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings.http_timeout)
        self.url = settings.sms_url
        self.method = settings.sms_method.upper()
        self.format = settings.sms_format
        template = settings.sms_body.strip()
        try:
            parsed: Any = json.loads(template)
            if not isinstance(parsed, dict):
                raise ValueError
        except ValueError:
            if self.format == "json":
                raise ValueError("HBDNS_SMS_BODY must be a JSON object for HBDNS_SMS_FORMAT=json") from None
            parsed = dict(parse_qsl(template, keep_blank_values=True))
        self.template: dict[str, Any] = parsed
        self.auth: tuple[str, str] | None = None
        self.headers: dict[str, str] = {}
        if settings.sms_auth == "basic":
            self.auth = (settings.sms_user, settings.sms_password)
        elif settings.sms_auth == "bearer":
            self.headers["Authorization"] = f"Bearer {settings.sms_token}"

    def notify(self, message: Message) -> None:
        fields = _fill(self.template, message.recipient, message.text)
        kw: dict[str, Any] = {"headers": self.headers, "auth": self.auth}
        if self.method == "GET":
            kw["params"] = {k: v if isinstance(v, str) else json.dumps(v) for k, v in fields.items()}
        elif self.format == "json":
            kw["json"] = fields
        else:
            kw["data"] = {k: v if isinstance(v, str) else json.dumps(v) for k, v in fields.items()}
        self._request("sms gateway", self.method, self.url, **kw)


def sign(secret: str, body: bytes) -> str:
    """The ``X-Hbdns-Signature`` value: ``sha256=`` + hex HMAC-SHA256 of the raw body."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class WebhookTransport(_HttpTransport):
    """POST the event as JSON to the account's URL, signed with HBDNS_WEBHOOK_SECRET when set."""

    channel = WEBHOOK

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings.http_timeout)
        self._secret = settings.webhook_secret

    def notify(self, message: Message) -> None:
        body = message.body.encode()
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "hbdns-notifier",
            "X-Hbdns-Event": message.event_type,
            "X-Hbdns-Delivery": message.key,  # stable across retries: receivers can drop duplicates
        }
        if self._secret:
            headers[SIGNATURE_HEADER] = sign(self._secret, body)
        self._request("webhook", "POST", message.recipient, data=body, headers=headers)


def build_transports(settings: Settings) -> dict[str, Transport]:
    """Real transports where configured, the log elsewhere (``make run`` needs no SMTP or gateway)."""
    out: dict[str, Transport] = {
        EMAIL: EmailTransport(settings) if settings.smtp_host else LogTransport(EMAIL),
        SMS: SmsTransport(settings) if settings.sms_url else LogTransport(SMS),
        WEBHOOK: WebhookTransport(settings),
    }
    return out
