"""Admin API tokens: made with ``hbdns token add``, shown once, stored only as a hash, revocable.

A token reads ``hbdns_<id>_<secret>``: the id (8 random bytes, hex) finds the record, the secret
(32 random bytes) proves it. Only the SHA-256 of the secret is stored: a secret of 256 random bits
needs no deliberately slow hash (a password does), and a check runs on every API request
(docs/api.md compares the two). The digest is compared with
``hmac.compare_digest``, and an unknown id or a malformed token is compared against a dummy
digest, so timing tells neither whether an id exists nor how much of a secret matched.

Scopes (:class:`Scope`): ``admin`` (everything), ``zone:<apex>`` (a reseller: the accounts of one
zone) and ``account:<fqdn>`` (a customer: one account's state and log, its notification
preferences, its key). An account scope is bound to the account's id when the token is made, so a
token outlives neither its account nor a new account that later takes the same name.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hbdns import keys, validate

if TYPE_CHECKING:
    from hbdns.model import Account
    from hbdns.store import Store

PREFIX = "hbdns_"
_FORMAT = re.compile(r"^hbdns_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$")
_DUMMY = hashlib.sha256(b"hbdns-no-such-token").hexdigest()
KINDS = ("admin", "zone", "account")


class TokenError(ValueError):
    """A scope or token id that is refused; ``str()`` says why."""


@dataclass(frozen=True)
class Scope:
    kind: str  # admin | zone | account
    zone: str = ""  # zone: its apex; account: the account's zone
    fqdn: str = ""  # account only
    account_id: int = 0  # account only

    def __str__(self) -> str:
        return {"admin": "admin", "zone": f"zone:{self.zone}", "account": f"account:{self.fqdn}"}[self.kind]

    def covers_zone(self, apex: str) -> bool:
        """Whether this scope may see zone ``apex`` (an account scope sees no zone)."""
        return self.kind == "admin" or (self.kind == "zone" and apex == self.zone)

    def covers_account(self, account: Account) -> bool:
        if self.kind == "admin":
            return True
        if self.kind == "zone":
            return account.zone == self.zone
        return account.id == self.account_id and account.fqdn == self.fqdn

    def to_hash(self) -> dict[str, str]:
        return {"kind": self.kind, "zone": self.zone, "fqdn": self.fqdn, "account_id": str(self.account_id)}

    @classmethod
    def from_hash(cls, h: dict[str, str]) -> Scope:
        return cls(h["kind"], h.get("zone", ""), h.get("fqdn", ""), int(h.get("account_id", 0) or 0))


def resolve_scope(store: Store, text: str) -> Scope:
    """``admin``, ``zone:<apex>`` or ``account:<fqdn or id>``, checked against what exists now."""
    kind, _, target = text.strip().partition(":")
    if kind == "admin" and not target:
        return Scope("admin")
    if kind == "zone" and target:
        apex = validate.hostname(target)
        if store.get_zone(apex) is None:
            raise TokenError(f"no zone {apex}")
        return Scope("zone", zone=apex)
    if kind == "account" and target:
        account_id = store.account_id_for(target)
        account = store.get_account(account_id) if account_id is not None else None
        if account is None:
            raise TokenError(f"no account {target!r}")
        return Scope("account", zone=account.zone, fqdn=account.fqdn, account_id=account.id)
    raise TokenError(f"scope {text!r} must be admin, zone:<apex> or account:<fqdn>")


@dataclass(frozen=True)
class Token:
    id: str
    scope: Scope
    label: str = ""
    created: float = 0.0
    expires: float = 0.0  # Unix s; 0 = never

    def expired(self, now: float) -> bool:
        return bool(self.expires) and now >= self.expires

    def public_dict(self) -> dict[str, Any]:
        """Everything but the secret's digest, for listings and the API's ``GET /token``."""
        return {
            "id": self.id,
            "scope": str(self.scope),
            "label": self.label,
            "created": self.created,
            "expires": self.expires or None,
        }


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class Tokens:
    def __init__(self, r: Any) -> None:
        self.r = r

    def add(self, scope: Scope, label: str = "", ttl: float = 0) -> tuple[Token, str]:
        """A new token and its text (``hbdns_<id>_<secret>``), which is shown once and never stored."""
        if ttl < 0:
            raise TokenError("a token's lifetime must be positive")
        token_id, secret = secrets.token_hex(8), secrets.token_urlsafe(32)
        now = time.time()
        token = Token(id=token_id, scope=scope, label=label[:200], created=now, expires=now + ttl if ttl else 0.0)
        pipe = self.r.pipeline(transaction=False)  # two slots: the token first, then listed
        pipe.hset(
            keys.api_token(token_id),
            mapping={
                **token.scope.to_hash(),
                "label": token.label,
                "created": repr(token.created),
                "expires": repr(token.expires),
                "sha256": _digest(secret),
            },
        )
        pipe.sadd(keys.api_tokens(), token_id)
        pipe.execute()
        return token, f"{PREFIX}{token_id}_{secret}"

    @staticmethod
    def _token(token_id: str, h: dict[str, str]) -> Token:
        return Token(
            id=token_id,
            scope=Scope.from_hash(h),
            label=h.get("label", ""),
            created=float(h.get("created", 0)),
            expires=float(h.get("expires", 0)),
        )

    def get(self, token_id: str) -> Token | None:
        h = self.r.hgetall(keys.api_token(token_id))
        return self._token(token_id, h) if h.get("kind") else None

    def list(self) -> list[Token]:
        out = [self.get(i) for i in sorted(self.r.smembers(keys.api_tokens()))]
        return sorted((t for t in out if t), key=lambda t: t.created)

    def revoke(self, token_id: str) -> Token:
        token = self.get(token_id.strip())
        if token is None:
            raise TokenError(f"no token {token_id!r} (see hbdns token list)")
        pipe = self.r.pipeline(transaction=False)  # two slots: the token first (revoked), then unlisted
        pipe.delete(keys.api_token(token.id))
        pipe.srem(keys.api_tokens(), token.id)
        pipe.execute()
        return token

    def check(self, presented: str, now: float | None = None) -> Token | None:
        """The token ``presented`` proves, or None (malformed, unknown, wrong secret, expired)."""
        m = _FORMAT.match(presented.strip())
        token_id, secret = (m.group(1), m.group(2)) if m else ("", presented)
        h = self.r.hgetall(keys.api_token(token_id)) if token_id else {}
        stored = h.get("sha256") or _DUMMY
        ok = hmac.compare_digest(stored, _digest(secret)) and bool(h.get("sha256"))
        if not ok or not h.get("kind"):
            return None
        token = self._token(token_id, h)
        return None if token.expired(time.time() if now is None else now) else token
