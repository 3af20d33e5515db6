"""``/api/v1/accounts``: list, create, show, change, remove, rotate the key, set the password, the
event log and the current state.

Secrets appear once: the heartbeat key (and a client config holding it) in the answers of create
and rotate-key, a generated update password in those of create and set-password. Scopes: admin and
zone tokens do everything within what they cover; an account token reads its own account, changes
only its notification preferences and rotates its key.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlencode

from flask import request
from flask_openapi3 import APIBlueprint, Tag

from admin.api.auth import allow, api, scope, token, visible_account
from admin.api.problems import ApiProblem, documented
from admin.api.schemas import (
    AccountChange,
    AccountCreate,
    AccountCreated,
    AccountOut,
    AccountPage,
    AccountPath,
    AccountQuery,
    EventList,
    EventsQuery,
    KeyRotated,
    PasswordOut,
    PasswordSet,
    StateOut,
    dump,
)
from hbdns import provision, validate
from hbdns.model import Account
from hbdns.provision import AccountChanges

log = logging.getLogger(__name__)

bp = APIBlueprint(
    "accounts",
    __name__,
    url_prefix="/api/v1",
    abp_tags=[Tag(name="accounts", description="customer accounts")],
    abp_security=[{"token": []}],
    abp_responses=documented(401, 403, 422, 429),
)

STATE_FIELDS = tuple(StateOut.model_fields)


def _out(account: Account) -> dict[str, Any]:
    return provision.status_dict(api().store.status(account))


def _prefs(body: Any) -> dict[str, Any] | None:
    return dump(body.prefs) if body.prefs is not None else None


def _audit(what: str, account: Account) -> None:
    log.info(what, extra={"account": account.id, "fqdn": account.fqdn, "token": token().id})


@bp.get("/accounts", summary="List accounts", responses={200: AccountPage, **documented(404)})
@allow("admin", "zone", "account", action="list accounts")
def list_accounts(query: AccountQuery) -> Any:
    """Accounts by id, ``limit`` per page; ``next`` is the next page's URL. A zone token lists its
    zone's accounts, an account token only its own."""
    store, sc = api().store, scope()
    zone = query.zone
    if zone is not None:
        zone = validate.hostname(zone) if zone.strip() else None
    if sc.kind == "zone" and zone not in (None, sc.zone):
        raise ApiProblem(404, f"no zone {zone}")
    if sc.kind == "account":
        own = [st for st in store.statuses([sc.account_id]) if st.account.id > query.after]
        items = [
            st
            for st in own
            if zone in (None, st.account.zone) and query.state in (None, "live" if st.live else "neutral")
        ]
        return {"items": [provision.status_dict(st) for st in items], "next": None}
    page = provision.page_accounts(
        store,
        zone=zone or (sc.zone if sc.kind == "zone" else None),
        state=query.state,
        after=query.after,
        limit=query.limit,
    )
    nxt = None
    if page.next_after is not None:
        params = {k: v for k, v in {"zone": zone, "state": query.state, "limit": query.limit}.items() if v}
        nxt = f"{request.path}?{urlencode({**params, 'after': page.next_after})}"
    return (
        {"items": [provision.status_dict(st) for st in page.items], "next": nxt},
        200,
        ({"Link": f'<{nxt}>; rel="next"'} if nxt else {}),
    )


@bp.post("/accounts", summary="Create an account", responses={201: AccountCreated, **documented(409)})
@allow("admin", "zone", action="create accounts")
def create_account(body: AccountCreate) -> Any:
    """Returns the heartbeat key, a client config holding it and (unless you chose one) the update
    password: all three only in this answer."""
    store, sc = api().store, scope()
    if sc.kind == "zone":
        try:
            zone = store.find_zone(validate.hostname(body.fqdn))
        except validate.ValidationError:
            zone = sc.zone  # the name itself is refused below, with its reason
        if zone != sc.zone:
            raise ApiProblem(403, f"a token of scope {sc} may create accounts only in zone {sc.zone}")
    created = provision.create_account(
        store,
        body.fqdn,
        body.plan,
        password=body.password,
        aliases=body.aliases,
        neutral_ipv4=body.neutral_ipv4,
        neutral_ipv6=body.neutral_ipv6,
        mx=body.mx,
        mx_recipients=body.mx_recipients,
        emails=body.emails,
        phones=body.phones,
        webhook=body.webhook,
        prefs=_prefs(body),
    )
    account = created.account
    _audit("account created", account)
    out = {
        **_out(account),
        "heartbeat_key": account.hb_key.hex(),
        "update_password": created.password,
        "client_config": provision.client_config(store, account),
    }
    return out, 201, {"Location": f"{request.path}/{account.id}"}


@bp.get("/accounts/<account>", summary="Show an account", responses={200: AccountOut, **documented(404)})
@allow("admin", "zone", "account", action="read accounts")
def show_account(path: AccountPath) -> Any:
    return _out(visible_account(path.account))


@bp.patch("/accounts/<account>", summary="Change an account", responses={200: AccountOut, **documented(404, 409)})
@allow("admin", "zone", "account", action="change accounts")
def change_account(path: AccountPath, body: AccountChange) -> Any:
    """Plan, aliases, MX, neutral addresses, contacts, notification preferences. An account token
    may change only ``prefs``."""
    old = visible_account(path.account)
    changes = AccountChanges(**{**dump(body), "prefs": _prefs(body)})
    if scope().kind == "account" and set(changes.given()) - {"prefs"}:
        raise ApiProblem(403, f"a token of scope {scope()} may change only prefs")
    new = provision.change_account(api().store, old, changes)
    _audit("account changed", new)
    return _out(new)


@bp.delete("/accounts/<account>", summary="Remove an account", responses={204: None, **documented(404)})
@allow("admin", "zone", action="remove accounts")
def remove_account(path: AccountPath) -> Any:
    account = provision.remove_account(api().store, visible_account(path.account))
    _audit("account removed", account)
    return "", 204


@bp.post(
    "/accounts/<account>/rotate-key", summary="Make a new heartbeat key", responses={200: KeyRotated, **documented(404)}
)
@allow("admin", "zone", "account", action="rotate keys")
def rotate_key(path: AccountPath) -> Any:
    """The old key stops working at once; the new one (and a client config) is only in this answer."""
    store = api().store
    account = store.rotate_key(visible_account(path.account))
    _audit("heartbeat key rotated", account)
    return {
        "id": account.id,
        "heartbeat_key": account.hb_key.hex(),
        "client_config": provision.client_config(store, account),
    }


@bp.put(
    "/accounts/<account>/password", summary="Set the update password", responses={200: PasswordOut, **documented(404)}
)
@allow("admin", "zone", action="set passwords")
def set_password(path: AccountPath, body: PasswordSet) -> Any:
    account, generated = provision.set_password(api().store, visible_account(path.account), body.password)
    _audit("update password set", account)
    return {"id": account.id, "update_password": generated}


@bp.get("/accounts/<account>/events", summary="The event log", responses={200: EventList, **documented(404)})
@allow("admin", "zone", "account", action="read event logs")
def events(path: AccountPath, query: EventsQuery) -> Any:
    """Transitions, newest first: created, recovered (with the outage's ``duration_ms``),
    neutralized (with its ``reason``), ip_changed (``family``, ``old``, ``new``)."""
    account = visible_account(path.account)
    return {"items": api().store.account_log(account.id, query.limit)}


@bp.get("/accounts/<account>/state", summary="The current state", responses={200: StateOut, **documented(404)})
@allow("admin", "zone", "account", action="read state")
def state(path: AccountPath) -> Any:
    full = _out(visible_account(path.account))
    return {k: full[k] for k in STATE_FIELDS}
