"""Connection admission for the neutral host: a global cap and a cap per source.

The neutral address is public and answers for every offline customer at once, so one client must
not be able to hold all its connections (slowloris). IPv6 sources count per /64 (one customer's
LAN, and what an attacker gets cheaply), IPv4 per address. Pure bookkeeping, no sockets.
"""

from __future__ import annotations

import ipaddress


def source_key(addr: str) -> str:
    """IPv4 address, IPv4-mapped IPv6 as its IPv4 address, other IPv6 as its /64."""
    try:
        ip = ipaddress.ip_address(addr.split("%", 1)[0])
    except ValueError:
        return addr
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


class Admission:
    """Counts open connections; :meth:`admit` says whether one more may be served."""

    def __init__(self, max_total: int, per_source: int) -> None:
        self.max_total = max_total
        self.per_source = per_source
        self.total = 0
        self._by_source: dict[str, int] = {}

    def admit(self, key: str) -> bool:
        if self.total >= self.max_total or self._by_source.get(key, 0) >= self.per_source:
            return False
        self.total += 1
        self._by_source[key] = self._by_source.get(key, 0) + 1
        return True

    def release(self, key: str) -> None:
        left = self._by_source.get(key, 0) - 1
        if left > 0:
            self._by_source[key] = left
        else:
            self._by_source.pop(key, None)
        self.total = max(0, self.total - 1)
