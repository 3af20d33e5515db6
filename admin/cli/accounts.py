"""``hbdns account``: customer accounts (add, list, show, set, remove, keys, passwords, log, flush).

Secrets are printed once, when made: the heartbeat key on ``add`` and ``rotate-key``, a generated
update password on ``add`` and ``set-password``. Only the password's hash is stored. Checks, writes
and pdns purges are :mod:`hbdns.provision`'s, the same the admin API runs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from admin.cli import flush
from admin.cli.output import Refused, duration, emit, table, ts
from admin.cli.status import account_text, status_dict
from hbdns import provision, provision_acme, validate
from hbdns.provision import AccountChanges
from hbdns.store import Store


def _prefs(args: argparse.Namespace) -> dict[str, Any]:
    """The notification preferences given as options (the others stay as they are)."""
    return {
        "email": args.email_events,
        "sms": args.sms_events,
        "webhook": args.webhook_events,
        "sms_min_outage": args.sms_min_outage,
        "quiet_hours": args.quiet_hours,
        "tz": args.tz,
        "lang": args.lang,
    }


def _given(values: list[str] | None) -> list[str] | None:
    """A repeatable option: None when absent; ``--alias ""`` alone clears the list."""
    return None if values is None else [v for v in values if v]


def _recipients(args: argparse.Namespace) -> list[str] | None:
    """``--mx-recipient`` (repeatable; ``""`` alone clears the list) plus the lines of
    ``--mx-recipients-file`` (``-``: stdin; blank lines and ``#`` comments skipped); None: unchanged."""
    items = _given(args.mx_recipient)
    if args.mx_recipients_file:
        try:
            if args.mx_recipients_file == "-":
                text = sys.stdin.read()
            else:
                with open(args.mx_recipients_file, encoding="utf-8") as f:
                    text = f.read()
        except OSError as exc:
            raise Refused(f"cannot read {args.mx_recipients_file}: {exc.strerror}") from None
        lines = [line.split("#", 1)[0].strip() for line in text.splitlines()]
        items = (items or []) + [line for line in lines if line]
    return items


def _read_password(args: argparse.Namespace) -> str | None:
    if getattr(args, "password_stdin", False):
        pw = sys.stdin.readline().rstrip("\n")
        if not pw:
            raise Refused("empty password on stdin")
        return pw
    given: str | None = getattr(args, "password", None)
    return given


def account_add(store: Store, args: argparse.Namespace) -> int:
    password = _read_password(args)
    if args.client_config and not os.path.isdir(os.path.dirname(os.path.abspath(args.client_config))):
        raise Refused(f"no directory for client config {args.client_config}")
    created = provision.create_account(
        store,
        args.fqdn,
        args.plan,
        password=password,
        aliases=args.alias or (),
        neutral_ipv4=args.neutral_ipv4 or "",
        neutral_ipv6=args.neutral_ipv6 or "",
        mx=bool(args.mx),
        emails=args.email or (),
        phones=args.phone or (),
        webhook=args.webhook or "",
        prefs=_prefs(args),
        wildcard=bool(args.wildcard),
        ipv6_interface_id=args.ipv6_interface_id or "",
        mx_recipients=_recipients(args) or (),
    )
    account, generated = created.account, created.password is not None
    if args.client_config:
        provision.write_client_config(store, args.client_config, account, args.server or "")
    data = {
        **account.public_dict(),
        "heartbeat_key": account.hb_key.hex(),
        "update_password": created.password,
    }
    text = [
        f"account {account.id} added: {account.fqdn} ({account.plan})",
        f"account id:    {account.id}",
        f"heartbeat key: {account.hb_key.hex()}",
    ]
    if generated:
        text.append(f"update password: {created.password}")
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
    changes = AccountChanges(
        plan=args.plan,
        aliases=_given(args.alias),
        neutral_ipv4=args.neutral_ipv4,
        neutral_ipv6=args.neutral_ipv6,
        mx=args.mx,
        emails=_given(args.email),
        phones=_given(args.phone),
        webhook=args.webhook,
        prefs=_prefs(args),
        wildcard=args.wildcard,
        ipv6_interface_id=args.ipv6_interface_id,
        mx_recipients=_recipients(args),
    )
    new = provision.change_account(store, old, changes)
    emit(args, new.public_dict(), f"account {new.id} ({new.fqdn}) updated")
    return 0


def account_remove(store: Store, args: argparse.Namespace) -> int:
    account = provision.remove_account(store, store.resolve(args.account))
    emit(args, {"removed": account.id, "fqdn": account.fqdn}, f"account {account.id} ({account.fqdn}) removed")
    return 0


def account_rotate_key(store: Store, args: argparse.Namespace) -> int:
    account = store.rotate_key(store.resolve(args.account))
    if args.client_config:
        provision.write_client_config(store, args.client_config, account, args.server or "")
    emit(
        args,
        {"id": account.id, "heartbeat_key": account.hb_key.hex()},
        f"new heartbeat key for {account.fqdn}: {account.hb_key.hex()}\n(the old key stops working now)",
    )
    return 0


def account_set_password(store: Store, args: argparse.Namespace) -> int:
    account, generated = provision.set_password(store, store.resolve(args.account), _read_password(args))
    text = f"update password of {account.fqdn} changed"
    if generated:
        text += f": {generated}"
    emit(args, {"id": account.id, "update_password": generated}, text)
    return 0


def account_acme_credentials(store: Store, args: argparse.Namespace) -> int:
    """New ACME DNS-01 credentials for one name (printed once), or ``--revoke`` / ``--list``."""
    account = store.resolve(args.name)
    name = None if args.name.strip().isdigit() else args.name
    if args.list:
        creds = [c.public_dict() for c in provision_acme.listing(store, account)]
        rows = [{"name": c["name"], "username": c["username"], "created": ts(c["created"])} for c in creds]
        emit(args, creds, table(rows, ["name", "username", "created"]))
        return 0
    if args.revoke:
        if not provision_acme.revoke(store, account, name):
            raise Refused(f"{name or account.fqdn} has no ACME credentials")
        emit(args, {"revoked": name or account.fqdn}, f"ACME credentials of {name or account.fqdn} revoked")
        return 0
    issued = provision_acme.issue(store, account, name).as_dict()
    lines = [
        f"ACME DNS-01 credentials for {issued['fulldomain']} (shown once; new ones replace these):",
        "",
        "acme-dns (lego ACME_DNS_STORAGE_PATH file, certbot acmedns.json):",
        json.dumps(issued["acme_dns"], indent=2),
        "",
        "acme.sh (--dns dns_acmedns):",
        *(f"export {k}={v}" for k, v in issued["acme_sh"].items()),
        "",
        f"lego httpreq: HTTPREQ_ENDPOINT={issued['httpreq']['endpoint']} "
        f"HTTPREQ_USERNAME={issued['httpreq']['username']} HTTPREQ_PASSWORD={issued['httpreq']['password']}",
    ]
    emit(args, issued, "\n".join(lines))
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
        elif kind in ("neutralized", "family_lost", "family_back"):
            detail = " ".join(x for x in (_families(e), str(e.get("reason", ""))) if x)
        elif kind == "mx_flushed":
            detail = f"{e.get('why', '')}: " + ", ".join(
                f"{r.get('target')} {r.get('outcome')}" for r in e.get("results", [])[:4]
            )
        elif kind == "test":
            detail = "test message (hbdns notify test)"
        else:
            detail = str(e.get("plan", ""))
        if kind == "recovered" and _families(e):
            detail += f" ({_families(e)})"
        mark = {"neutralized": "RED", "family_lost": "RED", "recovered": "BLUE", "ip_changed": "BLUE"}.get(kind, "")
        rows.append({"time": ts(int(e.get("at", 0)), ms=True), "event": kind, "detail": detail, "": mark})
    emit(args, entries, table(rows, ["time", "event", "detail", ""]))
    return 0


def _families(e: dict[str, Any]) -> str:
    fam = str(e.get("family", ""))
    return " and ".join(f"IPv{f}" for f in fam.split(",")) if fam else ""


def _add_account_options(p: argparse.ArgumentParser, *, creating: bool) -> None:
    p.add_argument("--alias", action="append", help="another name of the account (repeatable)")
    p.add_argument("--neutral-ipv4", help="address answered while neutral (default: the zone's)")
    p.add_argument("--neutral-ipv6")
    mx = p.add_mutually_exclusive_group()
    mx.add_argument("--mx", dest="mx", action="store_true", default=None, help="publish MX <name> + backup MX")
    mx.add_argument("--no-mx", dest="mx", action="store_false")
    p.add_argument(
        "--mx-recipient",
        action="append",
        help="a user the backup MX accepts mail for: local part or address (repeatable; "
        "none: it verifies with the customer's server)",
    )
    p.add_argument("--mx-recipients-file", help="more of them, one per line ('-': stdin)")
    p.add_argument("--email", action="append", help="contact e-mail (repeatable)")
    p.add_argument("--phone", action="append", help="contact phone for SMS, E.164 (repeatable)")
    p.add_argument("--webhook", help="URL that receives signed JSON events")
    p.add_argument("--email-events", choices=("none", "outages", "all"))
    p.add_argument("--sms-events", choices=("none", "outages", "all"))
    p.add_argument("--webhook-events", choices=("none", "outages", "all"))
    p.add_argument("--sms-min-outage", type=int, help="seconds an outage must last before an SMS")
    p.add_argument("--quiet-hours", help="no SMS in this window, e.g. 22:00-07:00")
    p.add_argument("--tz", help="time zone for quiet hours and message times, e.g. Europe/Berlin")
    p.add_argument("--lang", help='language of its messages: de or en ("" = the zone\'s, else HBDNS_NOTIFY_LANG)')
    wc = p.add_mutually_exclusive_group()
    wc.add_argument(
        "--wildcard", dest="wildcard", action="store_true", default=None, help="*.<name> answers what <name> does"
    )
    wc.add_argument("--no-wildcard", dest="wildcard", action="store_false")
    p.add_argument(
        "--ipv6-interface-id",
        help="fixed IPv6 interface id (lower 64 bits, e.g. ::1a2b:3c4d:5e6f:7081): updates with ip6lanprefix "
        'publish prefix + id ("" = none)',
    )
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
    p = acct.add_parser("acme-credentials", parents=[common], help="ACME DNS-01 credentials for one name")
    p.add_argument("name", help="the account name or alias whose _acme-challenge records they may set")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--revoke", action="store_true", help="revoke the name's credentials")
    g.add_argument("--list", action="store_true", help="list the account's credentials (no secrets)")
    p.set_defaults(func=account_acme_credentials)
    p = acct.add_parser("log", parents=[common])
    p.add_argument("account")
    p.add_argument("-n", "--limit", type=int, default=50)
    p.set_defaults(func=account_log)
    flush.register(acct, common)
