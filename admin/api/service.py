"""What the admin API's views work with, built once in ``main()`` (or by a test) and handed to
``create_app``: the store (with its purger), the tokens, and the request limits."""

from __future__ import annotations

from dataclasses import dataclass

import redis

from hbdns.config import Settings
from hbdns.purge import Purger
from hbdns.ratelimit import Limit, RateLimiter
from hbdns.store import Store
from hbdns.tokens import Tokens


@dataclass(frozen=True)
class AdminApi:
    settings: Settings
    store: Store
    tokens: Tokens
    limiter: RateLimiter
    token_limit: Limit  # requests per token
    authfail_limit: Limit  # requests with a wrong token, per source address

    @classmethod
    def build(cls, settings: Settings, r: redis.Redis, purger: Purger | None = None) -> AdminApi:
        return cls(
            settings=settings,
            store=Store(r, settings, purger),
            tokens=Tokens(r),
            limiter=RateLimiter(r),
            token_limit=Limit(per_minute=settings.admin_api_rate, burst=settings.admin_api_burst),
            authfail_limit=Limit(per_minute=settings.admin_api_authfail_rate, burst=settings.admin_api_authfail_burst),
        )
