"""``hbdns zone``: the zones the backend serves (add, set, list, show, remove)."""

from __future__ import annotations

import argparse
from dataclasses import asdict, replace
from typing import Any

from admin.cli.output import Refused, emit, table
from hbdns import validate
from hbdns.model import StaticRecord, Zone
from hbdns.store import Store, StoreError

RECORD_TYPES = ("A", "AAAA", "CNAME", "MX", "TXT", "NS", "SRV", "CAA")


def parse_record(text: str, apex: str) -> StaticRecord:
    parts = text.split(None, 3)
    if len(parts) < 3:
        raise Refused(f"record {text!r} must be 'NAME TYPE CONTENT [TTL]'")
    name, rtype, rest = parts[0], parts[1].upper(), parts[2:]
    ttl = 3600
    content = " ".join(rest)
    if len(rest) == 2 and rest[1].isdigit():
        content, ttl = rest[0], int(rest[1])
    name = validate.hostname(name if name.rstrip(".").endswith(apex) else f"{name}.{apex}")
    if rtype not in RECORD_TYPES:
        raise Refused(f"record type {rtype} is not supported")
    if rtype == "A":
        content = validate.ipv4(content)
    elif rtype == "AAAA":
        content = validate.ipv6(content)
    return StaticRecord(name=name, type=rtype, content=content, ttl=ttl)


def zone_add(store: Store, args: argparse.Namespace) -> int:
    s = store.settings
    apex = validate.hostname(args.apex)
    ns = tuple(validate.hostname(n) for n in (args.ns or s.default_ns))
    backup_mx = args.backup_mx if args.backup_mx is not None else s.default_backup_mx
    zone = Zone(
        apex=apex,
        ns=ns,
        hostmaster=validate.hostname(args.hostmaster or s.default_hostmaster),
        neutral_ipv4=validate.ipv4(args.neutral_ipv4 or s.default_neutral_ipv4),
        neutral_ipv6=validate.ipv6(args.neutral_ipv6 or s.default_neutral_ipv6)
        if (args.neutral_ipv6 or s.default_neutral_ipv6)
        else "",
        backup_mx=validate.hostname(backup_mx) if backup_mx else "",
        backup_mx_pref=args.backup_mx_pref or s.default_backup_mx_pref,
        records=tuple(parse_record(r, apex) for r in args.record or ()),
        allow_private=bool(args.allow_private),
    )
    zone = store.add_zone(zone)
    emit(
        args,
        asdict(zone),
        f"zone {zone.apex} added\n"
        "PowerDNS serves it after its next zone-cache refresh (zone-cache-refresh-interval), "
        "or at once after `pdns_control rediscover` on each pdns server.",
    )
    return 0


def zone_set(store: Store, args: argparse.Namespace) -> int:
    """Change options of an existing zone; options not given stay as they are."""
    changes: dict[str, Any] = {}
    if args.allow_private is not None:
        changes["allow_private"] = bool(args.allow_private)
    if not changes:
        raise Refused("nothing to change (see hbdns zone set --help)")
    zone = store.get_zone(args.apex)
    if zone is None:
        raise StoreError(f"no zone {args.apex}")
    zone = store.update_zone(replace(zone, **changes))
    shown = ", ".join(f"{k}={v}" for k, v in changes.items())
    emit(args, asdict(zone), f"zone {zone.apex}: {shown}")
    return 0


def _allow_private(p: argparse.ArgumentParser, default: bool | None) -> None:
    p.add_argument(
        "--allow-private-addresses",
        dest="allow_private",
        action=argparse.BooleanOptionalAction,
        default=default,
        help="labs only: let updates publish non-public addresses (loopback, RFC 1918, CGNAT, "
        "documentation, ...); off by default",
    )


def zone_list(store: Store, args: argparse.Namespace) -> int:
    zones = store.list_zones()
    rows = [
        {
            "apex": z.apex,
            "serial": store.zone_serial(z.apex),
            "accounts": len(store.list_accounts(z.apex)),
            "neutral": z.neutral_ipv4,
            "backup_mx": z.backup_mx or "-",
        }
        for z in zones
    ]
    data = [{**asdict(z), "serial": r["serial"], "accounts": r["accounts"]} for z, r in zip(zones, rows, strict=True)]
    emit(args, data, table(rows, ["apex", "serial", "accounts", "neutral", "backup_mx"]))
    return 0


def zone_show(store: Store, args: argparse.Namespace) -> int:
    zone = store.get_zone(args.apex)
    if zone is None:
        raise StoreError(f"no zone {args.apex}")
    data = {**asdict(zone), "serial": store.zone_serial(zone.apex)}
    lines = [f"{k}: {v}" for k, v in data.items() if k != "records"]
    lines += [f"record: {r.name} {r.ttl} {r.type} {r.content}" for r in zone.records]
    emit(args, data, "\n".join(lines))
    return 0


def zone_remove(store: Store, args: argparse.Namespace) -> int:
    store.remove_zone(args.apex, force=args.force)
    emit(args, {"removed": args.apex}, f"zone {args.apex} removed")
    return 0


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    """The ``zone`` subcommands."""
    zone = sub.add_parser("zone", help="zones served by the backend").add_subparsers(dest="cmd", required=True)
    p = zone.add_parser("add", parents=[common])
    p.add_argument("apex")
    p.add_argument("--ns", action="append", help="name server (repeatable; default HBDNS_DEFAULT_NS)")
    p.add_argument("--hostmaster")
    p.add_argument("--neutral-ipv4")
    p.add_argument("--neutral-ipv6")
    p.add_argument("--backup-mx", help="the provider's backup MX host")
    p.add_argument("--backup-mx-pref", type=int)
    p.add_argument("--record", action="append", help="static record 'NAME TYPE CONTENT [TTL]' (repeatable)")
    _allow_private(p, False)
    p.set_defaults(func=zone_add)
    p = zone.add_parser("set", parents=[common])
    p.add_argument("apex")
    _allow_private(p, None)
    p.set_defaults(func=zone_set)
    zone.add_parser("list", parents=[common]).set_defaults(func=zone_list)
    p = zone.add_parser("show", parents=[common])
    p.add_argument("apex")
    p.set_defaults(func=zone_show)
    p = zone.add_parser("remove", parents=[common])
    p.add_argument("apex")
    p.add_argument("--force", action="store_true", help="also remove the zone's accounts")
    p.set_defaults(func=zone_remove)
