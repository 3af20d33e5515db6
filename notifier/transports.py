"""Channels behind one ``notify(message)``; each raises :class:`TransportError` saying what a retry can do.

Retries, backoff, holds, idempotency and dead letters live in :mod:`notifier.dispatch`, not here: a
transport makes exactly one attempt and classifies its failure (the table is in docs/notifications.md):

- **permanent**: this message will never succeed (SMTP 5xx to RCPT or DATA: an unknown recipient, a
  refused text; HTTP 4xx from the SMS gateway for this message, any 4xx or redirect from a
  customer's webhook). Only these are dead-lettered at once.
- **destination**: the receiver fails for every message now (connection refused or timed out, DNS,
  TLS, SMTP 421 or a refused greeting/HELO/sender/login, HTTP 5xx/408/425/429 and, from our own
  SMS gateway, 401/403/407 and redirects): the channel is held and probed with backoff
  instead of every queued message trying on its own.
- **config**: a destination failure that looks like our configuration (login, TLS, sender, the
  gateway's credentials or URL): retried the same way, logged as an error for the operator.
- anything else (SMTP 4xx to RCPT or DATA, e.g. greylisting or a full mailbox): retried per message.

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
import time
from abc import ABC, abstractmethod
from email.header import Header
from email.utils import formatdate, parsedate_to_datetime
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import requests

from hbdns.config import Settings
from notifier.messages import EMAIL, SMS, WEBHOOK, Message

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Hbdns-Signature"


class TransportError(Exception):
    """One attempt failed; the flags say what a retry can do (see the module docstring)."""

    def __init__(
        self,
        reason: str,
        *,
        permanent: bool = False,
        destination: bool = False,
        config: bool = False,
        retry_after: float = 0.0,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.permanent = permanent
        self.destination = destination or config
        self.config = config
        self.retry_after = retry_after  # seconds the receiver asked us to wait (HTTP Retry-After), 0 = none


class Transport(ABC):
    channel = ""
    timeout = 10.0  # seconds one attempt may take at most (bounds how long a probe of a held channel runs)

    @abstractmethod
    def notify(self, message: Message) -> None:
        """Deliver one message or raise :class:`TransportError`."""

    def destination(self, message: Message) -> str:
        """Which receiver ``message`` goes to: a failing one is held as a whole (one SMTP relay, one SMS
        gateway; a webhook's origin)."""
        return self.channel

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


def _smtp_text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def _smtp_error(exc: BaseException) -> TransportError:
    """Classify an smtplib/socket failure (module docstring): only a 5xx to RCPT or DATA is permanent."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        codes = [code for code, _ in exc.recipients.values()]
        detail = "; ".join(f"{rcpt}: {code} {_smtp_text(msg)}" for rcpt, (code, msg) in exc.recipients.items())
        return TransportError(
            f"recipient refused: {detail}",
            permanent=all(c >= 500 for c in codes),
            destination=any(c == 421 for c in codes),
        )
    if isinstance(exc, smtplib.SMTPDataError):
        text = f"message refused: {exc.smtp_code} {_smtp_text(exc.smtp_error)}"
        return TransportError(text, permanent=exc.smtp_code >= 500, destination=exc.smtp_code == 421)
    if isinstance(exc, smtplib.SMTPSenderRefused):  # MAIL FROM refused (or 530: STARTTLS/login required)
        text = f"sender {exc.sender} refused: {exc.smtp_code} {_smtp_text(exc.smtp_error)}"
        return TransportError(text, destination=True, config=exc.smtp_code >= 500)
    if isinstance(exc, smtplib.SMTPAuthenticationError):
        return TransportError(f"smtp login refused: {exc.smtp_code} {_smtp_text(exc.smtp_error)}", config=True)
    if isinstance(exc, smtplib.SMTPNotSupportedError):
        return TransportError(f"smtp: {exc}", config=True)
    if isinstance(exc, smtplib.SMTPResponseException):  # greeting (SMTPConnectError), HELO, 421 anywhere
        return TransportError(f"smtp {exc.smtp_code} {_smtp_text(exc.smtp_error)}", destination=True)
    if isinstance(exc, ssl.SSLError):  # before OSError: SSLError subclasses it
        return TransportError(f"smtp tls: {type(exc).__name__}: {exc}", config=True)
    return TransportError(f"smtp: {type(exc).__name__}: {exc}", destination=True)


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


def retry_after(value: str | None, now: float | None = None) -> float:
    """Seconds from an HTTP ``Retry-After`` value (delta seconds or an HTTP date); 0 when absent or unreadable."""
    if not value:
        return 0.0
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        return 0.0
    return max(0.0, when - (time.time() if now is None else now))


def _http_error(resp: requests.Response, what: str, *, ours: bool) -> TransportError | None:
    """``ours``: the provider's own gateway (a 401/403/407 or a redirect is our configuration, not the
    message); otherwise the customer's receiver, whose 4xx and redirects are permanent for the message."""
    code = resp.status_code
    if 200 <= code < 300:
        return None
    if 300 <= code < 400:
        reason = f"{what} answered HTTP {code} to {resp.headers.get('Location', '?')} (redirects are not followed)"
        return TransportError(reason, config=ours, permanent=not ours)
    reason = f"{what} answered HTTP {code}: {resp.text[:200]!r}"
    if code >= 500 or code in (408, 425, 429):
        return TransportError(reason, destination=True, retry_after=retry_after(resp.headers.get("Retry-After")))
    if ours and code in (401, 403, 407):
        return TransportError(reason, config=True)
    return TransportError(reason, permanent=True)


class _HttpTransport(Transport):
    ours = True  # the provider's own receiver (see _http_error)

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
        except requests.exceptions.SSLError as exc:
            raise TransportError(f"{what} tls: {exc}", destination=True, config=self.ours) from None
        except requests.RequestException as exc:  # connection refused, timeout, DNS, a broken reply
            raise TransportError(f"{what}: {type(exc).__name__}: {exc}", destination=True) from None
        err = _http_error(resp, what, ours=self.ours)
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
    ours = False

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings.http_timeout)
        self._secret = settings.webhook_secret

    def destination(self, message: Message) -> str:
        parts = urlsplit(message.recipient)
        return f"{WEBHOOK}:{parts.scheme}://{parts.netloc.rpartition('@')[2].lower()}"

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
