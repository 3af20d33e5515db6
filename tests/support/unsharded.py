"""A database as the versions before sharding (issue 16) wrote it, for the upgrade tests.

The accounts are written the way that store's ``add_account`` did (the same hash, the name index,
the account and zone sets, its ``created`` event by the record script of that version, kept in
tests/data/unsharded_v1) on the unsharded key names (:mod:`hbdns.keys_unsharded`); the zone with
the store of today (a zone's keys did not change). Each upgrade test runs its own old version's
beat script on top, then ``hbdns migrate``, then reads with the new code.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import redis

from hbdns import keys
from hbdns import keys_unsharded as old
from hbdns.model import Account, Zone
from hbdns.scripts import Script
from hbdns.store import Store

DATA = Path(__file__).resolve().parents[1] / "data"
V1 = DATA / "unsharded_v1"  # hbdns/lua at d0e5244, the last version before sharding


def old_script(folder: Path, name: str) -> Script:
    """A script of an old version: its lib.lua in front, as that version's loader did."""
    return Script(
        f"{folder.name}-{name}", (folder / "lib.lua").read_text() + "\n" + (folder / f"{name}.lua").read_text()
    )


OLD_RECORD = old_script(V1, "record")


def add_zone(store: Store, apex: str) -> None:
    if store.get_zone(apex) is None:
        store.add_zone(Zone(apex, (f"ns1.{apex}",), f"hostmaster.{apex}", "192.0.2.1"))


def add_account(store: Store, fqdn: str, plan: str = "heartbeat-c", *, live_field: bool = True, **kw: Any) -> Account:
    """An account as the old store wrote it. ``live_field=False``: as the store before per-family
    liveness wrote it (no ``live`` field)."""
    r: redis.Redis = store.r
    a = store.new_account(fqdn, plan, **kw)
    account_id = int(r.incr(keys.account_seq()))
    a = replace(a, id=account_id, created=time.time(), updated=time.time())
    fields = a.new_hash(int(time.time() * 1000))
    if not live_field:
        del fields["live"]
    r.hset(old.account(account_id), mapping=fields)
    r.hset(keys.names(), mapping={n: str(account_id) for n in a.index_names})
    r.sadd(keys.accounts(), account_id)
    r.sadd(keys.zone_accounts(a.zone), account_id)
    if account_id == 1:
        r.hsetnx(old.stats(), "live", 0)
    OLD_RECORD(
        r,
        [old.events(), old.account_log(account_id), keys.zone(a.zone)],
        [str(account_id), a.fqdn, "created", "0", "1000", "200", "plan", a.plan],
    )
    return a
