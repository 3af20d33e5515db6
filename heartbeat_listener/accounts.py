"""What the listener knows of accounts: :class:`AccountInfo` per account and the process's cache."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from hbdns_client import wire


class StoreUnavailable(Exception):
    """Redis could not be reached or answered garbage: the batch is dropped and counted as redis_down."""


class AccountInfo:
    """What the listener needs of an account to accept its beats. ``fp`` is the stored config
    fingerprint (:func:`hbdns.model.config_fingerprint`); without one the entry is not cached.

    A small slotted value rather than a frozen dataclass: it is read on every beat, and it carries
    the key's precomputed HMAC states (``mac_key``), made once when the entry is made.
    """

    __slots__ = ("expiry_ms", "fp", "key", "mac_key", "zone")

    def __init__(self, key: bytes, expiry_ms: int, zone: str, fp: str = "") -> None:
        self.key = key
        self.expiry_ms = expiry_ms
        self.zone = zone
        self.fp = fp
        self.mac_key = wire.MacKey(key)

    def _values(self) -> tuple[bytes, int, str, str]:
        return (self.key, self.expiry_ms, self.zone, self.fp)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, AccountInfo) and self._values() == other._values()

    def __hash__(self) -> int:
        return hash(self._values())

    def __repr__(self) -> str:
        return f"AccountInfo(expiry_ms={self.expiry_ms}, zone={self.zone!r}, fp={self.fp!r})"  # never the key


class Lookup(Protocol):
    """Accounts by id; a missing id is unknown, a string value is a reject reason (e.g. bad_account)."""

    def __call__(self, ids: Sequence[int]) -> Mapping[int, AccountInfo | str]: ...


class AccountCache:
    """Account id -> :class:`AccountInfo`, bounded (it starts afresh when full; refills cost one
    lookup per account). Only entries with a fingerprint are kept: the beat script checks it."""

    def __init__(self, max_entries: int = 2_000_000) -> None:
        self.max_entries = max_entries
        self._d: dict[int, AccountInfo] = {}

    def __len__(self) -> int:
        return len(self._d)

    def get(self, account_id: int) -> AccountInfo | None:
        return self._d.get(account_id)

    def update(self, accounts: Mapping[int, AccountInfo | str]) -> None:
        for account_id, info in accounts.items():
            if isinstance(info, AccountInfo) and info.fp:
                if len(self._d) >= self.max_entries:
                    self._d.clear()
                self._d[account_id] = info
            else:
                self._d.pop(account_id, None)

    def evict(self, account_ids: Sequence[int]) -> None:
        for account_id in account_ids:
            self._d.pop(account_id, None)
