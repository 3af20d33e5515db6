"""The store's refusals, shared by :mod:`hbdns.store` and :mod:`hbdns.store_accounts` (which
:mod:`hbdns.store` imports, so they cannot live there)."""

from __future__ import annotations


class StoreError(ValueError):
    """An operation that is refused (duplicate, unknown name, zone in use); ``str()`` says why."""

    def __init__(self, reason: str, field: str = "") -> None:
        super().__init__(reason)
        self.field = field  # the request field it is about, when there is one ("fqdn", "aliases.0")


class NotFound(StoreError):
    """No such zone, account or dead letter (the admin API's 404)."""


class Conflict(StoreError):
    """The stored data forbids it: a name taken, a zone that exists or still has accounts (409)."""
