"""Status page logins: server-side sessions in Redis, and the CSRF tokens of their forms.

The cookie holds 32 random bytes; Redis holds the session under the SHA-256 of them (a dump of Redis
yields no usable cookie), with a TTL of ``HBDNS_STATUS_SESSION_TTL``. A session remembers how it
was opened: by password (a digest of the password hash then current) or by token (its id). It ends
when the password changes or the token is revoked or expires, at the next request, not only at its
TTL. Each session has its own CSRF token for its forms; the login form, before any session, uses a
double-submit cookie.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from typing import Any

from hbdns import keys
from hbdns.model import Account
from hbdns.tokens import Tokens


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def password_mark(account: Account) -> str:
    """What a password login remembers of the password: a digest of its stored hash."""
    return "pw:" + _digest(account.pw_hash)[:32]


def same(a: str, b: str) -> bool:
    """Constant-time comparison of two tokens (empty never matches)."""
    return bool(a) and bool(b) and hmac.compare_digest(a.encode(), b.encode())


@dataclass(frozen=True)
class Session:
    cookie: str  # the cookie value (only in memory: Redis has its digest)
    account_id: int
    auth: str  # "pw:<digest>" or "token:<id>"
    csrf: str
    created: float


class Sessions:
    def __init__(self, r: Any, ttl: int, tokens: Tokens) -> None:
        self.r = r
        self.ttl = ttl
        self.tokens = tokens

    def open(self, account: Account, auth: str) -> Session:
        session = Session(
            cookie=secrets.token_urlsafe(32),
            account_id=account.id,
            auth=auth,
            csrf=secrets.token_urlsafe(24),
            created=time.time(),
        )
        key = keys.status_session(_digest(session.cookie))
        pipe = self.r.pipeline(transaction=True)  # one key: the hash and its TTL together
        pipe.hset(
            key,
            mapping={
                "account": str(account.id),
                "auth": auth,
                "csrf": session.csrf,
                "created": repr(session.created),
            },
        )
        pipe.expire(key, self.ttl)
        pipe.execute()
        return session

    def load(self, cookie: str, account_of: Any) -> tuple[Session, Account] | None:
        """The session of ``cookie`` and its account, if both are still valid (``account_of(id)``
        reads the account); a session whose password or token is gone is ended here."""
        if not cookie or len(cookie) > 100:
            return None
        key = keys.status_session(_digest(cookie))
        h = self.r.hgetall(key)
        if not h.get("account"):
            return None
        session = Session(cookie, int(h["account"]), h.get("auth", ""), h.get("csrf", ""), float(h.get("created", 0)))
        account = account_of(session.account_id)
        if account is None or not self._still_valid(session, account):
            self.r.delete(key)
            return None
        return session, account

    def _still_valid(self, session: Session, account: Account) -> bool:
        if session.auth.startswith("pw:"):
            return same(session.auth, password_mark(account))
        if session.auth.startswith("token:"):
            token = self.tokens.get(session.auth.removeprefix("token:"))
            return bool(
                token
                and not token.expired(time.time())
                and token.scope.kind == "account"
                and token.scope.account_id == account.id
            )
        return False

    def close(self, session: Session) -> None:
        self.r.delete(keys.status_session(_digest(session.cookie)))
