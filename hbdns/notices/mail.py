"""The e-mail of a notification, built with ``email.message.EmailMessage`` (no hand-made RFC 5322).

Headers: ``From`` (the operator's name and ``HBDNS_SMTP_FROM``), ``To``, ``Subject`` (RFC 2047
UTF-8 words where it is not ASCII), ``Date``, a ``Message-ID`` derived from the message's
idempotency key (a resent message has the same id, so mail clients drop the copy),
``Auto-Submitted: auto-generated`` (RFC 3834: vacation responders stay quiet) and
``X-Auto-Response-Suppress`` (the same for Exchange), ``List-Unsubscribe`` with the customer's
preference page on the status page (only when ``HBDNS_STATUS_PUBLIC_URL`` is set; no one-click
``List-Unsubscribe-Post``: that needs an unauthenticated endpoint on the status page),
``Content-Language`` and hbdns' own ``X-Hbdns-Event``, ``X-Hbdns-Account``, ``X-Hbdns-Delivery``.
The text is quoted-printable UTF-8 when it is not ASCII (7-bit safe: no relay needs 8BITMIME), and
with an HTML body the message is multipart/alternative with a boundary derived from the key too.

Composing is the notifier's largest cost per e-mail, so :data:`POLICY` is the standard SMTP policy
with two shortcuts the ``email`` package provides for: a header registry that makes each header
class once (the stock one builds a new class for every header it parses), and header values that
are plain ASCII (dates, ids, keys, an ASCII address or subject) stored as they are instead of parsed
and refolded; the bytes are the same (docs/notifications.md has the figures).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from email.headerregistry import Address, BaseHeader, HeaderRegistry
from email.message import EmailMessage
from email.policy import EmailPolicy
from email.utils import format_datetime, parseaddr
from functools import lru_cache
from typing import Any

from hbdns.config import Settings

# headers kept as they are when their value is plain ASCII on one line (an address, a subject or a
# name that is not ASCII is parsed, and encoded as RFC 2047 words, as usual)
_PLAIN = frozenset(
    {"date", "message-id", "auto-submitted", "x-auto-response-suppress", "list-unsubscribe", "content-language"}
    | {"x-hbdns-event", "x-hbdns-account", "x-hbdns-delivery", "to", "subject", "mime-version"}
    | {"content-transfer-encoding"}
)


class _Registry(HeaderRegistry):
    """The standard registry, making each header's class once."""

    def __init__(self) -> None:
        super().__init__()
        self._made: dict[str, type[BaseHeader]] = {}

    def __getitem__(self, name: str) -> type[BaseHeader]:
        key = name.lower()
        if key not in self._made:
            self._made[key] = super().__getitem__(name)
        return self._made[key]


class _Policy(EmailPolicy):
    def header_store_parse(self, name: str, value: Any) -> tuple[str, Any]:
        plain = isinstance(value, str) and value.isascii() and value != "" and value == " ".join(value.split())
        if plain and name.lower() in _PLAIN:
            return (name, value)  # written as it is (folded like any header if it were too long)
        return super().header_store_parse(name, value)


# CRLF line ends, headers folded at 78, non-ASCII as RFC 2047 words: email.policy.SMTP, made faster
POLICY = _Policy(linesep="\r\n", header_factory=_Registry())


@lru_cache(maxsize=64)
def _from(name: str, address: str) -> BaseHeader:
    """The From header, parsed once per sender."""
    header: BaseHeader = POLICY.header_factory("From", Address(display_name=name, addr_spec=address))
    return header


@dataclass(frozen=True)
class Sender:
    address: str  # the envelope sender and the From address
    name: str  # the From display name
    unsubscribe: str = ""  # List-Unsubscribe URL; "" = no header

    @property
    def domain(self) -> str:
        return self.address.rpartition("@")[2] or "hbdns.invalid"

    @classmethod
    def from_settings(cls, settings: Settings) -> Sender:
        """``HBDNS_SMTP_FROM`` may be a bare address or ``Name <address>``; a bare one gets the operator's name."""
        name, address = parseaddr(settings.smtp_from)
        base = settings.status_public_url
        return cls(
            address=address or settings.smtp_from,
            name=name or settings.operator_name,
            unsubscribe=f"{base}/account#prefs" if base else "",
        )


def message_id(key: str, domain: str) -> str:
    """``<32 hex digits of SHA-256(key)@domain>``: the same message always has the same id."""
    return f"<{hashlib.sha256(key.encode()).hexdigest()[:32]}@{domain}>"


def _header(value: str) -> str:
    """A header value on one line (no header injection through a subject or a name)."""
    return " ".join(value.split())


def _cte(text: str) -> str:
    return "7bit" if text.isascii() and all(len(line) <= 998 for line in text.splitlines()) else "quoted-printable"


def compose(
    sender: Sender,
    *,
    recipient: str,
    subject: str,
    text: str,
    html: str = "",
    key: str,
    lang: str = "",
    event_type: str = "",
    fqdn: str = "",
    date: datetime | None = None,
) -> EmailMessage:
    """The message as it goes to the relay (``bytes(message)`` or ``message.as_bytes()``)."""
    msg = EmailMessage(policy=POLICY)
    msg["From"] = _from(_header(sender.name), sender.address)
    msg["To"] = recipient
    msg["Subject"] = _header(subject)
    msg["Date"] = format_datetime(date or datetime.now(UTC))
    msg["Message-ID"] = message_id(key, sender.domain)
    msg["Auto-Submitted"] = "auto-generated"
    msg["X-Auto-Response-Suppress"] = "All"
    if sender.unsubscribe:
        msg["List-Unsubscribe"] = f"<{sender.unsubscribe}>"
    msg["X-Hbdns-Event"] = _header(event_type)
    msg["X-Hbdns-Account"] = _header(fqdn)
    msg["X-Hbdns-Delivery"] = _header(key)
    msg.set_content(text, charset="utf-8", cte=_cte(text))
    if html:
        msg.add_alternative(html, subtype="html", charset="utf-8", cte=_cte(html))
        for part in msg.iter_parts():
            del part["MIME-Version"]  # the top level's is enough (RFC 2045); the email package repeats it
        # "=_" never occurs in quoted-printable text, and a digest of the key not in any other
        msg.set_boundary(f"=_hbdns_{hashlib.sha256(key.encode()).hexdigest()[:24]}")
    if lang:  # last: set_content drops and add_alternative moves the Content-* headers
        msg["Content-Language"] = lang
    return msg
