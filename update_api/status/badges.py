"""Public status badges: an SVG per account at an unguessable URL, off until the customer turns it on.

The id is 18 random bytes (healthchecks-style: the URL is the only secret, and it reveals only
live/neutral and the name the customer chose to show). It is stored in the account's hash
(``badge``; absent = off, so accounts from before badges need no migration) and in the index
``keys.badges()``; turning the badge off and on again makes a new URL, and removing the account
drops both (:meth:`hbdns.store.Store.remove_account`).

The index is a global key and the account's hash is in its shard's slot, so no transaction spans
them: the account's field is the confirmation (:func:`account_for` checks it), written after the
index entry and removed before it, so the index never leads to a badge the account does not have.
"""

from __future__ import annotations

import secrets
from typing import Any

import redis

from hbdns import keys


def badge_id(r: Any, account_id: int) -> str:
    return str(r.hget(keys.account(account_id), "badge") or "")


def enable(r: Any, account_id: int) -> str:
    """The account's badge id, made now if it has none ("" if the account is gone meanwhile)."""
    current = badge_id(r, account_id)
    if current:
        return current
    new = secrets.token_urlsafe(18)
    key = keys.account(account_id)
    r.hset(keys.badges(), new, str(account_id))  # the index first: it counts once the account has it
    with r.pipeline(transaction=True) as pipe:
        try:
            pipe.watch(key)  # the account's one key: a MULTI in one slot
            if not pipe.hexists(key, "fqdn") or pipe.hexists(key, "badge"):
                pipe.unwatch()
                r.hdel(keys.badges(), new)
                return badge_id(r, account_id)
            pipe.multi()
            pipe.hset(key, "badge", new)
            pipe.execute()
        except redis.WatchError:
            r.hdel(keys.badges(), new)
            return badge_id(r, account_id)
    return new


def disable(r: Any, account_id: int) -> None:
    """Off: the account's field first (the badge stops at once), then the index entry."""
    current = badge_id(r, account_id)
    r.hdel(keys.account(account_id), "badge")
    if current:
        r.hdel(keys.badges(), current)


def account_for(r: Any, badge: str) -> int | None:
    """The account whose badge is ``badge`` (checked against the account's own field)."""
    if not badge or len(badge) > 64:
        return None
    raw = r.hget(keys.badges(), badge)
    if not raw or badge_id(r, int(raw)) != badge:
        return None
    return int(raw)
