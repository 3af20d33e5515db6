"""Who may do what: bearer tokens, their rate limits, and what each scope covers.

Every route declares the token kinds it serves (:func:`allow`); :func:`authenticate` runs before the
request models are read, so the answers come in this order: 401 (no valid token), 429 (too many
wrong tokens from this address, or this token's own limit), 403 (this kind of token may not do this
at all), then the view's 422/404/409. Inside its kind, a token sees only what its scope covers, and
anything else is *absent*: :func:`visible_account` answers exactly as for an account that does not
exist (404, same text), so a zone or account token learns nothing about other accounts.

Rate limits take a bucket key in Redis on every request (``hbdns:rl:*``); nothing else is written
for a refused request.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, TypeVar

from flask import current_app, g, request

from admin.api.problems import ApiProblem
from admin.api.service import AdminApi
from hbdns import keys, validate
from hbdns.model import Account, Zone
from hbdns.store import NotFound
from hbdns.tokens import Scope, Token

EXTENSION = "hbdns_admin_api"
SCOPES_ATTR = "_hbdns_scopes"
CHALLENGE = {"WWW-Authenticate": 'Bearer realm="hbdns"'}

F = TypeVar("F", bound=Callable[..., Any])


def allow(*kinds: str, action: str) -> Callable[[F], F]:
    """Mark a view as served to tokens of ``kinds`` (admin, zone, account); ``action`` names it in
    the 403 others get ("manage zones")."""

    def mark(func: F) -> F:
        setattr(func, SCOPES_ATTR, (frozenset(kinds), action))
        return func

    return mark


def api() -> AdminApi:
    service: AdminApi = current_app.extensions[EXTENSION]
    return service


def _retry_after(seconds: float) -> dict[str, str]:
    return {"Retry-After": str(max(1, math.ceil(seconds)))}


def _bearer() -> str:
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" else ""


def _valid(service: AdminApi, token: Token | None) -> Token | None:
    """An account token whose account is gone (or renamed away) proves nothing any more."""
    if token is None or token.scope.kind != "account":
        return token
    account = service.store.get_account(token.scope.account_id)
    return token if account is not None and account.fqdn == token.scope.fqdn else None


def authenticate() -> None:
    """``before_request``: the token of a request to a route marked with :func:`allow`."""
    view = current_app.view_functions.get(request.endpoint or "")
    marked = getattr(view, SCOPES_ATTR, None)
    if marked is None:
        return  # the OpenAPI document, or no such route (404 follows)
    kinds, action = marked
    service = api()
    fail_key = keys.ratelimit("api-authfail", request.remote_addr or "unknown")
    wait = service.limiter.check(fail_key, service.authfail_limit, take=False)
    if wait:
        raise ApiProblem(429, "too many requests with a wrong token from this address", headers=_retry_after(wait))
    presented = _bearer()
    token = _valid(service, service.tokens.check(presented)) if presented else None
    if token is None:
        if presented:
            service.limiter.check(fail_key, service.authfail_limit)
        detail = "this token is not valid" if presented else "an API token is required (Authorization: Bearer ...)"
        raise ApiProblem(401, detail, headers=CHALLENGE)
    wait = service.limiter.check(keys.ratelimit("api-token", token.id), service.token_limit)
    if wait:
        raise ApiProblem(429, "this token's request limit is reached", headers=_retry_after(wait))
    if token.scope.kind not in kinds:
        raise ApiProblem(403, f"a token of scope {token.scope} may not {action}")
    g.hbdns_token = token


def token() -> Token:
    found: Token = g.hbdns_token
    return found


def scope() -> Scope:
    return token().scope


def visible_account(ref: str) -> Account:
    """The account ``ref`` (id or name) if this token's scope covers it; else exactly the 404 of an
    account that does not exist."""
    store = api().store
    account_id = store.account_id_for(ref)
    account = store.get_account(account_id) if account_id is not None else None
    if account is None or not scope().covers_account(account):
        raise NotFound(f"no account {ref!r}")
    return account


def visible_zone(apex: str) -> Zone:
    """The zone ``apex`` if this token's scope covers it; else the 404 of a zone that does not exist."""
    try:
        zone = api().store.get_zone(apex)
    except validate.ValidationError:
        zone = None
    if zone is None or not scope().covers_zone(zone.apex):
        raise NotFound(f"no zone {apex}")
    return zone
