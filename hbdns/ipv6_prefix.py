"""A dynamic IPv6 prefix plus a fixed interface identifier: the address of a host behind a router.

Routers such as the FRITZ!Box get a new IPv6 prefix from the provider now and then and can send
it (``ip6lanprefix=2001:db8:1:2::/64``) but not the addresses of the hosts behind them. An
account with a fixed interface identifier (the lower 64 bits, RFC 4291 section 2.5.1: the host's
EUI-64 or a static suffix like ``::10``) gets AAAA = prefix + identifier. The result is then
judged like every other address an update sets (public unicast unless the zone allows others).
"""

from __future__ import annotations

import ipaddress

from hbdns import validate

_LOW64 = (1 << 64) - 1


def interface_id(value: str) -> str:
    """An interface identifier in IPv6 notation (``::1a2b:3c4d:5e6f:7081``), normalised; the upper
    64 bits must be zero and the identifier must not be (an all-zero identifier is the subnet-router
    anycast address of every prefix, RFC 4291 section 2.6.1)."""
    text = value.strip()
    try:
        addr = ipaddress.IPv6Address(text)
    except ValueError:
        raise validate.ValidationError(
            f"interface id {text[:60]!r} must be the lower 64 bits in IPv6 notation, e.g. ::1a2b:3c4d:5e6f:7081"
        ) from None
    n = int(addr)
    if n > _LOW64:
        low = ipaddress.IPv6Address(n & _LOW64)
        raise validate.ValidationError(f"interface id {addr} has bits in the upper 64 (the prefix's); give {low}")
    if n == 0:
        raise validate.ValidationError("interface id :: (all zero) is refused: it is no host's address")
    return str(addr)


def parse_prefix(value: str) -> ipaddress.IPv6Network:
    """``2001:db8:1:2::/64`` (a missing length means /64; host bits are dropped), or ValueError."""
    text = value.strip()
    if "/" not in text:
        text += "/64"
    try:
        net = ipaddress.IPv6Network(text, strict=False)
    except ValueError:
        raise ValueError(f"{value[:60]!r} is not an IPv6 prefix") from None
    if net.prefixlen > 64:
        raise ValueError(f"prefix {net} is longer than /64: no room for a 64-bit interface id")
    return net


def combine(prefix: str, iid: str) -> str:
    """The address ``prefix`` + interface id ``iid`` (both as stored/sent), or ValueError."""
    net = parse_prefix(prefix)
    return str(ipaddress.IPv6Address(int(net.network_address) | (int(ipaddress.IPv6Address(iid)) & _LOW64)))
