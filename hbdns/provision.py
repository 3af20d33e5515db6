"""What the admin CLI and the admin API do to accounts: one validation, one write path, one purge.

Both surfaces turn their input (options, JSON) into plain values and call these functions, so the
same bad input gets the same refusal (:class:`~hbdns.validate.Invalid`, every bad field named the
way the API's JSON names it; the CLI prints the first reason) and a refused request writes nothing:
everything is checked before the first write. Every write that changes what DNS answers hands the
names to the store's purger (:meth:`hbdns.store.Store.purge`), whichever surface made it.
Zones are in :mod:`hbdns.provision_zones`.
"""

from __future__ import annotations

import secrets
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hbdns import ents, validate
from hbdns.ipv6_prefix import interface_id
from hbdns.model import Account, NotifyPrefs
from hbdns.passwords import hash_password, new_password
from hbdns.validate import Fields

if TYPE_CHECKING:
    from hbdns.store import AccountStatus, Store

PREF_NAMES = tuple(f.name for f in fields(NotifyPrefs))
# Fields whose change alters a DNS answer (names, TTL via the plan, neutral addresses, MX, wildcard).
DNS_FIELDS = ("fqdn", "aliases", "plan", "neutral_ipv4", "neutral_ipv6", "mx", "wildcard")


def merge_prefs(f: Fields, base: NotifyPrefs, changes: NotifyPrefs | Mapping[str, Any] | None) -> NotifyPrefs:
    """``base`` with ``changes`` applied (``None`` values: unchanged). Each value is checked on its own
    by :meth:`NotifyPrefs.validate` (the defaults are valid, so a refusal is that field's)."""
    if changes is None:
        return base
    if isinstance(changes, NotifyPrefs):
        changes = {k: getattr(changes, k) for k in PREF_NAMES}
    out: dict[str, Any] = {}
    for name, value in changes.items():
        if value is None:
            continue
        if name not in PREF_NAMES:
            f.add(f"prefs.{name}", f"unknown preference {name!r} (known: {', '.join(PREF_NAMES)})")
            continue
        if name == "sms_min_outage" and (isinstance(value, bool) or not isinstance(value, int)):
            f.add("prefs.sms_min_outage", "sms minimum outage must be a whole number of seconds")
            continue
        if name != "sms_min_outage" and not isinstance(value, str):
            f.add(f"prefs.{name}", f"{name} must be text")
            continue
        try:
            replace(NotifyPrefs(), **{name: value}).validate()
        except validate.ValidationError as exc:
            f.add(f"prefs.{name}", str(exc))
            continue
        out[name] = value
    return replace(base, **out)


def check_aliases(f: Fields, aliases: Iterable[str], name: str | None, zone: str | None) -> tuple[str, ...]:
    """Aliases, normalised and de-duplicated: each a name in ``zone`` other than ``name``."""
    out: list[str] = []
    for i, raw in enumerate(aliases):
        alias = f.check(f"aliases.{i}", validate.hostname, raw)
        if alias is None:
            continue
        if zone is not None and not validate.in_zone(alias, zone):
            f.add(f"aliases.{i}", f"alias {alias} is not in zone {zone}")
        elif alias == name:
            f.add(f"aliases.{i}", f"alias {alias} repeats the account name")
        elif alias not in out:
            out.append(alias)
    return tuple(out)


MAX_RECIPIENTS = 10_000


def check_recipients(f: Fields, items: Iterable[str], names: Sequence[str]) -> tuple[str, ...]:
    """The backup MX's recipient list: local parts (``alice``: at every name of the account) or
    whole addresses at one of ``names``; lowercased, de-duplicated, order kept."""
    out: list[str] = []
    for i, raw in enumerate(items):
        text = str(raw).strip().lower()
        where = f"mx_recipients.{i}"
        if i >= MAX_RECIPIENTS:
            f.add("mx_recipients", f"at most {MAX_RECIPIENTS} recipients")
            break
        local, at, domain = text.rpartition("@")
        if not at:
            local, domain = text, ""
        if not validate.is_local_part(local):
            f.add(where, f"{text[:80]!r} is not a local part or e-mail address")
        elif domain and domain not in names:
            f.add(where, f"{text[:80]!r} is not at a name of this account ({', '.join(names)})")
        elif text not in out:
            out.append(text)
    return tuple(out)


def _check_plan(f: Fields, store: Store, plan: str) -> None:
    if plan not in store.plans:
        f.add("plan", f"unknown plan {plan!r} (known: {', '.join(sorted(store.plans))})")


def _optional(f: Fields, field: str, check: Any, value: str) -> str:
    """``""`` stays ``""`` (use the default / clear it); anything else must pass ``check``."""
    return (f.check(field, check, value) or "") if value else ""


def _contacts(f: Fields, emails: Iterable[str], phones: Iterable[str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    mails = tuple(f.check(f"emails.{i}", validate.email, e) or "" for i, e in enumerate(emails))
    tels = tuple(f.check(f"phones.{i}", validate.phone, p) or "" for i, p in enumerate(phones))
    return mails, tels


def build_account(
    store: Store,
    fqdn: str,
    plan: str,
    *,
    aliases: Iterable[str] = (),
    password: str | None = None,
    neutral_ipv4: str = "",
    neutral_ipv6: str = "",
    mx: bool = False,
    emails: Iterable[str] = (),
    phones: Iterable[str] = (),
    webhook: str = "",
    prefs: NotifyPrefs | Mapping[str, Any] | None = None,
    wildcard: bool = False,
    ipv6_interface_id: str = "",
    mx_recipients: Iterable[str] = (),
) -> Account:
    """Check everything and build the account value (not stored yet; id 0). Raises
    :class:`~hbdns.validate.Invalid` naming every bad field."""
    f = Fields()
    name = f.check("fqdn", validate.hostname, fqdn)
    zone = store.find_zone(name) if name else None
    if name and zone is None:
        f.add("fqdn", f"{name} is in no zone served here")
    alias_names = check_aliases(f, aliases, name, zone)
    _check_plan(f, store, plan)
    if password is not None:
        f.check("password", validate.password, password)
    v4 = _optional(f, "neutral_ipv4", validate.ipv4, neutral_ipv4)
    v6 = _optional(f, "neutral_ipv6", validate.ipv6, neutral_ipv6)
    mails, tels = _contacts(f, emails, phones)
    hook = _optional(f, "webhook", validate.url, webhook)
    notify = merge_prefs(f, NotifyPrefs(), prefs)
    iid = _optional(f, "ipv6_interface_id", interface_id, ipv6_interface_id)
    rcpts = check_recipients(f, mx_recipients, (name or "", *alias_names))
    f.done()
    assert name is not None and zone is not None
    return Account(
        id=0,
        fqdn=name,
        zone=zone,
        plan=plan,
        hb_key=secrets.token_bytes(32),
        pw_hash=hash_password(password) if password else "",
        aliases=alias_names,
        neutral_ipv4=v4,
        neutral_ipv6=v6,
        mx=mx,
        emails=mails,
        phones=tels,
        webhook=hook,
        prefs=notify,
        wildcard=bool(wildcard),
        ipv6_interface_id=iid,
        mx_recipients=rcpts,
    )


def _purged(account: Account) -> list[str]:
    """The names whose answers a new, changed or removed ``account`` alters: its names and the
    names between them and the apex (empty non-terminals that appear or go with them)."""
    return ents.with_enclosers(account.names, account.zone)


@dataclass(frozen=True)
class Created:
    account: Account
    password: str | None  # generated here (shown once); None when the caller chose it


def create_account(store: Store, fqdn: str, plan: str, *, password: str | None = None, **kw: Any) -> Created:
    """Check, store and purge a new account (its names were NXDOMAIN in pdns' negative cache)."""
    generated = new_password() if password is None else None
    account = store.add_account(build_account(store, fqdn, plan, password=generated or password, **kw))
    store.purge(_purged(account))
    return Created(account=account, password=generated)


@dataclass(frozen=True)
class AccountChanges:
    """What to change in an account; ``None`` leaves a field as it is, ``""`` / ``()`` clears it."""

    plan: str | None = None
    aliases: Sequence[str] | None = None
    neutral_ipv4: str | None = None
    neutral_ipv6: str | None = None
    mx: bool | None = None
    emails: Sequence[str] | None = None
    phones: Sequence[str] | None = None
    webhook: str | None = None
    prefs: Mapping[str, Any] | None = None
    wildcard: bool | None = None
    ipv6_interface_id: str | None = None
    mx_recipients: Sequence[str] | None = None

    def given(self) -> tuple[str, ...]:
        """The names of the fields this change sets."""
        return tuple(f.name for f in fields(self) if getattr(self, f.name) is not None)


def change_account(store: Store, old: Account, changes: AccountChanges) -> Account:
    """Check ``changes`` against ``old`` and save them; purges the names when an answer changes."""
    f = Fields()
    new: dict[str, Any] = {}
    if changes.plan is not None:
        _check_plan(f, store, changes.plan)
        new["plan"] = changes.plan
    if changes.aliases is not None:
        new["aliases"] = check_aliases(f, changes.aliases, old.fqdn, old.zone)
    if changes.neutral_ipv4 is not None:
        new["neutral_ipv4"] = _optional(f, "neutral_ipv4", validate.ipv4, changes.neutral_ipv4)
    if changes.neutral_ipv6 is not None:
        new["neutral_ipv6"] = _optional(f, "neutral_ipv6", validate.ipv6, changes.neutral_ipv6)
    if changes.mx is not None:
        new["mx"] = changes.mx
    if changes.emails is not None or changes.phones is not None:
        mails, tels = _contacts(f, changes.emails or (), changes.phones or ())
        new.update({"emails": mails} if changes.emails is not None else {})
        new.update({"phones": tels} if changes.phones is not None else {})
    if changes.webhook is not None:
        new["webhook"] = _optional(f, "webhook", validate.url, changes.webhook)
    new["prefs"] = merge_prefs(f, old.prefs, changes.prefs)
    if changes.wildcard is not None:
        new["wildcard"] = bool(changes.wildcard)
    if changes.ipv6_interface_id is not None:
        new["ipv6_interface_id"] = _optional(f, "ipv6_interface_id", interface_id, changes.ipv6_interface_id)
    if changes.mx_recipients is not None or "aliases" in new:
        names = (old.fqdn, *new.get("aliases", old.aliases))
        rcpts = changes.mx_recipients if changes.mx_recipients is not None else old.mx_recipients
        new["mx_recipients"] = check_recipients(f, rcpts, names)
    f.done()
    account = store.save_account(old, replace(old, **new))
    if any(getattr(old, k) != getattr(account, k) for k in DNS_FIELDS):
        store.purge(set(_purged(old)) | set(_purged(account)))
    return account


def remove_account(store: Store, account: Account) -> Account:
    removed = store.remove_account(account.id)
    store.purge(_purged(removed))
    return removed


def set_password(store: Store, account: Account, password: str | None) -> tuple[Account, str | None]:
    """Set ``password`` (checked), or a generated one; returns the generated one to show once."""
    if password is not None:
        f = Fields()
        f.check("password", validate.password, password)
        f.done()
    generated = new_password() if password is None else None
    return store.set_password(account, generated or password or ""), generated


def write_client_config(store: Store, path: str | Path, account: Account, server: str = "") -> None:
    """The ``hbdns-client`` config file for ``account`` (it holds the key) into ``path``, mode 0600,
    written by the client distribution's own writer, so it stays what the client reads."""
    from hbdns_client.config import write_client_config as write

    server = server or f"{store.settings.heartbeat_host}:{store.settings.heartbeat_port}"
    write(path, server, account.id, account.hb_key, store.plans[account.plan].interval)


def client_config(store: Store, account: Account, server: str = "") -> str:
    """:func:`write_client_config` as text, to download or return once."""
    with tempfile.TemporaryDirectory(prefix="hbdns-cfg-") as tmp:
        path = Path(tmp) / "client.conf"
        write_client_config(store, path, account, server)
        return path.read_text()


def status_dict(st: AccountStatus) -> dict[str, Any]:
    """An account with its state, as ``hbdns account show --json`` and the admin API show it. ``live``
    is what DNS answers now (any family's ``alive`` key; ``live_families`` which ones);
    ``recorded_state`` the last transition recorded."""
    return {
        **st.account.public_dict(),
        "live": st.live,
        "state": "live" if st.live else "neutral",
        "recorded_state": st.state.state,
        "since_ms": st.state.since_ms,
        "last_beat_ms": st.state.last_beat_ms,
        "ipv4": st.state.ipv4,
        "ipv6": st.state.ipv6,
        "expires_in_ms": st.alive_ms,
        "live_families": [f for f, ms in ((4, st.alive4_ms), (6, st.alive6_ms)) if ms > 0],
    }


@dataclass(frozen=True)
class Page:
    items: list[AccountStatus]
    next_after: int | None  # the cursor of the next page; None on the last one


def page_accounts(store: Store, *, zone: str | None, state: str | None, after: int, limit: int) -> Page:
    """Accounts by id after ``after``, optionally only one zone's and only ``live``/``neutral`` ones
    (what DNS answers now), at most ``limit`` of them; stable while accounts come and go."""
    ids = sorted(i for i in store.account_ids(zone) if i > after)
    items: list[AccountStatus] = []
    pos = 0
    while pos < len(ids) and len(items) <= limit:
        chunk = ids[pos : pos + max(limit, 50)]
        pos += len(chunk)
        for st in store.statuses(chunk):
            if state is None or (state == "live") == st.live:
                items.append(st)
    more = len(items) > limit
    items = items[:limit]
    return Page(items=items, next_after=items[-1].account.id if more and items else None)
