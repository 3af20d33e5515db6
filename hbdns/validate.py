"""Input validation shared by the CLI, the update API and the model: one clear reason per failure."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")

_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
_E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")
_EMAIL_LOCAL = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}$")


class ValidationError(ValueError):
    """Input that is refused; ``str()`` is a one-line reason fit for a user."""


class FieldError(ValidationError):
    """A refusal about one field of a request. ``field`` is its path as the admin API's JSON spells
    it ("fqdn", "emails.1", "prefs.quiet_hours"); the CLI prints only the reason, the API both."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(reason)
        self.field = field
        self.reason = reason


class Invalid(ValidationError):
    """Every field refusal of one request; ``str()`` is the first one's reason (what the CLI prints)."""

    def __init__(self, errors: list[FieldError]) -> None:
        super().__init__(str(errors[0]) if errors else "invalid input")
        self.errors = errors


class Fields:
    """Collects :class:`FieldError` while a request is checked field by field, so the API reports
    every bad field at once; :meth:`done` raises them together."""

    def __init__(self) -> None:
        self.errors: list[FieldError] = []

    def check(self, field: str, func: Callable[[T], R], value: T) -> R | None:
        """``func(value)``, or None after noting its refusal under ``field``."""
        try:
            return func(value)
        except FieldError as exc:
            self.errors.append(exc)
        except ValidationError as exc:
            self.errors.append(FieldError(field, str(exc)))
        return None

    def add(self, field: str, reason: str) -> None:
        self.errors.append(FieldError(field, reason))

    def done(self) -> None:
        if self.errors:
            raise Invalid(self.errors)


def hostname(value: str) -> str:
    """Normalise a DNS name (lowercase, no trailing dot) or raise: LDH labels, <= 253 chars."""
    name = value.strip().lower()
    if name.endswith("."):
        name = name[:-1]
    if not name:
        raise ValidationError("hostname is empty")
    if len(name) > 253:
        raise ValidationError(f"hostname too long ({len(name)} > 253 characters)")
    for label in name.split("."):
        if not _LABEL.match(label):
            shown = name if len(name) <= 80 else name[:77] + "..."
            raise ValidationError(f"hostname {shown!r} is not a valid LDH name")
    return name


def ipv4(value: str) -> str:
    try:
        return str(ipaddress.IPv4Address(value.strip()))
    except ValueError:
        raise ValidationError(f"{value[:60]!r} is not an IPv4 address") from None


def ipv6(value: str) -> str:
    try:
        return str(ipaddress.IPv6Address(value.strip()))
    except ValueError:
        raise ValidationError(f"{value[:60]!r} is not an IPv6 address") from None


def ip_any(value: str) -> tuple[int, str]:
    """(4 or 6, normalised address) or raise."""
    try:
        addr = ipaddress.ip_address(value.strip())
    except ValueError:
        raise ValidationError(f"{value[:60]!r} is not an IP address") from None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return 4, str(addr.ipv4_mapped)
    return addr.version, str(addr)


# What an address is when it is not public unicast, from IANA's IPv4 and IPv6 Special-Purpose Address
# Registries (plus multicast, and for IPv6 everything outside 2000::/3, the only block IANA allocates
# for global unicast). The registry's "globally reachable" anycast entries (AS112, AMT, PCP/TURN) are
# services, never a customer's host, so they are listed too. Most specific first.
_Net = ipaddress.IPv4Network | ipaddress.IPv6Network
_V4_CLASSES: tuple[tuple[_Net, str], ...] = tuple(
    (ipaddress.ip_network(net), cls)
    for net, cls in (
        ("0.0.0.0/32", "unspecified"),
        ("0.0.0.0/8", "this network"),
        ("10.0.0.0/8", "private"),
        ("100.64.0.0/10", "shared (CGNAT)"),
        ("127.0.0.0/8", "loopback"),
        ("169.254.0.0/16", "link-local"),
        ("172.16.0.0/12", "private"),
        ("192.0.0.0/24", "IETF protocol assignment"),  # DS-Lite, PCP/TURN anycast, NAT64 discovery
        ("192.0.2.0/24", "documentation"),
        ("192.31.196.0/24", "anycast service"),  # AS112
        ("192.52.193.0/24", "anycast service"),  # AMT
        ("192.88.99.0/24", "6to4 relay anycast (deprecated)"),
        ("192.168.0.0/16", "private"),
        ("192.175.48.0/24", "anycast service"),  # AS112 direct delegation
        ("198.18.0.0/15", "benchmarking"),
        ("198.51.100.0/24", "documentation"),
        ("203.0.113.0/24", "documentation"),
        ("224.0.0.0/4", "multicast"),
        ("255.255.255.255/32", "broadcast"),
        ("240.0.0.0/4", "reserved"),
    )
)
_V6_CLASSES: tuple[tuple[_Net, str], ...] = tuple(
    (ipaddress.ip_network(net), cls)
    for net, cls in (
        ("::/128", "unspecified"),
        ("::1/128", "loopback"),
        ("::/96", "IPv4-compatible (deprecated)"),
        ("64:ff9b::/96", "IPv4/IPv6 translation"),
        ("64:ff9b:1::/48", "IPv4/IPv6 translation"),
        ("100::/64", "discard-only"),
        ("100:0:0:1::/64", "reserved"),  # dummy prefix (RFC 9780)
        ("2001::/32", "Teredo"),
        ("2001:2::/48", "benchmarking"),
        ("2001::/23", "IETF protocol assignment"),  # ORCHID, AMT, AS112, PCP/TURN anycast, ...
        ("2001:db8::/32", "documentation"),
        ("2002::/16", "6to4"),
        ("2620:4f:8000::/48", "anycast service"),  # AS112 direct delegation
        ("3fff::/20", "documentation"),
        ("fc00::/7", "private"),  # unique local
        ("fe80::/10", "link-local"),
        ("fec0::/10", "site-local (deprecated)"),
        ("ff00::/8", "multicast"),
    )
)
_V6_GLOBAL_UNICAST = ipaddress.IPv6Network("2000::/3")


def address_class(value: str) -> str:
    """``""`` for a public unicast address, else what it is instead ("loopback", "private",
    "documentation", ...: the IANA special-purpose class). Our own table rather than the stdlib's
    ``is_global``, whose answers change between Python versions and which calls 6to4 and NAT64 forms
    of private addresses, ``fec0::/10`` and ``3fff::/20`` global. IPv4-mapped IPv6 is classed as its
    IPv4 address; a scoped IPv6 address (``%eth0``) is "scoped"."""
    addr = ipaddress.ip_address(value.strip())
    if isinstance(addr, ipaddress.IPv6Address):
        if addr.scope_id:
            return "scoped"
        if addr.ipv4_mapped is not None:
            addr = addr.ipv4_mapped
    if isinstance(addr, ipaddress.IPv4Address):
        return next((cls for net, cls in _V4_CLASSES if addr in net), "")
    found = next((cls for net, cls in _V6_CLASSES if addr in net), "")
    return found or ("" if addr in _V6_GLOBAL_UNICAST else "reserved")


def is_local_part(text: str) -> bool:
    """An e-mail address's local part as hbdns takes one (dot-atom, at most 64 characters)."""
    return 0 < len(text) <= 64 and bool(_EMAIL_LOCAL.match(text)) and ".." not in text and not text.startswith(".")


def email(value: str) -> str:
    text = value.strip()
    local, sep, domain = text.rpartition("@")
    if not sep or not _EMAIL_LOCAL.match(local) or ".." in local:
        raise ValidationError(f"{text[:80]!r} is not an e-mail address")
    try:
        domain = hostname(domain)
    except ValidationError:
        raise ValidationError(f"{text[:80]!r} is not an e-mail address") from None
    if "." not in domain:
        raise ValidationError(f"{text[:80]!r} is not an e-mail address")
    return f"{local}@{domain}"


def phone(value: str) -> str:
    text = value.strip().replace(" ", "")
    if not _E164.match(text):
        raise ValidationError(f"{value[:40]!r} is not an E.164 phone number (+<country><number>)")
    return text


def url(value: str) -> str:
    text = value.strip()
    if not re.match(r"^https?://[^\s/]+(/\S*)?$", text):
        raise ValidationError(f"{text[:80]!r} is not an http(s) URL")
    return text


def in_zone(name: str, apex: str) -> bool:
    return name == apex or name.endswith("." + apex)


MIN_PASSWORD = 8
MAX_PASSWORD = 256  # what the update API reads of a password (update_api.parsing.MAX_PASSWORD)


def password(value: str) -> str:
    """An update password an operator or customer chose: 8 to 256 characters, no line breaks."""
    if len(value) < MIN_PASSWORD:
        raise ValidationError(f"password must have at least {MIN_PASSWORD} characters")
    if len(value) > MAX_PASSWORD:
        raise ValidationError(f"password must have at most {MAX_PASSWORD} characters")
    if "\n" in value or "\r" in value:
        raise ValidationError("password must be one line")
    return value
