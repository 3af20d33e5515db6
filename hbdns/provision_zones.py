"""What the admin CLI and the admin API do to zones: build, change, remove, with one validation.

As in :mod:`hbdns.provision`: every field is checked before anything is written, refusals name the
field as the API's JSON does (``records.1.content``), and a change that alters answers purges them.
Options a request leaves out take the ``HBDNS_DEFAULT_*`` settings on create and stay as they are on
change.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields, replace
from functools import partial
from typing import TYPE_CHECKING, Any

from hbdns import validate
from hbdns.config import Settings
from hbdns.model import MAX_NEGATIVE_TTL, STATIC_TYPES, StaticRecord, Zone, check_lang
from hbdns.validate import Fields

if TYPE_CHECKING:
    from hbdns.model import Account
    from hbdns.store import Store

MAX_TTL = 2**31 - 1


def record_name(name: str, apex: str) -> str:
    """A record's absolute name: ``@`` is the apex, a name in the zone stays, any other is relative
    to the apex; a trailing dot makes it absolute (it must then be in the zone)."""
    raw = name.strip()
    if raw in ("@", ""):
        return apex
    absolute = raw.endswith(".")
    full = validate.hostname(raw)
    if absolute or validate.in_zone(full, apex):
        if not validate.in_zone(full, apex):
            raise validate.ValidationError(f"record name {full} is not in zone {apex}")
        return full
    return validate.hostname(f"{full}.{apex}")


def _content(rtype: str, content: str) -> str:
    text = content.strip()
    if rtype == "A":
        return validate.ipv4(text)
    if rtype == "AAAA":
        return validate.ipv6(text)
    if rtype in ("CNAME", "NS"):
        return validate.hostname(text)
    if rtype == "MX":
        pref, _, host = text.partition(" ")
        if not pref.isdigit() or int(pref) > 65535:
            raise validate.ValidationError(f"MX content {text[:80]!r} must be 'PREFERENCE HOST'")
        return f"{int(pref)} {validate.hostname(host)}"
    if not text or len(text) > 1024:
        raise validate.ValidationError(f"{rtype} content must have 1 to 1024 characters")
    return text


def check_records(f: Fields, records: Sequence[Mapping[str, Any]], apex: str) -> tuple[StaticRecord, ...]:
    """Static records from ``{name, type, content, ttl}`` mappings (ttl optional, 3600)."""
    out = []
    for i, rec in enumerate(records):
        rtype = str(rec.get("type", "")).upper()
        name = f.check(f"records.{i}.name", lambda n: record_name(n, apex), str(rec.get("name", "")))
        if rtype not in STATIC_TYPES:
            f.add(f"records.{i}.type", f"record type {rtype or '(none)'} is not supported ({', '.join(STATIC_TYPES)})")
            continue
        content = f.check(f"records.{i}.content", partial(_content, rtype), str(rec.get("content", "")))
        ttl = rec.get("ttl", 3600)
        if isinstance(ttl, bool) or not isinstance(ttl, int) or not 0 <= ttl <= MAX_TTL:
            f.add(f"records.{i}.ttl", f"record TTL must be a whole number of seconds, 0 to {MAX_TTL}")
            continue
        if name and content:
            out.append(StaticRecord(name=name, type=rtype, content=content, ttl=ttl))
    return tuple(out)


@dataclass(frozen=True)
class ZoneChanges:
    """Zone options to set; ``None`` leaves one as it is (or, on create, takes the default)."""

    ns: Sequence[str] | None = None
    hostmaster: str | None = None
    neutral_ipv4: str | None = None
    neutral_ipv6: str | None = None  # "" = none
    backup_mx: str | None = None  # "" = none
    backup_mx_pref: int | None = None
    records: Sequence[Mapping[str, Any]] | None = None
    allow_private: bool | None = None
    lang: str | None = None  # "" = HBDNS_NOTIFY_LANG
    negative_ttl: int | None = None  # the SOA minimum: how long resolvers cache a negative answer

    def given(self) -> tuple[str, ...]:
        return tuple(f.name for f in fields(self) if getattr(self, f.name) is not None)


def _apply(f: Fields, zone: Zone, c: ZoneChanges) -> Zone:
    new: dict[str, Any] = {}
    if c.ns is not None:
        new["ns"] = tuple(f.check(f"ns.{i}", validate.hostname, n) or "" for i, n in enumerate(c.ns))
        if not c.ns:
            f.add("ns", "a zone needs at least one name server")
    if c.hostmaster is not None:
        new["hostmaster"] = f.check("hostmaster", validate.hostname, c.hostmaster) or ""
    if c.neutral_ipv4 is not None:
        new["neutral_ipv4"] = f.check("neutral_ipv4", validate.ipv4, c.neutral_ipv4) or ""
    if c.neutral_ipv6 is not None:
        new["neutral_ipv6"] = (f.check("neutral_ipv6", validate.ipv6, c.neutral_ipv6) or "") if c.neutral_ipv6 else ""
    if c.backup_mx is not None:
        new["backup_mx"] = (f.check("backup_mx", validate.hostname, c.backup_mx) or "") if c.backup_mx else ""
    if c.backup_mx_pref is not None:
        if isinstance(c.backup_mx_pref, bool) or not 0 <= c.backup_mx_pref <= 65535:
            f.add("backup_mx_pref", "backup MX preference must be 0 to 65535")
        new["backup_mx_pref"] = c.backup_mx_pref
    if c.records is not None:
        new["records"] = check_records(f, c.records, zone.apex)
    if c.allow_private is not None:
        new["allow_private"] = bool(c.allow_private)
    if c.lang is not None:
        new["lang"] = f.check("lang", check_lang, c.lang) or ""
    if c.negative_ttl is not None:
        ttl = c.negative_ttl
        if isinstance(ttl, bool) or not isinstance(ttl, int) or not 1 <= ttl <= MAX_NEGATIVE_TTL:
            f.add("negative_ttl", f"negative TTL must be a whole number of seconds, 1 to {MAX_NEGATIVE_TTL}")
        else:
            # resolvers cache a negative answer for min(SOA TTL, minimum) (RFC 2308 section 5)
            new.update(minimum=ttl, soa_ttl=max(zone.soa_ttl, ttl))
    return replace(zone, **new)


def build_zone(settings: Settings, apex: str, changes: ZoneChanges) -> Zone:
    """A new zone from ``changes`` over the ``HBDNS_DEFAULT_*`` settings; raises ``Invalid``."""
    f = Fields()
    name = f.check("apex", validate.hostname, apex) or ""
    base = Zone(
        apex=name,
        ns=settings.default_ns,
        hostmaster=settings.default_hostmaster,
        neutral_ipv4=settings.default_neutral_ipv4,
        neutral_ipv6=settings.default_neutral_ipv6,
        backup_mx=settings.default_backup_mx,
        backup_mx_pref=settings.default_backup_mx_pref,
    )
    if changes.negative_ttl is None:
        changes = replace(changes, negative_ttl=settings.default_negative_ttl)
    zone = _apply(f, base, changes)
    f.done()
    return zone


def create_zone(store: Store, apex: str, changes: ZoneChanges) -> Zone:
    zone = store.add_zone(build_zone(store.settings, apex, changes))
    store.purge([zone.apex])
    return zone


def change_zone(store: Store, zone: Zone, changes: ZoneChanges) -> Zone:
    """Check and save ``changes``; every answer of the zone may change, so all its names are purged."""
    f = Fields()
    new = _apply(f, zone, changes)
    f.done()
    saved = store.update_zone(new)
    store.purge([zone.apex, *(n for a in store.list_accounts(zone.apex) for n in a.names)])
    return saved


def remove_zone(store: Store, apex: str, *, force: bool = False) -> list[Account]:
    """Remove a zone (with ``force``, its accounts too); returns the accounts removed with it."""
    name = validate.hostname(apex)
    accounts = store.list_accounts(name) if force else []
    store.remove_zone(name, force=force)
    store.purge([name, *(n for a in accounts for n in a.names)])
    return accounts


def zone_dict(store: Store, zone: Zone) -> dict[str, Any]:
    """A zone as the CLI's ``--json`` and the API show it: its fields, its negative TTL (what
    resolvers cache a negative answer for), serial and account count."""
    return {
        **asdict(zone),
        "negative_ttl": min(zone.minimum, zone.soa_ttl),
        "serial": store.zone_serial(zone.apex),
        "accounts": store.count_accounts(zone.apex),
    }
