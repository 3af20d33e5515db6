"""``hbdns``: the operator's command line for zones, accounts and status.

Human tables by default, ``--json`` for scripts. Refused input exits 2 with one line on stderr and
writes nothing; an unreachable Redis exits 1. ``main(argv)`` is what tests call.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, replace
from datetime import UTC, datetime
from typing import Any

import redis

from hbdns import config, validate
from hbdns.connection import connect
from hbdns.model import Account, NotifyPrefs, StaticRecord, Zone
from hbdns.passwords import new_password
from hbdns.store import Store, StoreError

EXIT_REFUSED = 2
EXIT_UNAVAILABLE = 1


class Refused(Exception):
    """Input the CLI refuses before touching Redis."""


# --- output ---------------------------------------------------------------------------------------


def _ts(ms_or_s: float, *, ms: bool = False) -> str:
    if not ms_or_s:
        return "-"
    seconds = ms_or_s / 1000 if ms else ms_or_s
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _duration(ms: int) -> str:
    s = max(0, ms // 1000)
    if s < 120:
        return f"{s}s"
    if s < 7200:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"


def _table(rows: list[dict[str, Any]], columns: Sequence[str]) -> str:
    if not rows:
        return "(none)"
    cells = [[str(r.get(c, "")) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip()]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() for row in cells]
    return "\n".join(lines)


def _emit(args: argparse.Namespace, data: Any, text: str) -> None:
    print(json.dumps(data, indent=2, sort_keys=True) if args.json else text)


# --- parsing helpers ------------------------------------------------------------------------------


def _parse_record(text: str, apex: str) -> StaticRecord:
    parts = text.split(None, 3)
    if len(parts) < 3:
        raise Refused(f"record {text!r} must be 'NAME TYPE CONTENT [TTL]'")
    name, rtype, rest = parts[0], parts[1].upper(), parts[2:]
    ttl = 3600
    content = " ".join(rest)
    if len(rest) == 2 and rest[1].isdigit():
        content, ttl = rest[0], int(rest[1])
    name = validate.hostname(name if name.rstrip(".").endswith(apex) else f"{name}.{apex}")
    if rtype not in ("A", "AAAA", "CNAME", "MX", "TXT", "NS", "SRV", "CAA"):
        raise Refused(f"record type {rtype} is not supported")
    if rtype == "A":
        content = validate.ipv4(content)
    elif rtype == "AAAA":
        content = validate.ipv6(content)
    return StaticRecord(name=name, type=rtype, content=content, ttl=ttl)


def _prefs(args: argparse.Namespace, base: NotifyPrefs) -> NotifyPrefs:
    changes = {
        k: v
        for k, v in {
            "email": args.email_events,
            "sms": args.sms_events,
            "webhook": args.webhook_events,
            "sms_min_outage": args.sms_min_outage,
            "quiet_hours": args.quiet_hours,
            "tz": args.tz,
        }.items()
        if v is not None
    }
    return replace(base, **changes).validate()


def _read_password(args: argparse.Namespace) -> str | None:
    if getattr(args, "password_stdin", False):
        pw = sys.stdin.readline().rstrip("\n")
        if not pw:
            raise Refused("empty password on stdin")
        return pw
    pw = getattr(args, "password", None)
    if pw is not None and len(pw) < 8:
        raise Refused("password must have at least 8 characters")
    return pw


def _write_client_config(path: str, server: str, account: Account, interval: float) -> None:
    from hbdns_client.config import write_client_config

    write_client_config(path, server, account.id, account.hb_key.hex(), interval)


# --- commands: zones ------------------------------------------------------------------------------


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
        records=tuple(_parse_record(r, apex) for r in args.record or ()),
    )
    zone = store.add_zone(zone)
    _emit(
        args,
        asdict(zone),
        f"zone {zone.apex} added\n"
        "PowerDNS serves it after its next zone-cache refresh (zone-cache-refresh-interval), "
        "or at once after `pdns_control rediscover` on each pdns server.",
    )
    return 0


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
    _emit(args, data, _table(rows, ["apex", "serial", "accounts", "neutral", "backup_mx"]))
    return 0


def zone_show(store: Store, args: argparse.Namespace) -> int:
    zone = store.get_zone(args.apex)
    if zone is None:
        raise StoreError(f"no zone {args.apex}")
    data = {**asdict(zone), "serial": store.zone_serial(zone.apex)}
    lines = [f"{k}: {v}" for k, v in data.items() if k != "records"]
    lines += [f"record: {r.name} {r.ttl} {r.type} {r.content}" for r in zone.records]
    _emit(args, data, "\n".join(lines))
    return 0


def zone_remove(store: Store, args: argparse.Namespace) -> int:
    store.remove_zone(args.apex, force=args.force)
    _emit(args, {"removed": args.apex}, f"zone {args.apex} removed")
    return 0


# --- commands: accounts ---------------------------------------------------------------------------


def _account_text(store: Store, account: Account) -> str:
    st = store.status(account)
    d = account.public_dict()
    lines = [f"{k}: {v}" for k, v in d.items() if k not in ("created", "updated")]
    lines += [
        f"created: {_ts(account.created)}",
        f"state: {'live' if st.live else 'neutral'}"
        f" (recorded: {st.state.state} since {_ts(st.state.since_ms, ms=True)})",
        f"ipv4: {st.state.ipv4 or '-'}",
        f"ipv6: {st.state.ipv6 or '-'}",
        f"last beat: {_ts(st.state.last_beat_ms, ms=True)}",
    ]
    return "\n".join(lines)


def _status_dict(store: Store, account: Account) -> dict[str, Any]:
    st = store.status(account)
    return {
        **account.public_dict(),
        "live": st.live,
        "state": "live" if st.live else "neutral",
        "recorded_state": st.state.state,
        "since_ms": st.state.since_ms,
        "last_beat_ms": st.state.last_beat_ms,
        "ipv4": st.state.ipv4,
        "ipv6": st.state.ipv6,
        "expires_in_ms": st.alive_ms,
    }


def account_add(store: Store, args: argparse.Namespace) -> int:
    password = _read_password(args)
    generated = password is None
    if generated:
        password = new_password()
    prefs = _prefs(args, NotifyPrefs())
    account = store.new_account(
        args.fqdn,
        args.plan,
        aliases=args.alias or (),
        password=password,
        neutral_ipv4=args.neutral_ipv4 or "",
        neutral_ipv6=args.neutral_ipv6 or "",
        mx=bool(args.mx),
        emails=args.email or (),
        phones=args.phone or (),
        webhook=args.webhook or "",
        prefs=prefs,
    )
    server = args.server or f"{store.settings.heartbeat_host}:{store.settings.heartbeat_port}"
    if args.client_config and not os.path.isdir(os.path.dirname(os.path.abspath(args.client_config))):
        raise Refused(f"no directory for client config {args.client_config}")
    account = store.add_account(account)
    if args.client_config:
        _write_client_config(args.client_config, server, account, store.plans[account.plan].interval)
    data = {
        **account.public_dict(),
        "heartbeat_key": account.hb_key.hex(),
        "update_password": password if generated else None,
    }
    text = [
        f"account {account.id} added: {account.fqdn} ({account.plan})",
        f"account id:    {account.id}",
        f"heartbeat key: {account.hb_key.hex()}",
    ]
    if generated:
        text.append(f"update password: {password}")
    text.append("(shown once: store them now; `hbdns account rotate-key` makes a new key)")
    if args.client_config:
        text.append(f"client config written to {args.client_config}")
    _emit(args, data, "\n".join(text))
    return 0


def account_list(store: Store, args: argparse.Namespace) -> int:
    accounts = store.list_accounts(validate.hostname(args.zone) if args.zone else None)
    rows = [
        {
            "id": a.id,
            "fqdn": a.fqdn,
            "plan": a.plan,
            "mx": "yes" if a.mx else "no",
            "aliases": ",".join(a.aliases) or "-",
            "contacts": len(a.emails) + len(a.phones) + (1 if a.webhook else 0),
        }
        for a in accounts
    ]
    _emit(args, [a.public_dict() for a in accounts], _table(rows, ["id", "fqdn", "plan", "mx", "aliases", "contacts"]))
    return 0


def account_show(store: Store, args: argparse.Namespace) -> int:
    account = store.resolve(args.account)
    _emit(args, _status_dict(store, account), _account_text(store, account))
    return 0


def account_set(store: Store, args: argparse.Namespace) -> int:
    old = store.resolve(args.account)
    changes: dict[str, Any] = {}
    if args.plan is not None:
        if args.plan not in store.plans:
            raise StoreError(f"unknown plan {args.plan!r} (known: {', '.join(sorted(store.plans))})")
        changes["plan"] = args.plan
    if args.alias is not None:
        aliases = tuple(dict.fromkeys(validate.hostname(a) for a in args.alias if a))
        for a in aliases:
            if not validate.in_zone(a, old.zone) or a == old.fqdn:
                raise Refused(f"alias {a} is not a new name in zone {old.zone}")
        changes["aliases"] = aliases
    if args.neutral_ipv4 is not None:
        changes["neutral_ipv4"] = validate.ipv4(args.neutral_ipv4) if args.neutral_ipv4 else ""
    if args.neutral_ipv6 is not None:
        changes["neutral_ipv6"] = validate.ipv6(args.neutral_ipv6) if args.neutral_ipv6 else ""
    if args.mx is not None:
        changes["mx"] = args.mx
    if args.email is not None:
        changes["emails"] = tuple(validate.email(e) for e in args.email if e)
    if args.phone is not None:
        changes["phones"] = tuple(validate.phone(p) for p in args.phone if p)
    if args.webhook is not None:
        changes["webhook"] = validate.url(args.webhook) if args.webhook else ""
    changes["prefs"] = _prefs(args, old.prefs)
    new = store.save_account(old, replace(old, **changes))
    _emit(args, new.public_dict(), f"account {new.id} ({new.fqdn}) updated")
    return 0


def account_remove(store: Store, args: argparse.Namespace) -> int:
    account = store.resolve(args.account)
    store.remove_account(account.id)
    _emit(args, {"removed": account.id, "fqdn": account.fqdn}, f"account {account.id} ({account.fqdn}) removed")
    return 0


def account_rotate_key(store: Store, args: argparse.Namespace) -> int:
    account = store.rotate_key(store.resolve(args.account))
    if args.client_config:
        server = args.server or f"{store.settings.heartbeat_host}:{store.settings.heartbeat_port}"
        _write_client_config(args.client_config, server, account, store.plans[account.plan].interval)
    _emit(
        args,
        {"id": account.id, "heartbeat_key": account.hb_key.hex()},
        f"new heartbeat key for {account.fqdn}: {account.hb_key.hex()}\n(the old key stops working now)",
    )
    return 0


def account_set_password(store: Store, args: argparse.Namespace) -> int:
    password = _read_password(args)
    generated = password is None
    if generated:
        password = new_password()
    assert password is not None
    account = store.set_password(store.resolve(args.account), password)
    text = f"update password of {account.fqdn} changed"
    if generated:
        text += f": {password}"
    _emit(args, {"id": account.id, "update_password": password if generated else None}, text)
    return 0


def account_log(store: Store, args: argparse.Namespace) -> int:
    account = store.resolve(args.account)
    entries = store.account_log(account.id, args.limit)
    rows = []
    for e in entries:
        kind = e.get("type", "?")
        if kind == "ip_changed":
            detail = f"{e.get('old') or '-'} -> {e.get('new')}"
        elif kind == "recovered":
            detail = "first beat" if str(e.get("first")) == "1" else f"outage {_duration(int(e.get('duration_ms', 0)))}"
        elif kind == "neutralized":
            detail = str(e.get("reason", ""))
        else:
            detail = str(e.get("plan", ""))
        mark = {"neutralized": "RED", "recovered": "BLUE", "ip_changed": "BLUE"}.get(kind, "")
        rows.append({"time": _ts(int(e.get("at", 0)), ms=True), "event": kind, "detail": detail, "": mark})
    _emit(args, entries, _table(rows, ["time", "event", "detail", ""]))
    return 0


def status(store: Store, args: argparse.Namespace) -> int:
    accounts = store.list_accounts(validate.hostname(args.zone) if args.zone else None)
    now_ms = int(time.time() * 1000)
    data = [_status_dict(store, a) for a in accounts]
    rows = [
        {
            "fqdn": d["fqdn"],
            "plan": d["plan"],
            "state": d["state"],
            "since": _duration(now_ms - d["since_ms"]) if d["since_ms"] else "-",
            "last_beat": _ts(d["last_beat_ms"], ms=True),
            "ipv4": d["ipv4"] or "-",
            "ipv6": d["ipv6"] or "-",
        }
        for d in data
    ]
    dead = store.dead_letters(args.dead_letters)
    text = _table(rows, ["fqdn", "plan", "state", "since", "last_beat", "ipv4", "ipv6"])
    live = sum(1 for d in data if d["live"])
    text += f"\n\n{live} live, {len(data) - live} neutral"
    if dead:
        text += f"\n\nfailed notifications (newest first, {len(dead)} shown):\n"
        text += _table(
            [
                {
                    "time": _ts(float(d.get("time", 0))),
                    "channel": d.get("channel", ""),
                    "recipient": d.get("recipient", ""),
                    "account": d.get("fqdn", d.get("account", "")),
                    "event": d.get("event_type", ""),
                    "reason": str(d.get("reason", ""))[:60],
                }
                for d in dead
            ],
            ["time", "channel", "recipient", "account", "event", "reason"],
        )
    _emit(args, {"accounts": data, "dead_letters": dead}, text)
    return 0


# --- argument parser ------------------------------------------------------------------------------


def _add_account_options(p: argparse.ArgumentParser, *, creating: bool) -> None:
    p.add_argument("--alias", action="append", help="another name of the account (repeatable)")
    p.add_argument("--neutral-ipv4", help="address answered while neutral (default: the zone's)")
    p.add_argument("--neutral-ipv6")
    mx = p.add_mutually_exclusive_group()
    mx.add_argument("--mx", dest="mx", action="store_true", default=None, help="publish MX <name> + backup MX")
    mx.add_argument("--no-mx", dest="mx", action="store_false")
    p.add_argument("--email", action="append", help="contact e-mail (repeatable)")
    p.add_argument("--phone", action="append", help="contact phone for SMS, E.164 (repeatable)")
    p.add_argument("--webhook", help="URL that receives signed JSON events")
    p.add_argument("--email-events", choices=("none", "outages", "all"))
    p.add_argument("--sms-events", choices=("none", "outages", "all"))
    p.add_argument("--webhook-events", choices=("none", "outages", "all"))
    p.add_argument("--sms-min-outage", type=int, help="seconds an outage must last before an SMS")
    p.add_argument("--quiet-hours", help="no SMS in this window, e.g. 22:00-07:00")
    p.add_argument("--tz", help="time zone for quiet hours and message times, e.g. Europe/Berlin")
    if creating:
        p.add_argument("--plan", required=True, help="plan name (see README: heartbeat-c, setip-a, ...)")
    else:
        p.add_argument("--plan")


def _password_options(p: argparse.ArgumentParser) -> None:
    g = p.add_mutually_exclusive_group()
    g.add_argument("--password", help="update password (default: a random one, printed once)")
    g.add_argument("--password-stdin", action="store_true", help="read the update password from stdin")


def build_parser() -> argparse.ArgumentParser:
    # --json is accepted before or after the subcommand; SUPPRESS keeps a leaf from resetting it.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="machine-readable output")
    parser = argparse.ArgumentParser(prog="hbdns", description=__doc__.split("\n")[0])
    parser.add_argument("--json", action="store_true", default=False, help="machine-readable output")
    sub = parser.add_subparsers(dest="group", required=True)

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
    p.set_defaults(func=zone_add)
    zone.add_parser("list", parents=[common]).set_defaults(func=zone_list)
    p = zone.add_parser("show", parents=[common])
    p.add_argument("apex")
    p.set_defaults(func=zone_show)
    p = zone.add_parser("remove", parents=[common])
    p.add_argument("apex")
    p.add_argument("--force", action="store_true", help="also remove the zone's accounts")
    p.set_defaults(func=zone_remove)

    acct = sub.add_parser("account", help="customer accounts").add_subparsers(dest="cmd", required=True)
    p = acct.add_parser("add", parents=[common])
    p.add_argument("fqdn")
    _add_account_options(p, creating=True)
    _password_options(p)
    p.add_argument("--client-config", help="write an hbdns-client config file (mode 0600) here")
    p.add_argument("--server", help="heartbeat server host:port for the client config")
    p.set_defaults(func=account_add)
    p = acct.add_parser("list", parents=[common])
    p.add_argument("--zone")
    p.set_defaults(func=account_list)
    for name, func in (("show", account_show), ("remove", account_remove)):
        p = acct.add_parser(name, parents=[common])
        p.add_argument("account", help="account id or name")
        p.set_defaults(func=func)
    p = acct.add_parser("set", parents=[common])
    p.add_argument("account")
    _add_account_options(p, creating=False)
    p.set_defaults(func=account_set)
    p = acct.add_parser("rotate-key", parents=[common])
    p.add_argument("account")
    p.add_argument("--client-config")
    p.add_argument("--server")
    p.set_defaults(func=account_rotate_key)
    p = acct.add_parser("set-password", parents=[common])
    p.add_argument("account")
    _password_options(p)
    p.set_defaults(func=account_set_password)
    p = acct.add_parser("log", parents=[common])
    p.add_argument("account")
    p.add_argument("-n", "--limit", type=int, default=50)
    p.set_defaults(func=account_log)

    p = sub.add_parser("status", parents=[common], help="accounts with live/neutral state")
    p.add_argument("--zone")
    p.add_argument("--dead-letters", type=int, default=10, help="failed notifications to show")
    p.set_defaults(func=status)
    return parser


def main(argv: Sequence[str] | None = None, *, redis_client: redis.Redis | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Callable[[Store, argparse.Namespace], int] = args.func
    try:
        settings = config.load()
        client = redis_client or connect(settings.redis_url)
        return func(Store(client, settings), args)
    except (Refused, validate.ValidationError, StoreError, config.ConfigError) as exc:
        print(f"hbdns: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    except redis.RedisError as exc:
        print(f"hbdns: Redis unavailable: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE


if __name__ == "__main__":
    sys.exit(main())
