"""``hbdns zone``: the zones the backend serves (add, set, list, show, remove).

Checks, writes and purges are :mod:`hbdns.provision_zones`', the same the admin API runs; this
module only turns options into its values (a record is ``'NAME TYPE CONTENT [TTL]'`` here, an
object in the API).
"""

from __future__ import annotations

import argparse
from typing import Any

from admin.cli.output import Refused, emit, table
from hbdns.provision_zones import ZoneChanges, change_zone, create_zone, remove_zone, zone_dict
from hbdns.store import NotFound, Store


def parse_record(text: str) -> dict[str, Any]:
    """``'NAME TYPE CONTENT [TTL]'`` as the API's record object (checked by provision_zones)."""
    parts = text.split(None, 3)
    if len(parts) < 3:
        raise Refused(f"record {text!r} must be 'NAME TYPE CONTENT [TTL]'")
    name, rtype, rest = parts[0], parts[1].upper(), parts[2:]
    if len(rest) == 2 and rest[1].isdigit():
        return {"name": name, "type": rtype, "content": rest[0], "ttl": int(rest[1])}
    return {"name": name, "type": rtype, "content": " ".join(rest)}


def _changes(args: argparse.Namespace) -> ZoneChanges:
    return ZoneChanges(
        ns=args.ns,
        hostmaster=args.hostmaster,
        neutral_ipv4=args.neutral_ipv4,
        neutral_ipv6=args.neutral_ipv6,
        backup_mx=args.backup_mx,
        backup_mx_pref=args.backup_mx_pref,
        records=None if args.record is None else [parse_record(r) for r in args.record if r],
        allow_private=args.allow_private,
        lang=args.lang,
        negative_ttl=args.negative_ttl,
    )


def zone_add(store: Store, args: argparse.Namespace) -> int:
    zone = create_zone(store, args.apex, _changes(args))
    emit(
        args,
        zone_dict(store, zone),
        f"zone {zone.apex} added\n"
        "PowerDNS serves it after its next zone-cache refresh (zone-cache-refresh-interval), "
        "or at once after `pdns_control rediscover` on each pdns server.",
    )
    return 0


def zone_set(store: Store, args: argparse.Namespace) -> int:
    """Change options of an existing zone; options not given stay as they are."""
    changes = _changes(args)
    if not changes.given():
        raise Refused("nothing to change (see hbdns zone set --help)")
    zone = store.get_zone(args.apex)
    if zone is None:
        raise NotFound(f"no zone {args.apex}")
    zone = change_zone(store, zone, changes)
    data = zone_dict(store, zone)
    shown = ", ".join(f"{k}={data[k]}" for k in changes.given())
    emit(args, data, f"zone {zone.apex}: {shown}")
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
    data = [zone_dict(store, z) for z in store.list_zones()]
    rows = [
        {
            "apex": d["apex"],
            "serial": d["serial"],
            "accounts": d["accounts"],
            "neutral": d["neutral_ipv4"],
            "backup_mx": d["backup_mx"] or "-",
        }
        for d in data
    ]
    emit(args, data, table(rows, ["apex", "serial", "accounts", "neutral", "backup_mx"]))
    return 0


def zone_show(store: Store, args: argparse.Namespace) -> int:
    zone = store.get_zone(args.apex)
    if zone is None:
        raise NotFound(f"no zone {args.apex}")
    data = zone_dict(store, zone)
    lines = [f"{k}: {v}" for k, v in data.items() if k != "records"]
    lines += [f"record: {r.name} {r.ttl} {r.type} {r.content}" for r in zone.records]
    emit(args, data, "\n".join(lines))
    return 0


def zone_remove(store: Store, args: argparse.Namespace) -> int:
    remove_zone(store, args.apex, force=args.force)
    emit(args, {"removed": args.apex}, f"zone {args.apex} removed")
    return 0


def _zone_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--ns", action="append", help="name server (repeatable; default HBDNS_DEFAULT_NS)")
    p.add_argument("--hostmaster")
    p.add_argument("--neutral-ipv4")
    p.add_argument("--neutral-ipv6", help='"" = none')
    p.add_argument("--backup-mx", help='the provider\'s backup MX host ("" = none)')
    p.add_argument("--backup-mx-pref", type=int)
    p.add_argument("--record", action="append", help="static record 'NAME TYPE CONTENT [TTL]' (repeatable)")
    p.add_argument("--lang", help='language of its accounts\' messages: de or en ("" = HBDNS_NOTIFY_LANG)')
    p.add_argument(
        "--negative-ttl",
        type=int,
        help="seconds resolvers cache 'no such name/record' (SOA minimum; default HBDNS_DEFAULT_NEGATIVE_TTL): "
        "a new account or a first AAAA shows within it",
    )


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    """The ``zone`` subcommands."""
    zone = sub.add_parser("zone", help="zones served by the backend").add_subparsers(dest="cmd", required=True)
    p = zone.add_parser("add", parents=[common])
    p.add_argument("apex")
    _zone_options(p)
    _allow_private(p, False)
    p.set_defaults(func=zone_add)
    p = zone.add_parser("set", parents=[common], help="change options (set --record replaces all records)")
    p.add_argument("apex")
    _zone_options(p)
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
