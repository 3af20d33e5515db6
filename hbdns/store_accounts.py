"""Adding, changing and removing accounts in steps that each touch one Redis Cluster slot.

An account's keys and its shard's keys share one slot; the global indexes (names, accounts, badges,
ACME credentials) and the zone's sets do not. There is no transaction across slots, so the store
writes in an order in which every state between two steps answers DNS correctly
(:mod:`hbdns.provision_names` says why; the DNS lookup answers a name only when the account's
shard confirms it in :func:`hbdns.keys.shard_names`):

- add: the account hash (marked as claiming its names), then its names claimed in the global index
  (all or nothing), then one MULTI in the shard (names confirmed, mark dropped, ``created``
  recorded), then the zone's and the global sets.
- change: names claimed as above; one MULTI in the shard (config, names confirmed and unconfirmed,
  ACME index); then names released, ACME credentials and challenge values of names gone deleted,
  the zone's ENT index and serial.
- remove: one MULTI in the shard (``removed`` recorded while the state is still there, names
  unconfirmed, deadlines, every key of the account); then the global and zone entries.

The same code runs on a standalone Redis, where the shard's MULTI is an ordinary one.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from hbdns import acme_credentials, ents, keys, provision_names, scripts
from hbdns.connection import is_cluster
from hbdns.model import Account
from hbdns.provision_names import CLAIM_FIELD, Taken
from hbdns.store_errors import Conflict, NotFound, StoreError

if TYPE_CHECKING:
    from hbdns.store import Store


class Step:
    """One pipeline (a MULTI in one slot, or a plain batch) that may hold script calls.

    redis-py's cluster pipelines refuse ``evalsha`` and cannot load scripts, so on a Cluster a script
    is queued as a raw EVALSHA and loaded on every primary before the pipeline runs; a NOSCRIPT
    reply even so (a failover in between) runs that call again on its own."""

    def __init__(self, r: Any, *, transaction: bool) -> None:
        self.r = r
        self.cluster = is_cluster(r)
        self.pipe = r.pipeline(transaction=transaction)
        self.calls: list[tuple[int, scripts.Script, list[str], list[str]]] = []

    def script(self, script: scripts.Script, keys_: Sequence[str], args: Sequence[str]) -> None:
        self.calls.append((len(self.pipe), script, list(keys_), list(args)))
        if self.cluster:
            self.pipe.execute_command("EVALSHA", script.sha, len(keys_), *keys_, *args)
        else:
            script(self.pipe, keys_, args)

    def run(self) -> list[Any]:
        if not self.cluster:
            return list(self.pipe.execute())
        for script in {c[1].name: c[1] for c in self.calls}.values():
            self.r.script_load(script.source)
        out = list(self.pipe.execute(raise_on_error=False))
        for pos, script, keys_, args in self.calls:
            if scripts.is_noscript(out[pos]):
                out[pos] = script(self.r, keys_, args)
        for reply in out:
            if isinstance(reply, Exception):
                raise reply
        return out


def start_live_count(r: Any, first_id: int) -> None:
    """The first account of a new database: no account is live, so every shard's live count
    (keys.stats) starts at 0 and the scripts keep it. A database with older accounts gets them from
    ``hbdns migrate``."""
    if first_id == 1:
        pipe = r.pipeline(transaction=False)
        for shard in keys.all_shards():
            pipe.hsetnx(keys.stats(shard), "live", 0)
        pipe.execute()


def delete_each(r: Any, names: Iterable[str]) -> None:
    """DEL of keys in different slots: one command each (a cluster pipeline refuses a multi-key DEL)."""
    todo = list(names)
    if todo:
        pipe = r.pipeline(transaction=False)
        for key in todo:
            pipe.delete(key)
        pipe.execute()


def name_field(account: Account, name: str) -> str:
    """The request field that holds ``name`` (the account's name, an alias, or its wildcard)."""
    if name in account.aliases:
        return f"aliases.{account.aliases.index(name)}"
    return "wildcard" if name == account.wildcard_name else "fqdn"


def _taken(account: Account, t: Taken) -> Conflict:
    return Conflict(f"{t.name} is taken by another account", name_field(account, t.name))


def add(store: Store, account: Account) -> Account:
    """Store a new account; every name must be free. Emits ``created``."""
    r = store.r
    if not r.exists(keys.zone(account.zone)):
        raise Conflict(f"no zone {account.zone}", "fqdn")
    try:
        provision_names.check_free(r, account.index_names)
    except Taken as t:
        raise _taken(account, t) from None
    now = time.time()
    account_id = int(r.incr(keys.account_seq()))
    account = replace(account, id=account_id, created=now, updated=now)
    names = list(account.index_names)
    # the hash first, marked as claiming: until the shard confirms them, a claimer that finds the
    # names taken sees they are being claimed and does not take them over
    r.hset(keys.account(account_id), mapping={**account.new_hash(int(now * 1000)), **provision_names.claiming(names)})
    try:
        provision_names.claim(r, dict.fromkeys(names, account_id))
    except Taken as t:
        r.delete(keys.account(account_id))
        raise _taken(account, t) from None
    start_live_count(r, account_id)
    shard = Step(r, transaction=True)
    shard.pipe.hset(keys.shard_names(keys.shard_of(account_id)), mapping=dict.fromkeys(names, str(account_id)))
    shard.pipe.hdel(keys.account(account_id), CLAIM_FIELD)
    shard.script(
        scripts.RECORD,
        *store.liveness.record_call(account_id, account.zone, account.fqdn, "created", {"plan": account.plan}),
    )
    shard.run()
    gone = provision_names.lost(r, account_id, names)
    if gone:  # this writer stalled past the claim's time and another took a name over
        remove(store, account_id)
        raise _taken(account, Taken(gone[0], ""))
    pipe = r.pipeline(transaction=False)
    pipe.sadd(keys.accounts(), account_id)
    pipe.sadd(keys.zone_accounts(account.zone), account_id)
    ents.queue_change(pipe, account.zone, added=account.names)
    pipe.execute()
    return account


def bulk_add(store: Store, accounts: list[Account], chunk: int = 2000) -> list[Account]:
    """Store many new accounts fast (imports, benchmarks): the same records as :func:`add`, names
    checked up front, written in pipelined chunks (one claim call per chunk). Not for concurrent
    admin use: two imports of one name are refused by the claim, but one of them half done."""
    if not accounts:
        return []
    r = store.r
    names = [n for a in accounts for n in a.index_names]
    if len(set(names)) != len(names):
        raise StoreError("duplicate names in the batch")
    for i in range(0, len(names), 10000):
        part = names[i : i + 10000]
        taken = [n for n, v in zip(part, r.hmget(keys.names(), part), strict=True) if v]
        if taken:
            raise StoreError(f"{taken[0]} is taken by another account")
    last = int(r.incrby(keys.account_seq(), len(accounts)))
    now = time.time()
    out = [replace(a, id=last - len(accounts) + 1 + i, created=now, updated=now) for i, a in enumerate(accounts)]
    start_live_count(r, out[0].id)
    since = int(now * 1000)
    for i in range(0, len(out), chunk):
        part_accounts = out[i : i + chunk]
        pipe = r.pipeline(transaction=False)
        for a in part_accounts:
            pipe.hset(keys.account(a.id), mapping={**a.new_hash(since), **provision_names.claiming(a.index_names)})
        pipe.execute()
        try:
            provision_names.claim(r, {n: a.id for a in part_accounts for n in a.index_names})
        except Taken as t:
            delete_each(r, [keys.account(a.id) for a in part_accounts])
            raise StoreError(f"{t.name} is taken by another account") from None
        step = Step(r, transaction=False)
        for a in part_accounts:
            step.pipe.hset(keys.shard_names(keys.shard_of(a.id)), mapping=dict.fromkeys(a.index_names, str(a.id)))
            step.pipe.hdel(keys.account(a.id), CLAIM_FIELD)
            step.script(
                scripts.RECORD,
                *store.liveness.record_call(a.id, a.zone, a.fqdn, "created", {"plan": a.plan}, bump_serial=False),
            )
        step.run()
        pipe = r.pipeline(transaction=False)
        pipe.sadd(keys.accounts(), *(a.id for a in part_accounts))
        for zone in dict.fromkeys(a.zone for a in part_accounts):
            pipe.sadd(keys.zone_accounts(zone), *(a.id for a in part_accounts if a.zone == zone))
            ents.queue_change(pipe, zone, added=[n for a in part_accounts if a.zone == zone for n in a.names])
        pipe.execute()
    for zone in dict.fromkeys(a.zone for a in out):
        r.hincrby(keys.zone(zone), "serial", 1)
    return out


def save(store: Store, old: Account, new: Account) -> Account:
    """Write changed config fields, and the names when aliases or the wildcard change."""
    r = store.r
    new = replace(new, updated=time.time())
    added = [n for n in new.index_names if n not in old.index_names]
    removed = [n for n in old.index_names if n not in new.index_names]
    gone = sorted(set(old.names) - set(new.names))
    key, confirm = keys.account(new.id), keys.shard_names(keys.shard_of(new.id))
    if added:
        try:
            provision_names.check_free(r, added, new.id)
        except Taken as t:
            raise _taken(new, t) from None
        r.hset(key, mapping=provision_names.claiming(added))
        try:
            provision_names.claim(r, dict.fromkeys(added, new.id))
        except Taken as t:
            r.hdel(key, CLAIM_FIELD)
            raise _taken(new, t) from None
    shard = Step(r, transaction=True)
    shard.pipe.hset(key, mapping=new.to_hash())
    if added:
        shard.pipe.hset(confirm, mapping=dict.fromkeys(added, str(new.id)))
        shard.pipe.hdel(key, CLAIM_FIELD)
    if removed:
        shard.pipe.hdel(confirm, *removed)
    after = acme_credentials.forget(r, shard.pipe, new.id, gone) if gone else []
    shard.run()
    lost = provision_names.lost(r, new.id, added)
    if lost:  # this writer stalled past the claim's time and another took them over: back out
        kept = replace(
            new,
            aliases=tuple(a for a in new.aliases if a not in lost),
            wildcard=new.wildcard and new.wildcard_name not in lost,
        )
        back = r.pipeline(transaction=True)
        back.hdel(confirm, *lost)
        back.hset(key, mapping=kept.to_hash())
        back.execute()
        new = kept
    provision_names.release(r, new.id, removed)
    delete_each(r, after)
    pipe = r.pipeline(transaction=False)
    ents.queue_change(pipe, new.zone, added=set(new.names) - set(old.names), removed=gone)
    pipe.hincrby(keys.zone(new.zone), "serial", 1)
    pipe.execute()
    if lost:
        raise _taken(new, Taken(lost[0], ""))
    return new


def remove(store: Store, account_id: int) -> Account:
    r = store.r
    h = r.hgetall(keys.account(account_id))
    if not h.get("fqdn"):
        raise NotFound(f"no account {account_id}")
    account = Account.from_hash(h)
    s = keys.shard_of(account_id)
    shard = Step(r, transaction=True)
    # recorded before the hash goes: a live account leaves the shard's live count (keys.stats)
    shard.script(scripts.RECORD, *store.liveness.record_call(account_id, account.zone, account.fqdn, "removed"))
    shard.pipe.hdel(keys.shard_names(s), *account.index_names)
    shard.pipe.zrem(keys.deadlines(s), *(keys.deadline_member(account_id, f) for f in (0, *keys.FAMILIES)))
    after = acme_credentials.forget(r, shard.pipe, account_id, list(account.names), everything=True)
    shard.pipe.delete(
        keys.account(account_id),
        keys.alive(account_id, 4),
        keys.alive(account_id, 6),
        keys.alive_legacy(account_id),
        keys.account_log(account_id),
    )
    shard.run()
    provision_names.release(r, account_id, account.index_names)
    delete_each(r, after)
    pipe = r.pipeline(transaction=False)
    if h.get("badge"):
        pipe.hdel(keys.badges(), h["badge"])
    pipe.srem(keys.accounts(), account_id)
    pipe.srem(keys.zone_accounts(account.zone), account_id)
    ents.queue_change(pipe, account.zone, removed=account.names)
    pipe.execute()
    return account
