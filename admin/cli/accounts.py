"""``hbdns account``: customer accounts (add, list, show, set, remove, keys, passwords, log).

Secrets are printed once, when made: the heartbeat key on ``add`` and ``rotate-key``, a generated
update password on ``add`` and ``set-password``. Only the password's hash is stored.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import replace
from typing import Any

from admin.cli.output import Refused, duration, emit, table, ts
from admin.cli.status import account_text, status_dict
from hbdns import validate
from hbdns.model import Account, NotifyPrefs
from hbdns.passwords import new_password
from hbdns.store import Store, StoreError


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
    emit(args, data, "\n".join(text))
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
    emit(args, [a.public_dict() for a in accounts], table(rows, ["id", "fqdn", "plan", "mx", "aliases", "contacts"]))
    return 0


def account_show(store: Store, args: argparse.Namespace) -> int:
    account = store.resolve(args.account)
    emit(args, status_dict(store, account), account_text(store, account))
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
    emit(args, new.public_dict(), f"account {new.id} ({new.fqdn}) updated")
    return 0


def account_remove(store: Store, args: argparse.Namespace) -> int:
    account = store.resolve(args.account)
    store.remove_account(account.id)
    emit(args, {"removed": account.id, "fqdn": account.fqdn}, f"account {account.id} ({account.fqdn}) removed")
    return 0


def account_rotate_key(store: Store, args: argparse.Namespace) -> int:
    account = store.rotate_key(store.resolve(args.account))
    if args.client_config:
        server = args.server or f"{store.settings.heartbeat_host}:{store.settings.heartbeat_port}"
        _write_client_config(args.client_config, server, account, store.plans[account.plan].interval)
    emit(
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
    emit(args, {"id": account.id, "update_password": password if generated else None}, text)
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
            detail = "first beat" if str(e.get("first")) == "1" else f"outage {duration(int(e.get('duration_ms', 0)))}"
        elif kind == "neutralized":
            detail = str(e.get("reason", ""))
        else:
            detail = str(e.get("plan", ""))
        mark = {"neutralized": "RED", "recovered": "BLUE", "ip_changed": "BLUE"}.get(kind, "")
        rows.append({"time": ts(int(e.get("at", 0)), ms=True), "event": kind, "detail": detail, "": mark})
    emit(args, entries, table(rows, ["time", "event", "detail", ""]))
    return 0


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


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    """The ``account`` subcommands."""
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
