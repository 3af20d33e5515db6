"""Accounts written straight in the sharded key schema, for the backend's own tests and bench.

What the lookup reads of an account, as the store and the beat script leave it (hbdns/keys.py):
the hash, both name indexes (the global discovery one and the shard's confirmation), the zone's
member set and the per-family alive keys. Tests of the lookup path use it to set up exactly the
state they need (a half-written move, a corrupt entry) without going through the writers.
"""

from __future__ import annotations

from typing import Any

from hbdns import keys


def put_account(
    r: Any,
    account_id: int,
    fqdn: str,
    *,
    zone: str = "example.com",
    plan: str = "heartbeat-c",
    aliases: tuple[str, ...] = (),
    ipv4: str = "",
    ipv6: str = "",
    live_ms: int | None = None,
    mx: bool = False,
) -> None:
    """The account, its names indexed in both indexes; live families (those with an address) for
    ``live_ms`` when given."""
    shard = keys.shard_of(account_id)
    pipe = r.pipeline(transaction=False)
    pipe.hset(
        keys.account(account_id),
        mapping={
            "id": str(account_id),
            "fqdn": fqdn,
            "zone": zone,
            "plan": plan,
            "ipv4": ipv4,
            "ipv6": ipv6,
            "neutral_ipv4": "",
            "neutral_ipv6": "",
            "mx": "1" if mx else "0",
            "aliases": "[" + ",".join(f'"{a}"' for a in aliases) + "]",
            "wildcard": "0",
            "state": "live" if live_ms else "neutral",
        },
    )
    for name in (fqdn, *aliases):
        pipe.hset(keys.names(), name, str(account_id))
        pipe.hset(keys.shard_names(shard), name, str(account_id))
    pipe.sadd(keys.accounts(), account_id)
    pipe.sadd(keys.zone_accounts(zone), account_id)
    if live_ms:
        for family, address in ((4, ipv4), (6, ipv6)):
            if address:
                pipe.set(keys.alive(account_id, family), "1", px=live_ms)
    pipe.execute()


def drop_name(r: Any, account_id: int, name: str) -> None:
    """``name`` out of both indexes (as a removal or a move away leaves them)."""
    r.hdel(keys.names(), name)
    r.hdel(keys.shard_names(keys.shard_of(account_id)), name)
