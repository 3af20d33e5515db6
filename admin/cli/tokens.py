"""``hbdns token``: admin API tokens (add, list, revoke).

A token is printed once, by ``add``; only its digest is stored (:mod:`hbdns.tokens`). An
``account:`` token is also a login for the customer status page: with ``HBDNS_STATUS_PUBLIC_URL``
set, ``add`` prints the link to mail the customer (the token sits after ``#``, which browsers never
send to a server, so no proxy or access log sees it).
"""

from __future__ import annotations

import argparse
from typing import Any

from admin.cli.output import emit, table, ts
from hbdns.store import Store
from hbdns.tokens import Tokens, resolve_scope


def token_add(store: Store, args: argparse.Namespace) -> int:
    scope = resolve_scope(store, args.scope)
    token, text = Tokens(store.r).add(scope, label=args.label or "", ttl=args.ttl or 0)
    lines = [
        f"token {token.id} ({scope}) added:",
        text,
        f"(shown once: store it now; `hbdns token revoke {token.id}` ends it)",
    ]
    link = ""
    if scope.kind == "account" and store.settings.status_public_url:
        link = f"{store.settings.status_public_url.rstrip('/')}/login#token={text}"
        lines.append(f"status page login link for the customer: {link}")
    emit(args, {**token.public_dict(), "token": text, "login_link": link or None}, "\n".join(lines))
    return 0


def token_list(store: Store, args: argparse.Namespace) -> int:
    tokens = Tokens(store.r).list()
    rows = [
        {
            "id": t.id,
            "scope": str(t.scope),
            "label": t.label or "-",
            "created": ts(t.created),
            "expires": ts(t.expires) if t.expires else "never",
        }
        for t in tokens
    ]
    emit(args, [t.public_dict() for t in tokens], table(rows, ["id", "scope", "label", "created", "expires"]))
    return 0


def token_revoke(store: Store, args: argparse.Namespace) -> int:
    token = Tokens(store.r).revoke(args.id)
    emit(args, {"revoked": token.id}, f"token {token.id} ({token.scope}) revoked")
    return 0


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    """The ``token`` subcommands."""
    tok = sub.add_parser("token", help="admin API tokens").add_subparsers(dest="cmd", required=True)
    p = tok.add_parser("add", parents=[common], help="make a token (printed once)")
    p.add_argument("--scope", required=True, help="admin, zone:<apex> or account:<fqdn>")
    p.add_argument("--label", help="what the token is for (shown in token list)")
    p.add_argument("--ttl", type=float, help="seconds until it expires (default: never)")
    p.set_defaults(func=token_add)
    tok.add_parser("list", parents=[common]).set_defaults(func=token_list)
    p = tok.add_parser("revoke", parents=[common])
    p.add_argument("id", help="the token id (the part after hbdns_, see token list)")
    p.set_defaults(func=token_revoke)
