"""Zones the backend tests answer from."""

from __future__ import annotations

from hbdns.model import StaticRecord, Zone

APEX = "example.com"

# neutral addresses of both families, a backup MX inside the zone with its address, apex TXT and MX
EXAMPLE_ZONE = Zone(
    apex=APEX,
    ns=("ns1.example.net", "ns2.example.net."),
    hostmaster="hostmaster@example.net",
    neutral_ipv4="192.0.2.1",
    neutral_ipv6="2001:db8::1",
    backup_mx="mx.backup.example.com",
    backup_mx_pref=50,
    records=(
        StaticRecord("mx.backup.example.com", "A", "198.51.100.7", 600),
        StaticRecord("example.com", "TXT", '"v=spf1 -all"', 300),
        StaticRecord("example.com", "MX", "20 mail.example.net.", 300),
    ),
)
