"""What the status page does, without Flask: log in, read an account, change what a customer may.

A password login is the update API's own check (:meth:`update_api.service.UpdateService.authenticate`):
the same password, the same failed-login buckets per (source, account), source and account, checked
before the slow hash. So a guesser gains nothing by trying the page instead of ``/nic/update``, and
a customer locked out there is locked out here. A token login (an ``account:`` token, from the link
``hbdns token add`` prints) counts failures per source in the bucket of the admin API's bad tokens.

The page changes nothing DNS answers (preferences, the heartbeat key, the badge), so its store has
no purger.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from redis import Redis

from hbdns import keys
from hbdns.config import Settings
from hbdns.model import Account
from hbdns.purge import Purger
from hbdns.ratelimit import Limit, RateLimiter
from hbdns.store import Store
from hbdns.tokens import Tokens
from update_api.parsing import UpdateRequest, source_subject
from update_api.service import UpdateService
from update_api.status.sessions import Sessions, password_mark

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Login:
    account: Account
    auth: str  # what the session remembers of how it was opened (sessions.Session.auth)


@dataclass(frozen=True)
class Refused:
    """A login that did not happen: ``wait`` > 0 when rate-limited (seconds), else wrong credentials."""

    wait: float = 0.0


class StatusService:
    def __init__(self, settings: Settings, r: Redis) -> None:
        self.settings = settings
        self.r = r
        self.store = Store(r, settings)
        self.updates = UpdateService(settings, r, Purger((), ""))
        self.tokens = Tokens(r)
        self.sessions = Sessions(r, settings.status_session_ttl, self.tokens)
        self.limiter = RateLimiter(r)
        self.token_failures = Limit(
            per_minute=settings.admin_api_authfail_rate, burst=settings.admin_api_authfail_burst
        )

    def account(self, account_id: int) -> Account | None:
        return self.store.get_account(account_id)

    def login_password(self, name: str, password: str, source: str | None) -> Login | Refused:
        auth = self.updates.authenticate(UpdateRequest(params={}, username=name, password=password, source=source))
        if isinstance(auth, tuple):
            log.info("status page login", extra={"account": auth[0].id, "source": source, "via": "password"})
            return Login(auth[0], password_mark(auth[0]))
        if auth.lines[0] == "abuse":
            wait = float(dict(auth.headers).get("Retry-After", "60"))
            return Refused(wait=wait)
        return Refused()

    def login_token(self, text: str, source: str | None) -> Login | Refused:
        bucket = keys.ratelimit("api-authfail", source_subject(source))
        wait = self.limiter.check(bucket, self.token_failures, take=False)
        if wait:
            return Refused(wait=wait)
        token = self.tokens.check(text) if text else None
        account = self.store.get_account(token.scope.account_id) if token and token.scope.kind == "account" else None
        if token is None or account is None or account.fqdn != token.scope.fqdn:
            self.limiter.check(bucket, self.token_failures)
            log.warning("status page token login failed", extra={"source": source})
            return Refused()
        log.info("status page login", extra={"account": account.id, "source": source, "via": f"token {token.id}"})
        return Login(account, f"token:{token.id}")
