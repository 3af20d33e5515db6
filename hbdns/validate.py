"""Input validation shared by the CLI, the update API and the model: one clear reason per failure."""

from __future__ import annotations

import ipaddress
import re

_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
_E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")
_EMAIL_LOCAL = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}$")


class ValidationError(ValueError):
    """Input that is refused; ``str()`` is a one-line reason fit for a user."""


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
