"""``hbdns account flush NAME``: ask every backup MX to deliver the account's queued mail now.

The same request the notifier makes when an MX account recovers (``notifier/flush.py``): ``ETRN``
(or ``postqueue -s``) for each of its names to every ``HBDNS_BACKUP_MX_FLUSH`` target, the results
in the account's log (``hbdns account log``) and the counters. Harmless at any time: a backup MX
whose customer is still down defers the mail once more. Exits 1 when a target did not flush.
"""

from __future__ import annotations

import argparse
from typing import Any

from admin.cli.output import Refused, emit, table
from hbdns import recovery_flush
from hbdns.mta_flush import from_settings
from hbdns.store import Store


def account_flush(store: Store, args: argparse.Namespace) -> int:
    account = store.resolve(args.account)
    if not store.settings.backup_mx_flush:
        raise Refused("no backup MX to flush: set HBDNS_BACKUP_MX_FLUSH")
    if not account.mx:
        raise Refused(f"{account.fqdn} has no MX (hbdns account set {account.fqdn} --mx)")
    flusher = from_settings(store.settings)
    results = recovery_flush.flush_account(
        store.r, flusher, account, why="admin", log_size=store.settings.account_log_size
    )
    rows = [
        {"name": r.domain, "backup MX": r.target, "outcome": str(r.outcome), "reply": f"{r.code} {r.detail}"}
        for r in results
    ]
    emit(args, [r.to_dict() for r in results], table(rows, ["name", "backup MX", "outcome", "reply"]))
    return 0 if all(r.ok for r in results) else 1


def register(acct: Any, common: argparse.ArgumentParser) -> None:
    """``account flush`` (added to the ``account`` subcommands)."""
    p = acct.add_parser("flush", parents=[common], help="ask the backup MXes to deliver this account's mail now")
    p.add_argument("account", help="account id or name")
    p.set_defaults(func=account_flush)
