"""The empty non-terminal index of every zone, built from its accounts (issue 18).

Before: no index; a name between an account's name and the apex (``office.dyn.example.net`` above
``mail.office.dyn.example.net``) answered NXDOMAIN. After: ``hbdns:zone:{z:<apex>}:ents`` counts
the account names below each such name (:mod:`hbdns.ents`), kept by the store from now on, with a
revision field that tells the DNS backend to read it again. Each zone is rebuilt from its accounts'
names in one MULTI/EXEC under WATCH of its account set and its index (which every store write that
changes a zone's names touches), so an account added, changed or removed meanwhile makes the step
read that zone again; a zone whose index is right already is left alone (and not counted). Nothing
an older version reads is changed.
"""

from __future__ import annotations

import json
from typing import Any

import redis

from hbdns import ents, keys
from hbdns import keys_unsharded as old

SUMMARY = "empty non-terminal index per zone (hbdns:zone:{z:<apex>}:ents) from the accounts' names"
CHUNK = 1000


def _wanted(pipe: Any, apex: str) -> dict[str, int]:
    """The counts the zone's accounts make now (read on the watching pipeline, immediate mode)."""
    ids = sorted(int(i) for i in pipe.smembers(keys.zone_accounts(apex)))
    names: list[str] = []
    for start in range(0, len(ids), CHUNK):
        for fqdn, aliases in _fields(pipe, ids[start : start + CHUNK]):
            if fqdn:
                names += [fqdn, *json.loads(aliases or "[]")]
    return dict(ents.counts(names, apex))


def _fields(pipe: Any, ids: list[int]) -> list[Any]:
    """fqdn and aliases of each account, from its unsharded hash (this step runs before ``sharded``
    moves it) or, once moved, its sharded one: run again on a sharded database, the index stays."""
    out = []
    for i in ids:
        fields = pipe.hmget(old.account(i), ["fqdn", "aliases"])
        out.append(fields if fields[0] else pipe.hmget(keys.account(i), ["fqdn", "aliases"]))
    return out


def _stored(raw: Any) -> dict[str, int]:
    out = {}
    for name, n in raw.items():
        if name == ents.REV_FIELD:
            continue
        try:
            if int(n) > 0:
                out[name] = int(n)
        except ValueError:
            continue
    return out


def _one_zone(r: redis.Redis, apex: str, dry_run: bool) -> bool:
    """Rebuild one zone's index if it differs; True when it did (or, dry, would)."""
    while True:
        with r.pipeline() as pipe:
            try:
                pipe.watch(keys.zone_accounts(apex), keys.zone_ents(apex))
                if not pipe.exists(keys.zone(apex)):
                    return False  # being removed
                want = _wanted(pipe, apex)
                stored: Any = pipe.hgetall(keys.zone_ents(apex))
                if _stored(stored) == want:
                    return False
                if dry_run:
                    return True
                rev = int(stored.get(ents.REV_FIELD, 0) or 0) + 1
                pipe.multi()
                pipe.delete(keys.zone_ents(apex))
                pipe.hset(keys.zone_ents(apex), mapping={**{k: str(v) for k, v in want.items()}, ents.REV_FIELD: rev})
                pipe.execute()
                return True
            except redis.WatchError:
                continue


def apply(r: redis.Redis, *, dry_run: bool = False) -> int:
    """Zones whose index was rebuilt (or, with ``dry_run``, would be)."""
    apexes = sorted(str(z) for z in r.smembers(keys.zones()))
    return sum(1 for apex in apexes if _one_zone(r, apex, dry_run))
