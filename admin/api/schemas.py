"""The admin API's wire format: pydantic models that validate every request and, through
flask-openapi3, are the OpenAPI 3.1 document (one source for both).

These models check shape and JSON types only (strict: ``"5"`` is no number, ``"yes"`` no boolean,
unknown fields are refused). What a value means (a hostname, an address, a name in a zone, a free
name, quiet hours) is checked by :mod:`hbdns.provision`, the same code the CLI calls, so both refuse
the same input with the same words.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Level = Literal["none", "outages", "all"]
Hostname = Annotated[str, Field(max_length=300, examples=["home.dyn.example.net"])]
Text = Annotated[str, Field(max_length=2000)]


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- problems (RFC 9457) ------------------------------------------------------------------------


class FieldProblem(Out):
    field: str = Field(description="the request field, dotted (`emails.1`); empty: the body itself")
    pointer: str = Field(description="JSON pointer to the field (`#/emails/1`)")
    detail: str = Field(description="why it was refused (the CLI prints the same line)")


class Problem(Out):
    """An error, as ``application/problem+json``."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str = ""
    errors: list[FieldProblem] | None = Field(None, description="per-field reasons (422, some 409)")


# --- notification preferences ----------------------------------------------------------------


class PrefsIn(Body):
    """Notification preferences to set; absent fields stay as they are."""

    email: Level | None = Field(None, description="e-mail: none, outages (offline/online) or all (also IP changes)")
    sms: Level | None = None
    webhook: Level | None = None
    sms_min_outage: int | None = Field(None, description="seconds an outage must last before an SMS (>= 0)")
    quiet_hours: Text | None = Field(None, description="no SMS in this local window, e.g. `22:00-07:00`; `` = none")
    tz: Text | None = Field(None, description="IANA time zone of quiet hours and message times, e.g. Europe/Berlin")
    lang: Text | None = Field(None, description="language of the messages: `de` or `en`; `` = the zone's default")


class PrefsOut(Out):
    email: str
    sms: str
    webhook: str
    sms_min_outage: int
    quiet_hours: str
    tz: str
    lang: str = Field("", description="`` = the zone's language, else the notifier's HBDNS_NOTIFY_LANG")


# --- accounts ----------------------------------------------------------------------------------


class AccountPath(BaseModel):
    account: str = Field(description="account id or any of its names")


class AccountQuery(BaseModel):
    zone: str | None = Field(None, description="only this zone's accounts")
    state: Literal["live", "neutral"] | None = Field(None, description="only accounts DNS answers live/neutral now")
    after: int = Field(0, ge=0, description="cursor: the last id of the previous page (`next` gives it)")
    limit: int = Field(100, ge=1, le=1000)


RECIPIENTS = (
    "the users the backup MX accepts mail for while the account is offline: local parts (at every "
    "name of the account) or whole addresses at one of its names; empty: it verifies recipients with "
    "the customer's server (docs/backup-mx.md)"
)


class AccountCreate(Body):
    fqdn: Hostname
    plan: str = Field(examples=["heartbeat-c"], description="plan name (README: heartbeat-a/b/c, setip-a, ...)")
    aliases: list[Hostname] = Field(default_factory=list, max_length=50)
    password: Text | None = Field(None, description="update password (8+ characters); default: a random one")
    neutral_ipv4: str = Field("", description="address answered while neutral; empty: the zone's")
    neutral_ipv6: str = ""
    mx: bool = Field(False, description="publish MX <name> (and the zone's backup MX)")
    mx_recipients: list[Text] = Field(default_factory=list, max_length=10_000, description=RECIPIENTS)
    emails: list[Text] = Field(default_factory=list, max_length=20)
    phones: list[Text] = Field(default_factory=list, max_length=20)
    webhook: Text = Field("", description="http(s) URL that receives signed JSON events")
    prefs: PrefsIn | None = None
    wildcard: bool = Field(False, description="`*.<fqdn>` answers what the account answers")
    ipv6_interface_id: str = Field(
        "", description="fixed IPv6 interface id (lower 64 bits, `::1a2b:3c4d:5e6f:7081`): AAAA = ip6lanprefix + id"
    )


class AccountChange(Body):
    """Fields to change; absent (or null) fields stay as they are, `""`/`[]` clears one."""

    plan: str | None = None
    aliases: list[Hostname] | None = Field(None, max_length=50)
    neutral_ipv4: str | None = None
    neutral_ipv6: str | None = None
    mx: bool | None = None
    mx_recipients: list[Text] | None = Field(None, max_length=10_000, description=RECIPIENTS)
    emails: list[Text] | None = Field(None, max_length=20)
    phones: list[Text] | None = Field(None, max_length=20)
    webhook: Text | None = None
    prefs: PrefsIn | None = None
    wildcard: bool | None = None
    ipv6_interface_id: str | None = Field(None, description='`""` = none')


class PasswordSet(Body):
    password: Text | None = Field(None, description="the new update password; absent: a random one, returned once")


class StateOut(Out):
    id: int
    fqdn: str
    plan: str
    live: bool = Field(description="what DNS answers now (the account's liveness key)")
    state: Literal["live", "neutral"]
    recorded_state: str = Field(description="the last recorded transition (lags by up to a sweep)")
    since_ms: int
    last_beat_ms: int
    ipv4: str
    ipv6: str
    expires_in_ms: int
    live_families: list[int] = Field(description="the address families DNS answers live now: 4 (A), 6 (AAAA)")


class AccountOut(StateOut):
    zone: str
    aliases: list[str]
    neutral_ipv4: str
    neutral_ipv6: str
    mx: bool
    mx_recipients: list[str] = Field(description=RECIPIENTS)
    emails: list[str]
    phones: list[str]
    webhook: str
    prefs: PrefsOut
    wildcard: bool
    ipv6_interface_id: str
    has_password: bool
    created: float
    updated: float


class AccountCreated(AccountOut):
    heartbeat_key: str = Field(description="hex, 32 bytes: shown only in this answer")
    update_password: str | None = Field(description="the generated password, shown only here; null if you chose it")
    client_config: str = Field(description="an hbdns-client config file with the key (keep it secret)")


class AccountPage(Out):
    items: list[AccountOut]
    next: str | None = Field(description="URL of the next page; null on the last")


class KeyRotated(Out):
    id: int
    heartbeat_key: str = Field(description="the new key, shown only here; the old one stops working now")
    client_config: str


class PasswordOut(Out):
    id: int
    update_password: str | None = Field(description="the generated password, shown only here; null if you chose it")


class EventOut(BaseModel):
    """One transition: created, recovered, neutralized, ip_changed (with its own extra fields), or a
    ``test`` written by ``hbdns notify test``."""

    model_config = ConfigDict(extra="allow")
    type: str
    account: int
    fqdn: str
    at: int = Field(description="Unix ms")
    event_id: str


class EventsQuery(BaseModel):
    limit: int = Field(50, ge=1, le=1000)


class EventList(Out):
    items: list[EventOut]


class Removed(Out):
    removed: str


# --- zones ---------------------------------------------------------------------------------------


class ZonePath(BaseModel):
    apex: str


class ZoneRemoveQuery(BaseModel):
    force: bool = Field(False, description="also remove the zone's accounts")


class RecordIn(Body):
    name: Text = Field(description="relative to the apex, `@` for the apex, or absolute with a trailing dot")
    type: str = Field(examples=["A"])
    content: Text
    ttl: int = 3600


class RecordOut(Out):
    name: str
    type: str
    content: str
    ttl: int


class ZoneFields(Body):
    ns: list[Hostname] | None = Field(None, max_length=20)
    hostmaster: Hostname | None = None
    neutral_ipv4: str | None = None
    neutral_ipv6: str | None = Field(None, description='"" = none')
    backup_mx: Hostname | None = Field(None, description='the backup MX host; "" = none')
    backup_mx_pref: int | None = None
    records: list[RecordIn] | None = Field(None, max_length=500, description="static records (replaces all)")
    allow_private: bool | None = Field(None, description="labs only: let updates publish non-public addresses")
    lang: Text | None = Field(None, description="its accounts' message language, `de` or `en`; `` = the notifier's")
    negative_ttl: int | None = Field(
        None, description="seconds resolvers cache a negative answer (SOA minimum; default HBDNS_DEFAULT_NEGATIVE_TTL)"
    )


class ZoneChangeBody(ZoneFields):
    """Zone options to change; absent fields stay as they are."""


class ZoneCreate(ZoneFields):
    """A new zone; absent options take the ``HBDNS_DEFAULT_*`` settings."""

    apex: Hostname


class ZoneOut(Out):
    apex: str
    ns: list[str]
    hostmaster: str
    neutral_ipv4: str
    neutral_ipv6: str
    backup_mx: str
    backup_mx_pref: int
    refresh: int
    retry: int
    expire: int
    minimum: int
    soa_ttl: int
    ns_ttl: int
    records: list[RecordOut]
    allow_private: bool
    lang: str = Field("", description="`` = the notifier's HBDNS_NOTIFY_LANG")
    negative_ttl: int = Field(description="what resolvers cache a negative answer for: min(soa_ttl, minimum)")
    created: float
    updated: float
    serial: int
    accounts: int


class ZoneList(Out):
    items: list[ZoneOut]


# --- ACME credentials ----------------------------------------------------------------------------


class AcmeCredentialsRequest(Body):
    name: Hostname | None = Field(None, description="the account's name or alias they are for; default its FQDN")


class AcmeCredentialPath(BaseModel):
    account: str = Field(description="account id or any of its names")
    name: str = Field(description="the name whose credentials to revoke")


class AcmeCredentialOut(Out):
    username: str
    name: str
    fulldomain: str = Field(description="the challenge name: _acme-challenge.<name>")
    created: float


class AcmeCredentialList(Out):
    items: list[AcmeCredentialOut]


class AcmeCredentialsIssued(Out):
    """Shown only in this answer: the key is stored as a digest."""

    name: str
    fulldomain: str
    acme_dns: dict[str, dict[str, Any]] = Field(
        description="name -> acme-dns account (username, password, subdomain, fulldomain, allowfrom, server_url): "
        "the content of lego's ACME_DNS_STORAGE_PATH file and certbot's acmedns.json"
    )
    httpreq: dict[str, str] = Field(description="lego httpreq: endpoint, username, password")
    acme_sh: dict[str, str] = Field(description="acme.sh dns_acmedns variables")


# --- notifications and tokens --------------------------------------------------------------------


class DeadLetterOut(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: str
    time: float
    channel: str
    recipient: str
    account: int
    fqdn: str
    event_type: str
    event_id: str
    reason: str


class DeadLetterQuery(BaseModel):
    limit: int = Field(50, ge=1, le=1000)


class DeadLetterList(Out):
    items: list[DeadLetterOut]


class RetryRequest(Body):
    ids: list[Annotated[str, Field(max_length=200)]] = Field(min_length=1, max_length=1000)


class RetryOut(Out):
    requeued: list[str]


class TokenOut(Out):
    id: str
    scope: str = Field(examples=["zone:dyn.example.net"])
    label: str
    created: float
    expires: float | None


def dump(model: BaseModel) -> dict[str, Any]:
    """A request model as plain values, without the fields the client left out."""
    return model.model_dump(exclude_unset=True)
