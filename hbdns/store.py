"""Zones and accounts in Redis: create, read, change, remove. Used by the CLI, the admin API and tests.

No write is a transaction across Redis Cluster slots (the same code runs on a standalone Redis and a
Cluster): accounts are written in single-slot steps in an order that keeps DNS right between them
(:mod:`hbdns.store_accounts`), names claimed all or nothing in the global index
(:mod:`hbdns.provision_names`), so two admins adding the same name cannot both succeed. State
fields are never written here (see :mod:`hbdns.liveness`).
Checking a request is :mod:`hbdns.provision`'s job; a store built with a purger flushes the names
whose answers a change alters from pdns' caches (:meth:`Store.purge`), so every surface purges alike.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

import redis

from hbdns import keys, notify_queue, store_accounts, validate, zone_serial
from hbdns.config import Settings
from hbdns.liveness import Liveness
from hbdns.model import Account, AccountState, Zone
from hbdns.passwords import hash_password
from hbdns.plans import Plan
from hbdns.purge import Purger
from hbdns.store_errors import Conflict, NotFound, StoreError

__all__ = ["AccountStatus", "Conflict", "NotFound", "Store", "StoreError", "accounts_by_id"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AccountStatus:
    account: Account
    state: AccountState
    alive_ms: int  # remaining liveness in ms of the longest-lived family; 0 when neutral
    alive4_ms: int = 0  # of IPv4 (A)
    alive6_ms: int = 0  # of IPv6 (AAAA)

    @property
    def live(self) -> bool:
        return self.alive_ms > 0


def _alive_keys(account_id: int) -> tuple[str, str, str]:
    return keys.alive(account_id, 4), keys.alive(account_id, 6), keys.alive_legacy(account_id)


def _status(account: Account, h: dict[str, str], ttls: list[int]) -> AccountStatus:
    """A status from the hash and the PTTLs of :func:`_alive_keys` (the legacy key: both families)."""
    p4, p6, legacy = (max(int(t), 0) for t in ttls)
    a4, a6 = max(p4, legacy), max(p6, legacy)
    return AccountStatus(account, AccountState.from_hash(h), max(a4, a6), a4, a6)


class Store:
    def __init__(self, r: redis.Redis, settings: Settings, purger: Purger | None = None) -> None:
        # Any: redis-py's types cannot express decode_responses=True (every reply here is str).
        self.r: Any = r
        self.settings = settings
        self.purger = purger
        self.plans: dict[str, Plan] = settings.plan_table()
        self.liveness = Liveness(
            r,
            max_skew_ms=int(settings.heartbeat_max_skew * 1000),
            events_maxlen=settings.events_maxlen,
            log_size=settings.account_log_size,
            windows={name: p.expiry_ms for name, p in self.plans.items()},
        )

    def purge(self, names: Iterable[str]) -> None:
        """Flush ``names`` from pdns' caches (best effort, off the write path); no purger: nothing."""
        if self.purger is not None:
            self.purger.purge(sorted(set(names)))

    # --- zones ------------------------------------------------------------------------------------

    def zone_apexes(self) -> list[str]:
        return sorted(self.r.smembers(keys.zones()))

    def get_zone(self, apex: str) -> Zone | None:
        h = self.r.hgetall(keys.zone(validate.hostname(apex)))
        return Zone.from_hash(h) if h else None

    def zone_serial(self, apex: str) -> int:
        """The zone's SOA serial: its hash's ``serial`` plus every shard's count (hbdns.zone_serial)."""
        return zone_serial.read(self.r, apex)

    def list_zones(self) -> list[Zone]:
        out = []
        for apex in self.zone_apexes():
            z = self.get_zone(apex)
            if z:
                out.append(z)
        return out

    def find_zone(self, name: str) -> str | None:
        """The apex of the most specific zone containing ``name``."""
        best = None
        for apex in self.zone_apexes():
            if validate.in_zone(name, apex) and (best is None or len(apex) > len(best)):
                best = apex
        return best

    def add_zone(self, zone: Zone) -> Zone:
        now = time.time()
        zone = replace(zone, created=now, updated=now)
        key = keys.zone(zone.apex)
        # the hash made only if absent (WATCH/MULTI on its one key), then listed: the zone list is
        # another slot, and a zone is served only once listed
        with self.r.pipeline(transaction=True) as pipe:
            pipe.watch(key)
            if pipe.exists(key):
                raise Conflict(f"zone {zone.apex} exists already", "apex")
            pipe.multi()
            pipe.hset(key, mapping={**zone.to_hash(), "serial": str(int(now))})
            try:
                pipe.execute()
            except redis.WatchError:
                raise Conflict(f"zone {zone.apex} exists already", "apex") from None
        self.r.sadd(keys.zones(), zone.apex)
        return zone

    def update_zone(self, zone: Zone) -> Zone:
        zone = replace(zone, updated=time.time())
        key = keys.zone(zone.apex)
        if not self.r.exists(key):
            raise NotFound(f"no zone {zone.apex}")
        pipe = self.r.pipeline(transaction=True)  # one key: one slot
        pipe.hset(key, mapping=zone.to_hash())
        pipe.hincrby(key, "serial", 1)
        pipe.execute()
        return zone

    def remove_zone(self, apex: str, *, force: bool = False) -> None:
        apex = validate.hostname(apex)
        if not self.r.exists(keys.zone(apex)):
            raise NotFound(f"no zone {apex}")
        members = sorted(int(i) for i in self.r.smembers(keys.zone_accounts(apex)))
        if members and not force:
            raise Conflict(f"zone {apex} has {len(members)} account(s); remove them or use --force")
        for account_id in members:
            self.remove_account(account_id)
        self.r.srem(keys.zones(), apex)  # not served from here on; then its keys (one slot)
        self.r.delete(keys.zone(apex), keys.zone_accounts(apex), keys.zone_ents(apex))

    # --- accounts ---------------------------------------------------------------------------------

    def new_account(self, fqdn: str, plan: str, **kw: Any) -> Account:
        """Check everything and build the account value (not yet stored; id 0): the keywords and
        refusals of :func:`hbdns.provision.build_account`."""
        from hbdns.provision import build_account

        return build_account(self, fqdn, plan, **kw)

    def add_account(self, account: Account) -> Account:
        """Store a new account; every name must be free. Emits ``created``."""
        return store_accounts.add(self, account)

    def bulk_add_accounts(self, accounts: list[Account], chunk: int = 2000) -> list[Account]:
        """Store many new accounts fast (imports, benchmarks): :func:`hbdns.store_accounts.bulk_add`."""
        return store_accounts.bulk_add(self, accounts, chunk)

    def get_account(self, account_id: int) -> Account | None:
        h = self.r.hgetall(keys.account(account_id))
        return Account.from_hash(h) if h.get("fqdn") else None

    def account_id_for(self, ref: str) -> int | None:
        """Resolve an account reference: its id, or any of its names."""
        ref = ref.strip()
        if ref.isdigit():
            return int(ref) if self.r.exists(keys.account(int(ref))) else None
        try:
            name = validate.hostname(ref)
        except validate.ValidationError:
            return None
        raw = self.r.hget(keys.names(), name)
        if not raw or not str(raw).isdigit():
            return None
        # as the DNS lookup does: the name counts once the account's shard confirms it (a claim
        # still in progress, or a dead writer's, resolves to nothing)
        confirmed = self.r.hget(keys.shard_names(keys.shard_of(int(raw))), name)
        return int(raw) if confirmed == raw else None

    def resolve(self, ref: str) -> Account:
        account_id = self.account_id_for(ref)
        account = self.get_account(account_id) if account_id is not None else None
        if account is None:
            raise NotFound(f"no account {ref!r}")
        return account

    def list_accounts(self, zone: str | None = None) -> list[Account]:
        ids = self.r.smembers(keys.zone_accounts(zone) if zone else keys.accounts())
        pipe = self.r.pipeline(transaction=False)
        ordered = sorted(int(i) for i in ids)
        for account_id in ordered:
            pipe.hgetall(keys.account(account_id))
        return [Account.from_hash(h) for h in pipe.execute() if h.get("fqdn")]

    def account_ids(self, zone: str | None = None) -> set[int]:
        return {int(i) for i in self.r.smembers(keys.zone_accounts(zone) if zone else keys.accounts())}

    def count_accounts(self, zone: str) -> int:
        return int(self.r.scard(keys.zone_accounts(zone)))

    def statuses(self, account_ids: Iterable[int]) -> list[AccountStatus]:
        """Config and state of many accounts in one round trip (ids of removed accounts skipped)."""
        ids = list(account_ids)
        pipe = self.r.pipeline(transaction=False)
        for account_id in ids:
            pipe.hgetall(keys.account(account_id))
            for key in _alive_keys(account_id):
                pipe.pttl(key)
        replies = pipe.execute()
        return [
            _status(Account.from_hash(replies[4 * i]), replies[4 * i], replies[4 * i + 1 : 4 * i + 4])
            for i in range(len(ids))
            if replies[4 * i].get("fqdn")
        ]

    def save_account(self, old: Account, new: Account) -> Account:
        """Write changed config fields (and the name index when aliases change)."""
        return store_accounts.save(self, old, new)

    def rotate_key(self, account: Account) -> Account:
        return self.save_account(account, replace(account, hb_key=secrets.token_bytes(32)))

    def set_password(self, account: Account, password: str) -> Account:
        return self.save_account(account, replace(account, pw_hash=hash_password(password)))

    def remove_account(self, account_id: int) -> Account:
        return store_accounts.remove(self, account_id)

    def status(self, account: Account) -> AccountStatus:
        pipe = self.r.pipeline(transaction=False)
        pipe.hgetall(keys.account(account.id))
        for key in _alive_keys(account.id):
            pipe.pttl(key)
        h, *ttls = pipe.execute()
        return _status(account, h, ttls)

    def account_log(self, account_id: int, limit: int = 50) -> list[dict[str, Any]]:
        return [json.loads(x) for x in self.r.lrange(keys.account_log(account_id), 0, limit - 1)]

    # --- dead letters -----------------------------------------------------------------------------
    # The admin surfaces read and retry failed notifications through these two, over the notifier's
    # stored queue (hbdns.notify_queue), as the CLI's `hbdns notify` does.

    def dead_letters(self, limit: int = 20) -> list[dict[str, Any]]:
        """Failed notifications, newest first, each with its ``id`` (the message's idempotency key)."""
        return notify_queue.dead_letters(self.r, limit)

    def retry_dead_letters(self, ids: list[str]) -> list[str]:
        """Queue dead letters again, all or nothing (NotFound names an unknown id before anything
        moves); returns the ids queued."""
        try:
            return notify_queue.retry_dead(self.r, ids)
        except KeyError as exc:
            raise NotFound(f"no dead letter {exc.args[0]!r}") from None


def accounts_by_id(r: redis.Redis, ids: Iterable[int]) -> dict[int, Account]:
    """The stored accounts of ``ids`` in one round trip (removed or unreadable ones left out), for
    stream consumers that meet many ids at once."""
    ordered = sorted({i for i in ids if i > 0})
    pipe = r.pipeline(transaction=False)
    for account_id in ordered:
        pipe.hgetall(keys.account(account_id))
    out = {}
    for account_id, h in zip(ordered, pipe.execute(), strict=True):
        if h.get("fqdn"):
            try:
                out[account_id] = Account.from_hash(h)
            except (KeyError, ValueError):
                log.error("unreadable account", extra={"account": account_id})
    return out
