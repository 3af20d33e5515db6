"""Source addresses: how a datagram's sender becomes the address stored in DNS, and the per-source limit."""

from __future__ import annotations

from heartbeat_listener.batch import Address


def source_ip(addr: Address) -> tuple[str, bool]:
    """The source address as stored in DNS, and whether it is IPv6 (IPv4-mapped IPv6 counts as IPv4)."""
    host = addr[0]
    if ":" not in host:
        return host, False
    if host.startswith("::ffff:") and "." in host:
        return host[7:], False
    pct = host.find("%")
    return (host[:pct] if pct >= 0 else host), True


class SourceLimiter:
    """Token bucket per source address, so one flooding address can't starve the others.

    ``now`` is passed in (monotonic seconds) so tests control time. The table is bounded: when it is
    full, buckets that refilled completely are forgotten; if that is not enough it starts afresh
    (a flood from that many distinct sources is not what a per-source limit is for).
    """

    def __init__(self, rate: float, burst: int, max_sources: int = 200_000) -> None:
        self.rate = float(rate)
        self.burst = float(burst)
        self.max_sources = max_sources
        self._buckets: dict[str, list[float]] = {}

    def __len__(self) -> int:
        return len(self._buckets)

    def allow(self, ip: str, now: float) -> bool:
        b = self._buckets.get(ip)
        if b is None:
            if len(self._buckets) >= self.max_sources:
                self.prune(now)
            self._buckets[ip] = [self.burst - 1.0, now]
            return True
        tokens = b[0] + (now - b[1]) * self.rate
        if tokens > self.burst:
            tokens = self.burst
        b[1] = now
        if tokens >= 1.0:
            b[0] = tokens - 1.0
            return True
        b[0] = tokens
        return False

    def prune(self, now: float) -> None:
        """Forget sources whose bucket is full again (they are indistinguishable from new ones)."""
        full = [ip for ip, (tokens, last) in self._buckets.items() if tokens + (now - last) * self.rate >= self.burst]
        for ip in full:
            del self._buckets[ip]
        if len(self._buckets) >= self.max_sources:
            self._buckets.clear()
