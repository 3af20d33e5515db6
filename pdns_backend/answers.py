"""Records from raw Redis data: pure functions, no I/O, so both transports and the tests share them.

The Redis side (:mod:`pdns_backend.zones`, :mod:`pdns_backend.accounts`) fetches a zone's hash
fields and, for a name that belongs to an account, the account's fields and which of its
per-family ``alive`` keys exist. Everything here turns those strings into the JSON rows the
PowerDNS remote backend expects.

Zones are parsed once per change of their hash (see ``ZoneCache`` in :mod:`pdns_backend.zones`).
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from json.encoder import encode_basestring_ascii as _js
from typing import Any

from hbdns.plans import Plan

# Zone hash fields the backend reads, in the order the Lua script returns them.
ZONE_FIELDS = (
    "serial",
    "ns",
    "hostmaster",
    "refresh",
    "retry",
    "expire",
    "minimum",
    "soa_ttl",
    "ns_ttl",
    "records",
    "neutral_ipv4",
    "neutral_ipv6",
    "backup_mx",
    "backup_mx_pref",
)

# Account hash fields the backend reads (lookups), in the order hbdns/lua/lookup.lua returns them
# (tests/unit/test_scripts.py holds the two together).
ACCOUNT_FIELDS = ("plan", "fqdn", "ipv4", "ipv6", "neutral_ipv4", "neutral_ipv6", "mx")

DEFAULT_TTL = 60  # for an account whose plan is unknown to this configuration

Record = dict[str, Any]


def normalise(name: str) -> str:
    """Lowercase, no trailing dot: the spelling used by every key and index."""
    name = name.lower()
    return name[:-1] if name.endswith(".") else name


def zone_id(apex: str) -> int:
    """A stable positive id per zone (pdns wants an int ``domain_id``); CRC-32 of the apex, 31 bits.

    Derived, not stored, so it never changes while pdns caches it and needs no extra Redis data.
    """
    return (zlib.crc32(apex.encode()) & 0x7FFFFFFF) or 1


# Types whose content ends in a domain name. pdns keeps such names without the trailing dot; content
# that has one makes ``pdnsutil check-zone`` warn "Parsed and original record content are not equal".
_NAME_TYPES = frozenset({"CNAME", "NS", "MX", "SRV", "PTR", "DNAME"})


def _bare(name: str) -> str:
    return name[:-1] if name.endswith(".") and name != "." else name


def content_for(qtype: str, content: str) -> str:
    """Content in the form pdns stores it: names in name-type records without the trailing dot."""
    content = content.strip()
    return _bare(content) if qtype in _NAME_TYPES else content


def _mailbox(hostmaster: str) -> str:
    """SOA RNAME: ``hostmaster@example.net`` or ``hostmaster.example.net`` -> ``hostmaster.example.net``."""
    if "@" in hostmaster:
        local, _, domain = hostmaster.rpartition("@")
        hostmaster = local.replace(".", "\\.") + "." + domain
    return _bare(hostmaster)


def _int(raw: str | None, default: int) -> int:
    try:
        return int(raw) if raw not in (None, "") else default
    except ValueError:
        return default


def row(qname: str, qtype: str, content: str, ttl: int, domain_id: int) -> Record:
    return {"qtype": qtype, "qname": qname, "content": content, "ttl": ttl, "domain_id": domain_id, "auth": True}


@dataclass(frozen=True)
class ZoneView:
    """What the backend needs of one zone, parsed once per distinct hash content."""

    apex: str
    id: int
    serial: int
    neutral_ipv4: str
    neutral_ipv6: str
    backup_mx: str
    backup_mx_pref: int
    apex_records: tuple[Record, ...]  # SOA first, then NS
    static: Mapping[str, tuple[Record, ...]]  # name (normalised) -> static records at that name

    @property
    def soa(self) -> Record:
        return self.apex_records[0]

    def all_static(self) -> list[Record]:
        return [r for rows in self.static.values() for r in rows]


def parse_zone(apex: str, raw: Sequence[str | None]) -> ZoneView | None:
    """A zone from its hash values in :data:`ZONE_FIELDS` order; None when the hash is gone."""
    f = dict(zip(ZONE_FIELDS, raw, strict=True))
    if f["serial"] is None and f["ns"] is None:
        return None
    zid = zone_id(apex)
    owner = apex + "."
    ns = [str(n) for n in json.loads(f["ns"] or "[]")]
    serial = _int(f["serial"], 1) & 0xFFFFFFFF
    primary = _bare(ns[0]) if ns else "ns." + apex
    soa = (
        f"{primary} {_mailbox(f['hostmaster'] or 'hostmaster.' + apex)} {serial} "
        f"{_int(f['refresh'], 3600)} {_int(f['retry'], 600)} {_int(f['expire'], 1209600)} {_int(f['minimum'], 60)}"
    )
    apex_records = [row(owner, "SOA", soa, _int(f["soa_ttl"], 60), zid)]
    ns_ttl = _int(f["ns_ttl"], 3600)
    apex_records += [row(owner, "NS", _bare(n), ns_ttl, zid) for n in ns]
    static: dict[str, list[Record]] = {}
    for rec in json.loads(f["records"] or "[]"):
        name = normalise(str(rec["name"]))
        qtype = str(rec["type"]).upper()
        static.setdefault(name, []).append(
            row(name + ".", qtype, content_for(qtype, str(rec["content"])), int(rec.get("ttl", 3600)), zid)
        )
    return ZoneView(
        apex=apex,
        id=zid,
        serial=serial,
        neutral_ipv4=f["neutral_ipv4"] or "",
        neutral_ipv6=f["neutral_ipv6"] or "",
        backup_mx=normalise(f["backup_mx"] or ""),
        backup_mx_pref=_int(f["backup_mx_pref"], 50),
        apex_records=tuple(apex_records),
        static={k: tuple(v) for k, v in static.items()},
    )


LIVE4, LIVE6 = 1, 2  # the lookup's liveness mask: which families' alive keys exist


def live_mask(v4: bool, v6: bool) -> int:
    return (LIVE4 if v4 else 0) | (LIVE6 if v6 else 0)


def account_records(
    qname: str,
    zone: ZoneView,
    raw: Sequence[str | None],
    live: int,
    plans: Mapping[str, Plan],
) -> list[Record]:
    """A/AAAA/MX of an account's name (primary or alias), from its hash values in ACCOUNT_FIELDS
    order and ``live``, the mask of its live families (:data:`LIVE4`, :data:`LIVE6`).

    Per family: live (its alive key exists, exact at expiry) -> the reported address; not live ->
    the account's neutral address of that family, else the zone's. A family without a reported
    address has no record while another family is live (as a live account always had), and the
    neutral one when none is. The address record is never withdrawn: with the MX set kept, a
    missing address makes Exim bounce for good (docs/backup-mx.md).

    MX when enabled: always the account itself at 10 plus the backup MX, live or not. A neutral
    MX set of only the backup MX makes a stock backup find itself as the best MX and bounce
    ("loops back to myself"); with the set kept, a neutral address defers at the sender (the
    neutral host's 421) and the sender falls back to the backup MX, which queues.
    """
    plan, fqdn, ipv4, ipv6, n4, n6, mx = raw
    if fqdn is None:  # account hash gone while the name index still points at it
        return []
    plan_info = plans.get(plan or "")
    ttl = plan_info.ttl if plan_info is not None else DEFAULT_TTL
    owner = qname + "."
    zid = zone.id
    v4 = _family_address(live & LIVE4, live, ipv4, n4 or zone.neutral_ipv4)
    v6 = _family_address(live & LIVE6, live, ipv6, n6 or zone.neutral_ipv6)
    out: list[Record] = []
    if v4:
        out.append(row(owner, "A", v4, ttl, zid))
    if v6:
        out.append(row(owner, "AAAA", v6, ttl, zid))
    if mx == "1":
        out.append(row(owner, "MX", f"10 {fqdn}", ttl, zid))
        if zone.backup_mx:
            out.append(row(owner, "MX", f"{zone.backup_mx_pref} {zone.backup_mx}", ttl, zid))
    return out


def _family_address(family_live: int, live: int, reported: str | None, neutral: str) -> str:
    if family_live:
        return reported or ""
    if reported or not live:
        return neutral
    return ""  # no address of this family while another is live: nothing to neutralize


def name_records(
    qname: str,
    zone: ZoneView,
    account: Sequence[str | None] | None,
    live: int,
    plans: Mapping[str, Plan],
) -> list[Record]:
    """Every record at ``qname`` (normalised) in ``zone``: apex SOA/NS, static records, account records."""
    out: list[Record] = []
    if qname == zone.apex:
        out.extend(zone.apex_records)
    static = zone.static.get(qname)
    if static:
        out.extend(static)
    if account is not None:
        out.extend(account_records(qname, zone, account, live, plans))
    return out


def select(records: list[Record], qtype: str) -> list[Record]:
    """pdns asks ANY (consistent-backends) and filters itself; other qtypes are filtered here."""
    if qtype == "ANY":
        return records
    return [r for r in records if r["qtype"] == qtype]


def domain_info(apex: str, serial: int) -> dict[str, Any]:
    """The DomainInfo pdns parses for getAllDomains / getDomainInfo."""
    return {
        "id": zone_id(apex),
        "zone": apex + ".",
        "kind": "native",
        "serial": serial & 0xFFFFFFFF,
        "notified_serial": serial & 0xFFFFFFFF,
        "masters": [],
        "last_check": 0,
    }


def result_json(result: Any) -> str:
    """The JSON reply ``{"result": ...}``. Record lists (every lookup) are formatted directly rather
    than through ``json.dumps`` of the dicts (docs/performance.md): lookups are the hot path."""
    if result is False:
        return '{"result":false}'
    if type(result) is list and result and "qtype" in result[0]:
        rows = ",".join(
            f'{{"qtype":{_js(r["qtype"])},"qname":{_js(r["qname"])},"content":{_js(r["content"])},'
            f'"ttl":{int(r["ttl"])},"domain_id":{int(r["domain_id"])},"auth":true}}'
            for r in result
        )
        return '{"result":[' + rows + "]}"
    return json.dumps({"result": result}, separators=(",", ":"))
