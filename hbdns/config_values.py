"""The parsers of setting values (:mod:`hbdns.config`): each takes the environment's string and
returns the typed value or raises ``ValueError`` with the reason, which :func:`hbdns.config.load`
turns into a :class:`~hbdns.config.ConfigError` naming the variable."""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Callable

from hbdns import connection


def boolean(raw: str) -> bool:
    low = raw.strip().lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off", ""):
        return False
    raise ValueError("expected one of 1/0, true/false, yes/no, on/off")


def port(raw: str) -> int:
    value = int(raw)
    if not 0 <= value <= 65535:
        raise ValueError("port must be 0..65535")
    return value


def positive_int(raw: str) -> int:
    value = int(raw)
    if value <= 0:
        raise ValueError("must be a positive integer")
    return value


def count(raw: str) -> int:
    value = int(raw)
    if value < 0:
        raise ValueError("must be 0 or a positive integer")
    return value


def positive_float(raw: str) -> float:
    value = float(raw)
    if not value > 0:
        raise ValueError("must be a positive number")
    return value


def negative_ttl(raw: str) -> int:
    from hbdns.model import MAX_NEGATIVE_TTL

    value = positive_int(raw)
    if value > MAX_NEGATIVE_TTL:
        raise ValueError(f"must be at most {MAX_NEGATIVE_TTL} seconds")
    return value


def word_list(raw: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in raw.split(",") if item.strip())


def subset(*allowed: str) -> Callable[[str], tuple[str, ...]]:
    """A non-empty comma list of ``allowed`` names (case and repeats ignored)."""

    def parse(raw: str) -> tuple[str, ...]:
        items = tuple(dict.fromkeys(item.lower() for item in word_list(raw)))
        bad = [item for item in items if item not in allowed]
        if bad or not items:
            raise ValueError(f"expected a comma list of {', '.join(allowed)}")
        return items

    return parse


def subset_or_none(*allowed: str) -> Callable[[str], tuple[str, ...]]:
    """A comma list of ``allowed`` names; empty (or ``none``) turns the feature off."""
    parse = subset(*allowed)

    def parse_or_none(raw: str) -> tuple[str, ...]:
        return () if raw.strip().lower() in ("", "none") else parse(raw)

    return parse_or_none


def non_negative_float(raw: str) -> float:
    value = float(raw)
    if not value >= 0:
        raise ValueError("must be a number >= 0")
    return value


def share(raw: str) -> float:
    value = float(raw)
    if not 0 < value <= 1:
        raise ValueError("must be a share in (0, 1], e.g. 0.25")
    return value


def http_url_or_empty(raw: str) -> str:
    value = raw.strip()
    if value and not value.startswith(("https://", "http://")):
        raise ValueError("expected an http(s) URL")
    return value


def networks(raw: str) -> tuple[str, ...]:
    items = word_list(raw)
    for item in items:
        ipaddress.ip_network(item, strict=False)
    return items


def ipv4(raw: str) -> str:
    return str(ipaddress.IPv4Address(raw.strip()))


def ipv6(raw: str) -> str:
    return str(ipaddress.IPv6Address(raw.strip()))


def addresses(raw: str) -> tuple[str, ...]:
    return tuple(str(ipaddress.ip_address(item)) for item in word_list(raw))


def address_or_empty(raw: str) -> str:
    return str(ipaddress.ip_address(raw.strip())) if raw.strip() else ""


def hostname(raw: str) -> str:
    from hbdns import validate

    return validate.hostname(raw) if raw.strip() else ""


def flush_targets(raw: str) -> tuple[str, ...]:
    """``host[:port]``, ``[v6]:port`` or ``postqueue[:/config/dir]`` items, kept as normalised text."""
    from hbdns.etrn import parse_targets

    return tuple(str(t) for t in parse_targets(word_list(raw)))


def metrics_addr(raw: str) -> str:
    """A service's metrics address, ``host:port`` or ``[v6]:port`` (an IP, not a name), or empty (off)."""
    from hbdns.metrics import parse_addr

    where = parse_addr(raw)
    if where is None:
        return ""
    host, port = where
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def choice(*allowed: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        value = raw.strip().lower()
        if value not in allowed:
            raise ValueError(f"expected one of {', '.join(allowed)}")
        return value

    return parse


def json_object(raw: str) -> str:
    """A JSON object, kept as its text so the settings value stays immutable."""
    if not raw.strip():
        return "{}"
    value = json.loads(raw)
    if not isinstance(value, dict):
        raise ValueError("expected a JSON object")
    return json.dumps(value, sort_keys=True)


def base_url(raw: str) -> str:
    """An http(s) base URL without a trailing slash, or empty."""
    value = raw.strip().rstrip("/")
    if value and not (value.startswith(("https://", "http://")) and len(value.split("/")) == 3):
        raise ValueError("expected a base URL like https://status.example.net (no path)")
    return value


def url_or_empty(raw: str) -> str:
    value = raw.strip()
    if value and not value.startswith(("https://", "http://", "mailto:")):
        raise ValueError("expected an https://, http:// or mailto: URL, or empty")
    return value


def redis_url(raw: str) -> str:
    return connection.check(raw.strip())


def optional_redis_url(raw: str) -> str:
    return redis_url(raw) if raw.strip() else ""


def wait_replicas(raw: str) -> int | None:
    """``auto`` (None: 1 with a Sentinel URL, 0 otherwise) or a number of replicas >= 0."""
    if raw.strip().lower() == "auto":
        return None
    value = int(raw)
    if value < 0:
        raise ValueError("expected auto or a number >= 0")
    return value


def redacted(raw: str) -> str:
    return repr(connection.redact(raw))
