"""What a name answers beyond its account and static records (issue 18), for both lookups and
listings: ACME challenge TXT values, empty non-terminals, wildcards.

- ``_acme-challenge.<name>``: the live DNS-01 values of that account name (:mod:`hbdns.acme`), read
  from Redis only for names that start with ``_acme-challenge.``, so other lookups pay nothing.
- Empty non-terminals (:mod:`hbdns.ents`): a name with nothing at it but names below it answers one
  ``ENT`` row (qtype 0, no content), the row pdns' own SQL backends keep for such names. pdns then
  answers NOERROR with no data and the SOA, where no row would make it NXDOMAIN; it skips the row
  in AXFR and in answers. Which names those are comes with the zone (:mod:`pdns_backend.zones`).
- Wildcards: an account with the wildcard on has ``*.<fqdn>`` in the name index, so the lookup
  path finds its answers like any name's; pdns synthesises them for names that do not exist and
  asks ``*.<parent>`` only after the name itself (and, walking up, each parent) found nothing, so
  another account's names, and everything below them or below a non-terminal, never get them
  (RFC 4592 section 3.3.1). Listings need the rows spelled out (:func:`account_names`).

Every owner name is the canonical lowercase one (the lookup normalises ``qname``; account and
zone data is stored lowercase).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from hbdns import acme, ents
from hbdns.connection import is_cluster
from hbdns.plans import Plan
from pdns_backend import answers
from pdns_backend.zones import ZoneEntry

Record = answers.Record


def is_challenge(qname: str) -> bool:
    return qname.startswith(acme.PREFIX)


def challenge_names(qnames: Iterable[str]) -> list[str]:
    """The account names whose challenge values the lookups of ``qnames`` (normalised) need."""
    out: dict[str, None] = {}
    for q in qnames:
        if is_challenge(q):
            out[q[len(acme.PREFIX) :]] = None
    return list(out)


def fetch_challenges(r: Any, qnames: Iterable[str]) -> dict[str, list[str]]:
    """challenge qname -> its live values, one round trip (on Redis Cluster one per name); {} when
    no lookup needs any."""
    names = challenge_names(qnames)
    if not names:
        return {}
    # on Cluster each name's values are in its own slot ({n:<name>}): one call per name
    values = [acme.values(r, [n])[0] for n in names] if is_cluster(r) else acme.values(r, names)
    return {acme.challenge_name(n): v for n, v in zip(names, values, strict=True)}


def ent_row(qname: str, zone: answers.ZoneView) -> Record:
    return answers.row(qname + ".", "ENT", "", zone.soa["ttl"], zone.id)


def lookup_rows(
    q: str,
    qtype: str,
    entry: ZoneEntry,
    account: Sequence[str | None] | None,
    live: int,
    plans: Mapping[str, Plan],
    challenge: list[str] | None,
    still_ent: Callable[[str], bool] = lambda _q: True,
) -> list[Record]:
    """Every record at ``q`` of ``qtype`` (or ANY): apex, static and account records, challenge
    values; a name with none of them that has names below it answers its ENT row, whatever the
    qtype (so that pdns never takes it for a name that does not exist). ``entry.ents`` may be up
    to the zone cache's age old, so a name found there is confirmed with ``still_ent`` (read now):
    the last account below it may have just gone, and pdns would cache the stale NODATA."""
    assert entry.view is not None
    zone = entry.view
    records = answers.name_records(q, zone, account, live, plans)
    for value in challenge or ():
        records.append(answers.row(q + ".", "TXT", f'"{value}"', acme.TXT_TTL, zone.id))
    if not records:
        return [ent_row(q, zone)] if q in entry.ents and still_ent(q) else []
    return records if qtype == "ANY" else answers.select(records, qtype.upper())


def account_names(fqdn: str, aliases: str | None, wildcard: str | None) -> list[str]:
    """The names a listing writes an account's records at: its name, aliases, and ``*.<fqdn>``."""
    names = [fqdn, *json.loads(aliases or "[]")]
    return [*names, "*." + fqdn] if wildcard == "1" else names


def listing_ents(zone: answers.ZoneView, records: Iterable[Record]) -> list[Record]:
    """The ENT rows of a listing: the names between its records' owners and the apex that have no
    records themselves."""
    owners = {str(r["qname"]).rstrip(".") for r in records}
    found = ents.counts(owners, zone.apex)
    return [ent_row(name, zone) for name in sorted(found) if name not in owners]
