"""Liveness per address family (issue 13): the one ``alive`` key of each account into one per family.

Before: ``hbdns:alive:{a:<id>}`` (TTL = the plan's expiry, refreshed by every beat or update) and
the plain deadline member ``<id>``, so an account that kept beating over IPv6 kept a stale A record
for good. After: ``hbdns:alive4:{a:<id>}`` / ``hbdns:alive6:{a:<id>}`` and the members ``<id>:4`` /
``<id>:6``, and the hash field ``live`` (the families recorded live). Each account converts in one
atomic script (``hbdns/lua/migrate_alive.lua``): the legacy key's remaining TTL goes onto the
family keys of the stored addresses, the deadline onto the per-family members; live accounts stay
live, neutral ones neutral, deadlines are kept.

Safe while services run and across a rolling upgrade: readers of this version take a legacy key
or member as "both families" (the backend, the sweeper), so old writers still running keep their
accounts live; the step leaves the legacy key in place (it expires on its own) and can be run
again at any time (a converted account converts 0). Upgrade order: backends and sweepers first
(old ones do not read the new keys), then listeners and update APIs, then ``hbdns migrate``.
"""

from __future__ import annotations

import redis

from hbdns import keys, scripts
from hbdns import keys_unsharded as old

SUMMARY = "one alive key per account (hbdns:alive:*) into one per address family (hbdns:alive4/6:*)"
CHUNK = 1000


def apply(r: redis.Redis, *, dry_run: bool = False) -> int:
    ids = sorted(int(x) for x in r.smembers(keys.accounts()))
    converted = 0
    for start in range(0, len(ids), CHUNK):
        pipe = r.pipeline(transaction=False)
        for account_id in ids[start : start + CHUNK]:
            scripts.MIGRATE_ALIVE(
                pipe,
                [
                    old.account(account_id),
                    old.alive(account_id, 4),
                    old.alive(account_id, 6),
                    old.alive_legacy(account_id),
                    old.deadlines(),
                ],
                [str(account_id), "1" if dry_run else "0"],
            )
        converted += sum(int(n) for n in pipe.execute())
    return converted
