"""What the backup MX's tables answer, from the account data in Redis (read-only).

Three socketmap names, one per Postfix parameter of deploy/postfix/main.cf:

- ``domains`` (``relay_domains``, and so ``fast_flush_domains``): every name (primary or alias) of
  an account with MX enabled. Anything else is NOTFOUND, so the backup MX relays for nobody else.
- ``transport`` (``transport_maps``): ``relay:[<account's primary name>]`` for an address at such a
  name. The backup MX then delivers to the customer's A/AAAA and never looks at the MX set, so it
  can never find itself as best MX ("mail ... loops back to myself") whatever DNS says, and a
  neutral address defers (421 from the neutral host) instead of bouncing.
- ``recipient`` (``check_recipient_access``): the per-account recipient list when the account has
  one (``mx_recipients``: a JSON list of local parts, or of whole addresses for one name): listed ->
  ``DUNNO`` (accept), not listed -> ``550 5.1.1`` during SMTP. An account without a list gets
  ``reject_unverified_recipient``: Postfix asks the customer's server (cached in
  ``address_verify_map``) and refuses unknown users during SMTP, deferring (450) while it cannot
  ask. Either way no message for an unknown user is accepted and bounced later.

Redis errors answer TEMP: Postfix then replies 451 (try again later) and bounces nothing.
"""

from __future__ import annotations

import json
from typing import Any

import redis

from backup_mx import socketmap
from hbdns import keys, validate

# Account hash field with the recipient list (hbdns.model.Account.mx_recipients); absent or empty
# means "verify".
RECIPIENTS_FIELD = "mx_recipients"
_FIELDS = ("fqdn", "mx", RECIPIENTS_FIELD)

MAPS = ("domains", "transport", "recipient")


class MxMaps:
    def __init__(self, r: redis.Redis) -> None:
        self.r: Any = r

    def answer(self, req: socketmap.Request) -> bytes:
        """The reply netstring for one request; never raises for bad keys."""
        if req.name not in MAPS:
            return socketmap.perm(f"unknown table {req.name[:40]!r}")
        local, _, domain = req.key.rpartition("@")
        if req.name == "domains" and local:
            return socketmap.notfound()
        try:
            name = validate.hostname(domain)
        except validate.ValidationError:
            return socketmap.notfound()
        try:
            account = self._account(name)
        except redis.RedisError as exc:
            return socketmap.temp(f"hbdns account lookup failed: {type(exc).__name__}")
        if account is None:
            return socketmap.notfound()
        fqdn, recipients = account
        if req.name == "domains":
            return socketmap.ok(name)
        if req.name == "transport":
            return socketmap.ok(f"relay:[{fqdn}]")
        if not local:
            return socketmap.notfound()
        return socketmap.ok(recipient_action(local, name, recipients))

    def _account(self, name: str) -> tuple[str, tuple[str, ...] | None] | None:
        """(primary name, recipient list or None) of the MX-enabled account owning ``name``."""
        account_id = self.r.hget(keys.names(), name)
        if not account_id:
            return None
        fqdn, mx, raw = self.r.hmget(keys.account(int(account_id)), _FIELDS)
        if not fqdn or mx != "1":
            return None
        return fqdn, parse_recipients(raw)


def parse_recipients(raw: str | None) -> tuple[str, ...] | None:
    """The stored list, lowercased; None when there is none (or it is unreadable: verify then)."""
    if not raw:
        return None
    try:
        items = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(items, list):
        return None
    return tuple(str(x).strip().lower() for x in items if str(x).strip()) or None


def recipient_action(local: str, domain: str, recipients: tuple[str, ...] | None) -> str:
    """The access(5) action for ``local@domain``."""
    if recipients is None:
        return "reject_unverified_recipient"
    low = local.lower()
    if low in recipients or f"{low}@{domain}" in recipients:
        return "DUNNO"
    return "550 5.1.1 User unknown"
