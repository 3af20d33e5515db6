"""Zones and accounts as frozen values, and their Redis hash encoding.

A zone holds what the backend needs to serve the apex (SOA, NS, static records) and the defaults for
its accounts (neutral addresses, backup MX). An account is a name (plus aliases) in a zone with a
plan, a heartbeat key, an update password hash, contacts and notification preferences. The live
state (address, live/neutral, last beat) sits in the same Redis hash but is written only by the
liveness scripts (:mod:`hbdns.liveness`), so it is a separate value here.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from hbdns import validate

STATIC_TYPES = ("A", "AAAA", "CNAME", "MX", "TXT", "NS", "SRV", "CAA")
LANGUAGES = ("de", "en")  # of the notifications (hbdns.notices); "" = the default (zone, then setting)


def check_lang(value: str) -> str:
    """A message language, or "" for the default."""
    if value not in ("", *LANGUAGES):
        raise validate.ValidationError(
            f"language {value!r} must be one of {', '.join(LANGUAGES)} (or empty: the default)"
        )
    return value


# How long resolvers cache "no such name" / "no such record" (RFC 2308) for new zones: a new
# account, or an account's first AAAA, shows through a caching resolver within it (README, "Names
# and negative answers", has the measurement behind 15 s).
DEFAULT_NEGATIVE_TTL = 15
MAX_NEGATIVE_TTL = 86400


def config_fingerprint(hb_key: bytes, plan: str, zone: str) -> str:
    """A short digest of what a heartbeat listener caches about an account (key, plan, zone).

    Stored as the account's ``fp`` field by every write (:meth:`Account.to_hash`); the beat script
    refuses a beat whose caller authenticated with another fingerprint, so a listener's cache can
    never accept a beat with a rotated-away key or apply an old plan's expiry.
    """
    return hashlib.sha256(b"hbdns-fp\0" + hb_key + b"\0" + plan.encode() + b"\0" + zone.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class StaticRecord:
    """A fixed record in a zone, e.g. the backup MX host's A record. ``name`` is absolute."""

    name: str
    type: str
    content: str
    ttl: int = 3600


@dataclass(frozen=True)
class Zone:
    apex: str
    ns: tuple[str, ...]
    hostmaster: str
    neutral_ipv4: str
    neutral_ipv6: str = ""
    backup_mx: str = ""
    backup_mx_pref: int = 50
    refresh: int = 3600
    retry: int = 600
    expire: int = 1209600
    # negative-answer TTL (RFC 2308). Resolvers cache a negative answer for min(soa_ttl, minimum),
    # so provision_zones keeps soa_ttl >= minimum. Zones stored earlier keep their stored value.
    minimum: int = DEFAULT_NEGATIVE_TTL
    soa_ttl: int = 60
    ns_ttl: int = 3600
    records: tuple[StaticRecord, ...] = ()
    # Labs only: let updates publish non-public addresses (loopback, RFC 1918, documentation, ...).
    # Zones stored before the field existed read as False, the safe default: no migration needed.
    allow_private: bool = False
    # Language of its accounts' notifications unless an account sets its own; "" = HBDNS_NOTIFY_LANG.
    # Zones stored before the field existed read as "": no migration needed.
    lang: str = ""
    created: float = 0.0
    updated: float = 0.0

    def to_hash(self) -> dict[str, str]:
        d = asdict(self)
        d["ns"] = json.dumps(list(self.ns))
        d["records"] = json.dumps([asdict(r) for r in self.records])
        d["allow_private"] = "1" if self.allow_private else "0"
        return {k: str(v) for k, v in d.items()}

    @classmethod
    def from_hash(cls, h: Mapping[str, str]) -> Zone:
        return cls(
            apex=h["apex"],
            ns=tuple(json.loads(h.get("ns", "[]"))),
            hostmaster=h.get("hostmaster", ""),
            neutral_ipv4=h.get("neutral_ipv4", ""),
            neutral_ipv6=h.get("neutral_ipv6", ""),
            backup_mx=h.get("backup_mx", ""),
            backup_mx_pref=int(h.get("backup_mx_pref", 50)),
            refresh=int(h.get("refresh", 3600)),
            retry=int(h.get("retry", 600)),
            expire=int(h.get("expire", 1209600)),
            minimum=int(h.get("minimum", DEFAULT_NEGATIVE_TTL)),
            soa_ttl=int(h.get("soa_ttl", 60)),
            ns_ttl=int(h.get("ns_ttl", 3600)),
            records=tuple(StaticRecord(**r) for r in json.loads(h.get("records", "[]"))),
            allow_private=h.get("allow_private", "0") == "1",
            lang=h.get("lang", ""),
            created=float(h.get("created", 0)),
            updated=float(h.get("updated", 0)),
        )


EVENT_LEVELS = ("none", "outages", "all")


@dataclass(frozen=True)
class NotifyPrefs:
    """Which events reach the customer on which channel.

    ``outages`` = neutralized and recovered; ``all`` adds every IP change. SMS has a minimum outage
    length (shorter blips send none) and optional quiet hours ("22:00-07:00", local to ``tz``) during
    which outage SMS wait until the window ends and go out then if the outage is still open.
    ``lang`` is the messages' language; "" (also for prefs stored before the field existed: no
    migration needed) means the zone's, and without one ``HBDNS_NOTIFY_LANG``.
    """

    email: str = "outages"
    sms: str = "outages"
    webhook: str = "all"
    sms_min_outage: int = 60
    quiet_hours: str = ""
    tz: str = "UTC"
    lang: str = ""

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, raw: str | None) -> NotifyPrefs:
        if not raw:
            return cls()
        data = json.loads(raw)
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)

    def validate(self) -> NotifyPrefs:
        for channel in ("email", "sms", "webhook"):
            if getattr(self, channel) not in EVENT_LEVELS:
                raise validate.ValidationError(f"{channel} events must be one of {', '.join(EVENT_LEVELS)}")
        if self.sms_min_outage < 0:
            raise validate.ValidationError("sms minimum outage must be >= 0 seconds")
        if self.quiet_hours:
            parse_quiet_hours(self.quiet_hours)
        check_lang(self.lang)
        try:
            from zoneinfo import ZoneInfo

            ZoneInfo(self.tz)
        except Exception:
            raise validate.ValidationError(f"unknown time zone {self.tz!r}") from None
        return self


def parse_quiet_hours(text: str) -> tuple[int, int]:
    """'22:00-07:00' -> (start, end) in minutes after midnight."""
    try:
        start, end = text.split("-")
        out = []
        for part in (start, end):
            hh, mm = part.strip().split(":")
            h, m = int(hh), int(mm)
            if not (0 <= h < 24 and 0 <= m < 60):
                raise ValueError
            out.append(h * 60 + m)
    except ValueError:
        raise validate.ValidationError(f"quiet hours {text!r} must look like 22:00-07:00") from None
    return out[0], out[1]


@dataclass(frozen=True)
class Account:
    id: int
    fqdn: str
    zone: str
    plan: str
    hb_key: bytes = field(repr=False)
    pw_hash: str = field(default="", repr=False)
    aliases: tuple[str, ...] = ()
    neutral_ipv4: str = ""
    neutral_ipv6: str = ""
    mx: bool = False
    emails: tuple[str, ...] = ()
    phones: tuple[str, ...] = ()
    webhook: str = ""
    prefs: NotifyPrefs = NotifyPrefs()
    # Issue 18. Both read as off / none from hashes stored before they existed: no migration.
    wildcard: bool = False  # *.<fqdn> answers what the account answers (never another's names)
    ipv6_interface_id: str = ""  # fixed interface id ("::1a2b:3c4d:5e6f:7081"): AAAA = ip6lanprefix + it
    # The users the backup MX accepts mail for (local parts, or whole addresses at one of the
    # names), lowercase; empty: the backup MX verifies recipients with the customer's server.
    mx_recipients: tuple[str, ...] = ()
    created: float = 0.0
    updated: float = 0.0

    @property
    def names(self) -> tuple[str, ...]:
        return (self.fqdn, *self.aliases)

    @property
    def wildcard_name(self) -> str:
        return "*." + self.fqdn

    @property
    def index_names(self) -> tuple[str, ...]:
        """Every name the name index maps to this account: its names, and ``*.<fqdn>`` while its
        wildcard is on (the DNS backend finds the wildcard's answers through the index)."""
        return (*self.names, self.wildcard_name) if self.wildcard else self.names

    def to_hash(self) -> dict[str, str]:
        return {
            "id": str(self.id),
            "fqdn": self.fqdn,
            "zone": self.zone,
            "plan": self.plan,
            "hb_key": self.hb_key.hex(),
            "fp": config_fingerprint(self.hb_key, self.plan, self.zone),
            "pw_hash": self.pw_hash,
            "aliases": json.dumps(list(self.aliases)),
            "neutral_ipv4": self.neutral_ipv4,
            "neutral_ipv6": self.neutral_ipv6,
            "mx": "1" if self.mx else "0",
            "emails": json.dumps(list(self.emails)),
            "phones": json.dumps(list(self.phones)),
            "webhook": self.webhook,
            "prefs": self.prefs.to_json(),
            "wildcard": "1" if self.wildcard else "0",
            "ipv6_interface_id": self.ipv6_interface_id,
            # "" (not "[]") when empty: absent and empty both mean "verify" to backup_mx.maps
            "mx_recipients": json.dumps(list(self.mx_recipients)) if self.mx_recipients else "",
            "created": repr(self.created),
            "updated": repr(self.updated),
        }

    def new_hash(self, since_ms: int) -> dict[str, str]:
        """The hash a new account starts with: the fields every heartbeat and DNS lookup reads come
        first. Small hashes are listpacks that Redis scans in insertion order, and the beat script's
        fields used to be appended last by the first beat: its HMGET measured 2.8 us that way and
        1.5 us with them in front. The state fields start as "no beat yet" ("0", "")."""
        cfg = self.to_hash()
        hot = {
            "fqdn": cfg["fqdn"],
            "state": "neutral",
            "counter": "0",
            "ipv4": "",
            "ipv6": "",
            "fp": cfg["fp"],
            "last_beat": "0",
            "zone": cfg["zone"],
            "live": "",
            "plan": cfg["plan"],
            "neutral_ipv4": cfg["neutral_ipv4"],
            "neutral_ipv6": cfg["neutral_ipv6"],
            "mx": cfg["mx"],
        }
        return {**hot, **cfg, "since": str(since_ms)}

    @classmethod
    def from_hash(cls, h: Mapping[str, str]) -> Account:
        return cls(
            id=int(h["id"]),
            fqdn=h["fqdn"],
            zone=h["zone"],
            plan=h["plan"],
            hb_key=bytes.fromhex(h.get("hb_key", "")),
            pw_hash=h.get("pw_hash", ""),
            aliases=tuple(json.loads(h.get("aliases", "[]"))),
            neutral_ipv4=h.get("neutral_ipv4", ""),
            neutral_ipv6=h.get("neutral_ipv6", ""),
            mx=h.get("mx", "0") == "1",
            emails=tuple(json.loads(h.get("emails", "[]"))),
            phones=tuple(json.loads(h.get("phones", "[]"))),
            webhook=h.get("webhook", ""),
            prefs=NotifyPrefs.from_json(h.get("prefs")),
            wildcard=h.get("wildcard", "0") == "1",
            ipv6_interface_id=h.get("ipv6_interface_id", ""),
            mx_recipients=tuple(json.loads(h.get("mx_recipients") or "[]")),
            created=float(h.get("created", 0)),
            updated=float(h.get("updated", 0)),
        )

    def public_dict(self) -> dict[str, Any]:
        """Everything but secrets, for ``--json`` output and logs."""
        return {
            "id": self.id,
            "fqdn": self.fqdn,
            "zone": self.zone,
            "plan": self.plan,
            "aliases": list(self.aliases),
            "neutral_ipv4": self.neutral_ipv4,
            "neutral_ipv6": self.neutral_ipv6,
            "mx": self.mx,
            "emails": list(self.emails),
            "phones": list(self.phones),
            "webhook": self.webhook,
            "prefs": asdict(self.prefs),
            "wildcard": self.wildcard,
            "ipv6_interface_id": self.ipv6_interface_id,
            "mx_recipients": list(self.mx_recipients),
            "has_password": bool(self.pw_hash),
            "created": self.created,
            "updated": self.updated,
        }


# Hash fields written only by the liveness scripts. ``live``: the families recorded live ("", "4",
# "6", "46"); ``lost4``/``lost6``: when that family last went (ms).
STATE_FIELDS = ("ipv4", "ipv6", "state", "since", "last_beat", "counter", "live", "lost4", "lost6")


@dataclass(frozen=True)
class AccountState:
    """Live data of an account. ``state`` is the recorded transition state ('live' while any family
    is, else 'neutral'); the DNS answer itself follows the per-family ``alive`` keys, which are
    exact at the moment of expiry."""

    ipv4: str = ""
    ipv6: str = ""
    state: str = "neutral"
    since_ms: int = 0
    last_beat_ms: int = 0
    counter: int = 0
    live: str = ""  # the families recorded live: "", "4", "6" or "46"

    @classmethod
    def from_hash(cls, h: Mapping[str, str]) -> AccountState:
        return cls(
            ipv4=h.get("ipv4", ""),
            ipv6=h.get("ipv6", ""),
            state=h.get("state", "neutral"),
            since_ms=int(h.get("since", 0) or 0),
            last_beat_ms=int(h.get("last_beat", 0) or 0),
            counter=int(h.get("counter", 0) or 0),
            live=recorded_live(h),
        )


def recorded_live(h: Mapping[str, str]) -> str:
    """The families an account hash records live (``recorded_live`` of hbdns/lua/lib.lua): its
    ``live`` field, or for a hash of a version before per-family liveness, every family with an
    address while its state is live."""
    live = h.get("live")
    if live is not None:
        return live
    if h.get("state") != "live":
        return ""
    return ("4" if h.get("ipv4") else "") + ("6" if h.get("ipv6") else "")
