"""E-mail through an SMTP relay: smtplib, one kept-alive connection per sending thread, and the
classification of its failures (:mod:`notifier.channel`: only a 5xx to RCPT or DATA is permanent).
The message itself is :func:`hbdns.notices.mail.compose`'s, the same ``hbdns notify preview`` prints."""

from __future__ import annotations

import smtplib
import ssl
import threading
from datetime import datetime
from typing import Any

from hbdns.config import Settings
from hbdns.notices.mail import Sender, compose
from notifier.channel import Transport, TransportError
from notifier.messages import EMAIL, Message


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
        self.from_ = Sender.from_settings(settings)
        self.sender = self.from_.address  # the envelope sender (HBDNS_SMTP_FROM may carry a name too)
        self.html = settings.email_html
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

    def build(self, message: Message, date: datetime | None = None) -> bytes:
        """The message as it goes to the relay (``date``: its Date header, default now)."""
        mail = compose(
            self.from_,
            recipient=message.recipient,
            subject=message.subject,
            text=message.text,
            html=message.html if self.html else "",
            key=message.key,
            lang=message.lang,
            event_type=message.event_type,
            fqdn=message.fqdn,
            date=date,
        )
        return mail.as_bytes()

    def notify(self, message: Message) -> None:
        if not message.recipient.isascii():
            raise TransportError(f"e-mail address {message.recipient!r} is not ASCII", permanent=True)
        try:
            mail = self.build(message)
        except (ValueError, TypeError) as exc:  # an address or header the email package refuses
            raise TransportError(f"cannot compose the e-mail: {exc}", permanent=True) from None
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
