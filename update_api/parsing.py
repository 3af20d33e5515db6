"""Reading an update request: hostnames, addresses and the client's own address. Pure functions.

Decisions worth knowing:

- An update that names only one address family (``myip=<v4>``, ``myipv6=...``, ``preserve``) leaves
  the other alone, and keeps only the families it names alive (liveness is per family: an update
  naming only IPv4 lets a stale AAAA expire); the connection's address is used only when no address
  is named at all.
- Every address an update would publish, the connection's included, must be public unicast
  (:func:`hbdns.validate.address_class`); a zone may allow the others for labs
  (``allow_private``), except those no host can be reached at through DNS
  (:data:`NEVER_PUBLISHED`). Behind an untrusted proxy the source is loopback or private, so a
  misconfiguration answers ``badip`` instead of publishing 127.0.0.1.
- A malformed address is refused (``badip``, HE.net's code) instead of Dyn's "fall back to the source
  address": a typo must not publish a wrong address for a backup-MX customer.
- Proxy headers are believed only from ``HBDNS_UPDATE_TRUSTED_PROXIES``, and then only their
  right-most untrusted hop: the left part of ``X-Forwarded-For`` is whatever the client wrote.
- ``ip6lanprefix`` (FRITZ!Box) sets the IPv6 address of an account with a fixed interface id to
  prefix + id (:mod:`hbdns.ipv6_prefix`), in place of any IPv6 address in ``myip``/``myipv6``
  (that is the router's own); accounts without an interface id ignore it. The result is judged
  like any other address.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field

from hbdns import validate
from hbdns.ipv6_prefix import combine
from hbdns.model import Account

MAX_HOSTNAMES = 20  # Dyn: more is ``numhost``
MAX_USERNAME = 253
MAX_PASSWORD = 256
YES = ("yes", "true", "on", "1")

Networks = tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]

# Address classes refused even where a zone allows private addresses: nothing answers there.
NEVER_PUBLISHED = frozenset({"unspecified", "this network", "multicast", "broadcast", "link-local", "scoped"})


class BadIP(ValueError):
    """An address parameter that cannot be used; ``str()`` says why (logged, not sent)."""


@dataclass(frozen=True)
class UpdateRequest:
    """The parts of an HTTP request the protocol looks at (secrets only in ``password``)."""

    params: Mapping[str, str]
    username: str | None
    password: str = field(default="", repr=False)
    source: str | None = None  # the client's address after trusted-proxy handling
    user_agent: str = ""


@dataclass(frozen=True)
class Addresses:
    """The addresses an update sets (at most one per family)."""

    ipv4: str = ""  # "" = leave that family alone
    ipv6: str = ""
    from_source: bool = False  # no address was named: this is the connection's
    preserved: str = ""  # families named with ``preserve`` ("4", "6", "46"; "?" for a bare myip)

    def families(self) -> str:
        """The families this update keeps alive (the beat script's ``fams``): those it names, an
        address or ``preserve``; "" = let the script take those of the addresses (or, with none
        named at all, the stored ones)."""
        if not self.preserved or "?" in self.preserved:
            return ""
        named = set(self.preserved) | ({"4"} if self.ipv4 else set()) | ({"6"} if self.ipv6 else set())
        return "".join(sorted(named))

    def shown(self) -> str:
        return ",".join(a for a in (self.ipv4, self.ipv6) if a)

    def non_public(self) -> str:
        """``""`` when every address is public unicast, else why not (for the log), e.g.
        ``"10.0.0.1 is private"``; only a zone that allows private addresses takes these."""
        for addr in (self.ipv4, self.ipv6):
            cls = validate.address_class(addr) if addr else ""
            if cls and self.from_source:
                return f"no address given and the source {addr} is {cls} (untrusted proxy?)"
            if cls:
                return f"{addr} is {cls}"
        return ""


def parse_hostnames(raw: str | None, default: str) -> list[str] | None:
    """The hostname list as sent (``None`` when more than 20). Absent, empty or ``YES`` (some clients
    send that) means the account's own name, as deSEC does."""
    items = [h.strip() for h in (raw or "").split(",") if h.strip()]
    if not items or (len(items) == 1 and items[0].upper() == "YES"):
        return [default]
    return items if len(items) <= MAX_HOSTNAMES else None


def hostname_code(raw: str, account: Account) -> str | None:
    """``None`` when ``raw`` is one of the account's names, else its per-host error code."""
    try:
        name = validate.hostname(raw)
    except validate.ValidationError:
        return "notfqdn"
    if "." not in name:
        return "notfqdn"
    return None if name in account.names else "nohost"


def _publishable(addr: str, what: str = "") -> str:
    """``addr``, unless it is of a class no zone may publish."""
    cls = validate.address_class(addr)
    if cls in NEVER_PUBLISHED:
        raise BadIP(f"{what}{addr} is {cls}: never a host address")
    return addr


def parse_addresses(params: Mapping[str, str], source: str | None, interface_id: str = "") -> Addresses:
    """Addresses to set from ``myip`` (one or a comma list of both families, either order),
    ``myipv4`` and ``myipv6``; ``preserve`` names a family without changing it. With the account's
    ``interface_id``, ``ip6lanprefix`` names the IPv6 address (prefix + id). When no address is
    named at all, the connection's source address is used for its own family. Raises
    :class:`BadIP` for what no zone can publish; :meth:`Addresses.non_public` says what only a zone
    allowing private addresses can."""
    found: dict[int, str] = {}
    named = False
    preserved = ""

    def add(value: str, family: int | None) -> None:
        nonlocal named, preserved
        value = value.strip()
        if not value:
            return
        named = True
        if value.lower() == "preserve":
            preserved += str(family or "?")
            return
        try:
            fam, addr = validate.ip_any(value)
        except validate.ValidationError:
            raise BadIP(f"{value[:60]!r} is not an IP address") from None
        if family is not None and fam != family:
            raise BadIP(f"{addr} is not an IPv{family} address")
        if found.get(fam, addr) != addr:
            raise BadIP(f"two different IPv{fam} addresses")
        found[fam] = _publishable(addr)

    myip = params.get("myip", "")
    if myip.count(",") > 1:
        raise BadIP("myip has more than two addresses")
    for item in myip.split(","):
        add(item, None)
    add(params.get("myipv4", ""), 4)
    add(params.get("myipv6", ""), 6)
    prefix = params.get("ip6lanprefix", "").strip()
    if prefix and interface_id:
        try:
            found[6] = _publishable(combine(prefix, interface_id), f"{prefix[:60]} + {interface_id}: ")
        except ValueError as exc:
            raise BadIP(str(exc)) from None
        named = True
    if not named:
        if not source:
            raise BadIP("no address given and no usable source address")
        fam, addr = validate.ip_any(source)
        found[fam] = _publishable(addr, "no address given and the source ")
    return Addresses(ipv4=found.get(4, ""), ipv6=found.get(6, ""), from_source=not named, preserved=preserved)


def client_address(
    remote_addr: str | None,
    headers: Mapping[str, str],
    trusted: Networks,
) -> str | None:
    """The client's address: the peer, or, when the peer is a trusted proxy, the right-most address in
    ``X-Forwarded-For`` that is not itself a trusted proxy (else ``X-Real-IP``)."""
    try:
        _, peer = validate.ip_any(remote_addr or "")
    except validate.ValidationError:
        return None

    def is_trusted(addr: str) -> bool:
        ip = ipaddress.ip_address(addr)
        return any(ip in net for net in trusted)

    if not trusted or not is_trusted(peer):
        return peer
    xff = headers.get("X-Forwarded-For", "")
    hops: list[str] = []
    for part in xff.split(","):
        try:
            hops.append(validate.ip_any(part)[1])
        except validate.ValidationError:
            hops = []  # a garbled chain is not believed at all
            break
    for hop in reversed(hops):
        if not is_trusted(hop):
            return hop
    if hops:
        return hops[0]
    try:
        return validate.ip_any(headers.get("X-Real-IP", ""))[1]
    except validate.ValidationError:
        return peer


def source_subject(addr: str | None) -> str:
    """Rate-limit subject for a source: the IPv4 address, or the IPv6 /64 (one customer's LAN)."""
    if not addr:
        return "unknown"
    ip = ipaddress.ip_address(addr)
    if ip.version == 6:
        return str(ipaddress.ip_network(f"{addr}/64", strict=False))
    return addr


def trusted_networks(cidrs: tuple[str, ...]) -> Networks:
    """``HBDNS_UPDATE_TRUSTED_PROXIES`` as networks (the settings already refused bad ones)."""
    return tuple(ipaddress.ip_network(n, strict=False) for n in cidrs)
