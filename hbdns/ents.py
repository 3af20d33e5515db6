"""Empty non-terminals: the names between an account's name and its zone apex, and their index.

``mail.office.dyn.example.net`` in zone ``dyn.example.net`` makes ``office.dyn.example.net`` a
name that exists without records of its own (RFC 8020 section 2 calls it an empty non-terminal).
It must answer NOERROR with no data: an NXDOMAIN for it lets a resolver conclude that nothing
below it exists, the account included. Each zone keeps a count per such name of the account names
below it (:func:`hbdns.keys.zone_ents`), changed by the store in the same transaction as the name
index, with a revision (the field :data:`REV_FIELD` of the same hash, which no name can spell) that
the DNS backend watches so it re-reads the index only when it changed. Static records make
non-terminals too; the backend derives those from the zone's records itself.

Wildcard names (``*.<fqdn>``) and ACME challenge names (``_acme-challenge.<name>``) lie right below
an account's own name, so they add nothing here.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from hbdns import keys

REV_FIELD = "#rev"  # names are LDH: none starts with "#"


def between(name: str, apex: str) -> list[str]:
    """The names strictly between ``name`` and ``apex``, nearest first: ``a.b.c.z``, ``z`` ->
    ``[b.c.z, c.z]``. Empty when ``name`` is the apex, right below it, or not in it."""
    if name == apex or not name.endswith("." + apex):
        return []
    out: list[str] = []
    rest = name
    while True:
        rest = rest.partition(".")[2]
        if rest == apex or not rest:
            return out
        out.append(rest)


def with_enclosers(names: Iterable[str], apex: str) -> list[str]:
    """``names`` and every name between them and ``apex`` (for cache purges: a new or removed
    account changes whether those exist)."""
    out: dict[str, None] = {}
    for name in names:
        out[name] = None
        out.update(dict.fromkeys(between(name, apex)))
    return list(out)


def counts(names: Iterable[str], apex: str) -> Counter[str]:
    """How many of ``names`` lie below each name between them and ``apex``."""
    c: Counter[str] = Counter()
    for name in names:
        c.update(between(name, apex))
    return c


def queue_change(pipe: Any, apex: str, added: Iterable[str] = (), removed: Iterable[str] = ()) -> None:
    """Queue on ``pipe`` (inside the MULTI that changes the name index) the index change for names
    ``added`` to and ``removed`` from zone ``apex``."""
    delta = counts(added, apex)
    delta.subtract(counts(removed, apex))
    changed = {name: n for name, n in delta.items() if n}
    for name, n in sorted(changed.items()):
        pipe.hincrby(keys.zone_ents(apex), name, n)
    if changed:
        pipe.hincrby(keys.zone_ents(apex), REV_FIELD, 1)


def parse(raw: Mapping[str, str]) -> frozenset[str]:
    """The names of a stored index that still have an account name below them."""
    out = set()
    for name, n in raw.items():
        if name == REV_FIELD:
            continue
        try:
            if int(n) > 0:
                out.add(name)
        except ValueError:
            continue
    return frozenset(out)
