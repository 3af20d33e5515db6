"""An account's names across shards, without a transaction that spans Redis Cluster slots.

A name lives in two indexes: the global :func:`hbdns.keys.names` (discovery: which account, hence
which shard) and its account's shard's :func:`hbdns.keys.shard_names` (confirmation, read by the DNS
lookup in the same atomic step as the account). The store changes them in an order that never
makes the lookup answer wrongly (:mod:`hbdns.store`):

- giving names: :func:`claim` them in the global index (one script there, all or nothing), then
  confirm them in the shard, then the zone's and the global sets. A claim not (yet) confirmed
  answers nothing: the lookup asks the shard.
- taking names: stop confirming them in the shard first, then :func:`release` them globally (only
  while they still map to the account).

A writer that dies between the steps leaves a claim without its confirmation. Such a claim is
*stale* and may be taken over by the next claimer (:func:`stale`): its holder's shard does not
confirm the name and its account hash is not claiming it (the ``claiming`` field a writer sets,
with a time, before it claims: :func:`claiming`), or claimed it more than :data:`CLAIM_TTL_MS` ago.
A writer slower than that finds its claim gone when it checks (:func:`lost`) and backs out.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from hbdns import keys, scripts

CLAIM_FIELD = "claiming"  # account hash field: JSON {"at": ms, "names": [...]} while names are claimed
CLAIM_TTL_MS = 60_000  # a claim not confirmed for this long is a dead writer's


class Taken(Exception):
    """A name another account holds; ``name`` is the first one, ``holder`` its account id."""

    def __init__(self, name: str, holder: str) -> None:
        super().__init__(name)
        self.name = name
        self.holder = holder


def _s(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def claiming(names: Sequence[str], now_ms: int | None = None) -> dict[str, str]:
    """The account hash field that says these names are being claimed (set before :func:`claim`)."""
    at = int(time.time() * 1000) if now_ms is None else now_ms
    return {CLAIM_FIELD: json.dumps({"at": at, "names": list(names)})}


def _claims(raw: str | None, now_ms: int) -> set[str]:
    try:
        c = json.loads(raw or "{}")
        return set(c["names"]) if now_ms - int(c["at"]) < CLAIM_TTL_MS else set()
    except (ValueError, KeyError, TypeError):
        return set()


def stale(r: Any, taken: Mapping[str, str]) -> dict[str, str]:
    """Of ``taken`` (name -> holder id), those whose holder neither confirms nor is claiming them
    (name -> that holder): a dead writer's. One pipelined round trip (per node on a Cluster)."""
    pipe = r.pipeline(transaction=False)
    items = [(n, h) for n, h in taken.items() if h.isdigit()]
    for name, holder in items:
        hid = int(holder)
        pipe.hget(keys.shard_names(keys.shard_of(hid)), name)
        pipe.hget(keys.account(hid), CLAIM_FIELD)
    replies = pipe.execute() if items else []
    now = int(time.time() * 1000)
    out = {n: h for n, h in taken.items() if not h.isdigit()}  # not an id at all: nobody's
    for i, (name, holder) in enumerate(items):
        confirmed, claim = replies[2 * i], replies[2 * i + 1]
        if (confirmed is None or _s(confirmed) != holder) and name not in _claims(claim, now):
            out[name] = holder
    return out


def check_free(r: Any, names: Sequence[str], account_id: int = 0) -> None:
    """:class:`Taken` for the first of ``names`` another account holds (one not :func:`stale`): the
    check before anything is written, so a refused request writes nothing. :func:`claim` checks
    again, atomically."""
    if not names:
        return
    got = r.hmget(keys.names(), list(names))
    taken = {n: _s(v) for n, v in zip(names, got, strict=True) if v is not None and _s(v) != str(account_id)}
    dead = stale(r, taken) if taken else {}
    for name in names:
        if name in taken and name not in dead:
            raise Taken(name, taken[name])


def claim(r: Any, wanted: Mapping[str, int], attempts: int = 3) -> None:
    """Make every name of ``wanted`` (name -> account id) its account's in the global index, or
    none (:class:`Taken`). Names held by a dead writer's claim (:func:`stale`) are taken over."""
    if not wanted:
        return
    replace: dict[str, str] = {}
    taken: dict[str, str] = {}
    for _ in range(attempts):
        args: list[str] = []
        for name, account_id in wanted.items():
            args += [name, str(account_id), replace.get(name, "")]
        raw = [_s(x) for x in scripts.NAME_CLAIM(r, [keys.names()], args)]
        taken = dict(zip(raw[::2], raw[1::2], strict=True))
        if not taken:
            return
        dead = stale(r, taken)
        live = [n for n in wanted if n in taken and n not in dead]
        if live:
            raise Taken(live[0], taken[live[0]])
        replace.update(dead)
    first = next(iter(taken))
    raise Taken(first, taken[first])


def release(r: Any, account_id: int, names: Iterable[str]) -> int:
    """Take ``names`` out of the global index, each only while it still maps to the account."""
    args: list[str] = []
    for name in names:
        args += [name, str(account_id)]
    return int(scripts.NAME_RELEASE(r, [keys.names()], args)) if args else 0


def lost(r: Any, account_id: int, names: Sequence[str]) -> list[str]:
    """Of ``names``, those the global index no longer gives the account (a claim taken over while
    its writer stalled past :data:`CLAIM_TTL_MS`)."""
    if not names:
        return []
    got = r.hmget(keys.names(), list(names))
    return [n for n, v in zip(names, got, strict=True) if v is None or _s(v) != str(account_id)]
