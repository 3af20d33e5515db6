"""hbdns.validate.address_class: public unicast or which IANA special-purpose class, with the edges of
each block and the forms where the stdlib's ``is_global`` answers differently (or per Python version)."""

from __future__ import annotations

import ipaddress

import pytest

from hbdns import validate

NON_PUBLIC = [
    ("0.0.0.0", "unspecified"),
    ("0.255.255.255", "this network"),
    ("10.0.0.0", "private"),
    ("10.255.255.255", "private"),
    ("100.64.0.0", "shared (CGNAT)"),
    ("100.127.255.255", "shared (CGNAT)"),
    ("127.0.0.1", "loopback"),
    ("127.255.255.254", "loopback"),
    ("169.254.0.1", "link-local"),
    ("172.16.0.0", "private"),
    ("172.31.255.255", "private"),
    ("192.0.0.1", "IETF protocol assignment"),  # DS-Lite B4
    ("192.0.0.9", "IETF protocol assignment"),  # PCP anycast: "globally reachable", but a service
    ("192.0.2.255", "documentation"),
    ("192.31.196.1", "anycast service"),
    ("192.52.193.1", "anycast service"),
    ("192.88.99.1", "6to4 relay anycast (deprecated)"),
    ("192.168.178.1", "private"),
    ("192.175.48.1", "anycast service"),
    ("198.18.0.0", "benchmarking"),
    ("198.19.255.255", "benchmarking"),
    ("198.51.100.7", "documentation"),
    ("203.0.113.7", "documentation"),
    ("224.0.0.1", "multicast"),
    ("239.255.255.255", "multicast"),
    ("240.0.0.1", "reserved"),
    ("255.255.255.254", "reserved"),
    ("255.255.255.255", "broadcast"),
    ("::", "unspecified"),
    ("::1", "loopback"),
    ("::ffff:127.0.0.1", "loopback"),  # IPv4-mapped: classed as its IPv4 address
    ("::ffff:10.1.2.3", "private"),
    ("::10.1.2.3", "IPv4-compatible (deprecated)"),
    ("64:ff9b::808:808", "IPv4/IPv6 translation"),  # NAT64 of a public address: only inside that network
    ("64:ff9b::7f00:1", "IPv4/IPv6 translation"),  # ... and of loopback (stdlib 3.11: "global")
    ("64:ff9b:1::1", "IPv4/IPv6 translation"),
    ("100::1", "discard-only"),
    ("2001::1", "Teredo"),
    ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "Teredo"),
    ("2001:1::1", "IETF protocol assignment"),
    ("2001:2::1", "benchmarking"),
    ("2001:3::1", "IETF protocol assignment"),  # AMT
    ("2001:20::1", "IETF protocol assignment"),  # ORCHIDv2
    ("2001:1ff:ffff::1", "IETF protocol assignment"),
    ("2001:db8::1", "documentation"),
    ("2001:db8:ffff:ffff::1", "documentation"),
    ("2002:a00:1::1", "6to4"),  # 6to4 of 10.0.0.1 (stdlib 3.11: "global")
    ("2002:cb00:7201::1", "6to4"),  # ... of a public address: relays are deprecated (RFC 7526)
    ("2620:4f:8000::1", "anycast service"),
    ("3fff::1", "documentation"),  # RFC 9637 (stdlib 3.11: "global")
    ("3fff:fff:ffff::1", "documentation"),
    ("4000::1", "reserved"),  # outside 2000::/3 (stdlib 3.11: "global")
    ("5f00::1", "reserved"),  # SRv6 SIDs
    ("fc00::1", "private"),
    ("fdff:ffff::1", "private"),
    ("fe80::1", "link-local"),
    ("febf::1", "link-local"),
    ("fec0::1", "site-local (deprecated)"),  # stdlib 3.11: "global"
    ("ff02::1", "multicast"),
    ("ff0e::1", "multicast"),
    ("fe80::1%eth0", "scoped"),
    ("2001:db9::1%eth0", "scoped"),
]

PUBLIC = [
    "1.0.0.1",
    "9.255.255.255",
    "11.0.0.0",
    "100.63.255.255",
    "100.128.0.0",
    "126.255.255.255",
    "128.0.0.0",
    "169.253.255.255",
    "172.15.255.255",
    "172.32.0.0",
    "192.0.1.255",
    "192.0.3.0",
    "192.167.255.255",
    "192.169.0.0",
    "198.17.255.255",
    "198.20.0.0",
    "198.51.101.7",
    "203.0.114.7",
    "223.255.255.255",
    "::ffff:203.0.114.7",
    "2000::1",
    "2001:200::1",
    "2001:4860:4860::8888",
    "2001:db9::1",
    "2001:db7:ffff::1",
    "2003::1",
    "2620:4f:8001::1",
    "2a00:1450:4001::1",
    "3fff:1000::1",
]


@pytest.mark.parametrize(("addr", "cls"), NON_PUBLIC)
def test_non_public_addresses_and_their_class(addr: str, cls: str) -> None:
    assert validate.address_class(addr) == cls


@pytest.mark.parametrize("addr", PUBLIC)
def test_public_unicast_including_the_neighbours_of_every_block(addr: str) -> None:
    assert validate.address_class(addr) == ""


def test_public_ones_are_global_for_the_stdlib_too() -> None:
    """Where we call an address public, Python agrees (we are stricter, never looser)."""
    for addr in PUBLIC:
        ip = ipaddress.ip_address(addr)
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
            ip = ip.ipv4_mapped
        assert ip.is_global, addr
