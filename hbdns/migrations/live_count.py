"""The count of accounts recorded live (issue 17: accounts live/neutral as metrics without a SCAN).

Works on the unsharded schema (:mod:`hbdns.keys_unsharded`); the step ``sharded`` then splits the
count into the per-shard ones (``keys.stats(shard)``). On a database without an unsharded account
hash or count (sharded, or new) it writes nothing.

Before: no count; the transition scripts keep the stats field ``live`` only once it exists
(a count started from nothing would stay wrong). This step counts the accounts whose ``state`` is
``live`` in one atomic script (``hbdns/lua/migrate_live_count.lua``) and stores the count; from then
on every crossing of ``live`` moves it (``lib.lua``'s ``state_moved``) and removing a live account
takes one off. Running it again recounts and writes only a difference: writers of an older version
running beside new ones during an upgrade do not keep the count, so run ``hbdns migrate`` once they
are all upgraded. Cost: one script call with every account's hash as a key (the account ids are read
first; an account added meanwhile is neutral, one removed meanwhile is gone from both).
"""

from __future__ import annotations

import redis

from hbdns import keys, scripts
from hbdns import keys_unsharded as old

SUMMARY = "count the accounts recorded live into hbdns:stats (for the metrics)"


def apply(r: redis.Redis, *, dry_run: bool = False) -> int:
    ids = sorted(int(x) for x in r.smembers(keys.accounts()))
    _live, changed = scripts.MIGRATE_LIVE_COUNT(
        r, [old.stats(), *(old.account(i) for i in ids)], ["1" if dry_run else "0"]
    )
    return int(changed)
