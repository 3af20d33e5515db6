"""Zones and accounts in Redis: create, read, change, remove. Used by the CLI, the admin API and tests.

Writes that touch an index (names, zone membership) run under WATCH/MULTI so that two admins adding
the same name cannot both succeed. State fields are never written here (see :mod:`hbdns.liveness`).
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

from hbdns import acme_credentials, ents, keys, notify_queue, validate
from hbdns.config import Settings
from hbdns.liveness import Liveness
from hbdns.model import Account, AccountState, Zone
from hbdns.passwords import hash_password
from hbdns.plans import Plan
from hbdns.purge import Purger

log = logging.getLogger(__name__)


class StoreError(ValueError):
    """An operation that is refused (duplicate, unknown name, zone in use); ``str()`` says why."""

    def __init__(self, reason: str, field: str = "") -> None:
        super().__init__(reason)
        self.field = field  # the request field it is about, when there is one ("fqdn", "aliases.0")


class NotFound(StoreError):
    """No such zone, account or dead letter (the admin API's 404)."""


class Conflict(StoreError):
    """The stored data forbids it: a name taken, a zone that exists or still has accounts (409)."""


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


def _start_live_count(pipe: Any, first_id: int) -> None:
    """The first account of a new database: no account is live, so the live count (keys.stats)
    starts at 0 and the scripts keep it. A database with older accounts gets it from ``hbdns migrate``."""
    if first_id == 1:
        pipe.hsetnx(keys.stats(), "live", 0)


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
        return int(self.r.hget(keys.zone(apex), "serial") or 0)

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
        with self.r.pipeline() as pipe:
            pipe.watch(key)
            if pipe.exists(key):
                raise Conflict(f"zone {zone.apex} exists already", "apex")
            pipe.multi()
            pipe.hset(key, mapping={**zone.to_hash(), "serial": str(int(now))})
            pipe.sadd(keys.zones(), zone.apex)
            pipe.execute()
        return zone

    def update_zone(self, zone: Zone) -> Zone:
        zone = replace(zone, updated=time.time())
        key = keys.zone(zone.apex)
        if not self.r.exists(key):
            raise NotFound(f"no zone {zone.apex}")
        self.r.hset(key, mapping=zone.to_hash())
        self.r.hincrby(key, "serial", 1)
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
        self.r.delete(keys.zone(apex), keys.zone_accounts(apex), keys.zone_ents(apex))
        self.r.srem(keys.zones(), apex)

    # --- accounts ---------------------------------------------------------------------------------

    def new_account(self, fqdn: str, plan: str, **kw: Any) -> Account:
        """Check everything and build the account value (not yet stored; id 0): the keywords and
        refusals of :func:`hbdns.provision.build_account`."""
        from hbdns.provision import build_account

        return build_account(self, fqdn, plan, **kw)

    def add_account(self, account: Account) -> Account:
        """Store a new account; every name must be free. Emits ``created``."""
        now = time.time()
        with self.r.pipeline() as pipe:
            pipe.watch(keys.names())
            taken = [n for n in account.index_names if pipe.hexists(keys.names(), n)]
            if taken:
                raise Conflict(f"{taken[0]} is taken by another account", _name_field(account, taken[0]))
            if not pipe.exists(keys.zone(account.zone)):
                raise Conflict(f"no zone {account.zone}", "fqdn")
            account_id = int(self.r.incr(keys.account_seq()))
            account = replace(account, id=account_id, created=now, updated=now)
            pipe.multi()
            pipe.hset(keys.account(account_id), mapping=account.new_hash(int(now * 1000)))
            pipe.hset(keys.names(), mapping={n: str(account_id) for n in account.index_names})
            pipe.sadd(keys.accounts(), account_id)
            pipe.sadd(keys.zone_accounts(account.zone), account_id)
            _start_live_count(pipe, account_id)
            ents.queue_change(pipe, account.zone, added=account.names)
            self.liveness.record(account_id, account.zone, account.fqdn, "created", {"plan": account.plan}, client=pipe)
            pipe.execute()
        return account

    def bulk_add_accounts(self, accounts: list[Account], chunk: int = 2000) -> list[Account]:
        """Store many new accounts fast (imports, benchmarks): same records as :meth:`add_account`,
        names checked up front in one round trip, written in pipelined chunks. Not for concurrent
        admin use: it does not WATCH the name index."""
        if not accounts:
            return []
        names = [n for a in accounts for n in a.index_names]
        if len(set(names)) != len(names):
            raise StoreError("duplicate names in the batch")
        for i in range(0, len(names), 10000):
            part = names[i : i + 10000]
            taken = [n for n, v in zip(part, self.r.hmget(keys.names(), part), strict=True) if v]
            if taken:
                raise StoreError(f"{taken[0]} is taken by another account")
        last = int(self.r.incrby(keys.account_seq(), len(accounts)))
        now = time.time()
        out = [replace(a, id=last - len(accounts) + 1 + i, created=now, updated=now) for i, a in enumerate(accounts)]
        since = int(now * 1000)
        for i in range(0, len(out), chunk):
            pipe = self.r.pipeline(transaction=False)
            for a in out[i : i + chunk]:
                pipe.hset(keys.account(a.id), mapping=a.new_hash(since))
                pipe.hset(keys.names(), mapping={n: str(a.id) for n in a.index_names})
                pipe.sadd(keys.accounts(), a.id)
                pipe.sadd(keys.zone_accounts(a.zone), a.id)
                _start_live_count(pipe, a.id)
                ents.queue_change(pipe, a.zone, added=a.names)
                self.liveness.record(a.id, a.zone, a.fqdn, "created", {"plan": a.plan}, bump_serial=False, client=pipe)
            pipe.execute()
        self.r.hincrby(keys.zone(out[0].zone), "serial", 1)
        return out

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
        return int(raw) if raw else None

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
        new = replace(new, updated=time.time())
        removed = set(old.index_names) - set(new.index_names)
        added = [n for n in new.index_names if n not in old.index_names]
        with self.r.pipeline() as pipe:
            pipe.watch(keys.names())
            for n in added:
                if pipe.hexists(keys.names(), n):
                    raise Conflict(f"{n} is taken by another account", _name_field(new, n))
            gone = sorted(set(old.names) - set(new.names))
            pipe.multi()
            pipe.hset(keys.account(new.id), mapping=new.to_hash())
            if removed:
                pipe.hdel(keys.names(), *removed)
            if added:
                pipe.hset(keys.names(), mapping={n: str(new.id) for n in added})
            ents.queue_change(pipe, new.zone, added=set(new.names) - set(old.names), removed=gone)
            if gone:
                acme_credentials.queue_forget(pipe, self.r, new.id, gone)
            pipe.hincrby(keys.zone(new.zone), "serial", 1)
            pipe.execute()
        return new

    def rotate_key(self, account: Account) -> Account:
        return self.save_account(account, replace(account, hb_key=secrets.token_bytes(32)))

    def set_password(self, account: Account, password: str) -> Account:
        return self.save_account(account, replace(account, pw_hash=hash_password(password)))

    def remove_account(self, account_id: int) -> Account:
        account = self.get_account(account_id)
        if account is None:
            raise NotFound(f"no account {account_id}")
        badge = self.r.hget(keys.account(account_id), "badge")
        pipe = self.r.pipeline()
        if badge:
            pipe.hdel(keys.badges(), badge)
        pipe.hdel(keys.names(), *account.index_names)
        ents.queue_change(pipe, account.zone, removed=account.names)
        acme_credentials.queue_forget(pipe, self.r, account_id, list(account.names), everything=True)
        pipe.srem(keys.accounts(), account_id)
        pipe.srem(keys.zone_accounts(account.zone), account_id)
        pipe.zrem(keys.deadlines(), *(keys.deadline_member(account_id, f) for f in (0, *keys.FAMILIES)))
        # recorded before the hash goes: a live account leaves the live count (keys.stats)
        self.liveness.record(account_id, account.zone, account.fqdn, "removed", client=pipe)
        pipe.delete(keys.account(account_id), *_alive_keys(account_id))
        pipe.delete(keys.account_log(account_id))
        pipe.execute()
        return account

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


def _name_field(account: Account, name: str) -> str:
    """The request field that holds ``name`` (the account's name or one of its aliases)."""
    return "fqdn" if name == account.fqdn else f"aliases.{account.aliases.index(name)}"
