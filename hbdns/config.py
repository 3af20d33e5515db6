"""Typed settings read from ``HBDNS_*`` environment variables.

Every service builds one :class:`Settings` in ``main()`` with :func:`load`. A bad value fails loudly
with :class:`ConfigError` naming the variable, so a typo never silently falls back to a default.
Every variable is listed, with a comment, in ``deploy/.env.example``; a test keeps the two in step.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any, TypeVar

from hbdns import config_values as values
from hbdns import connection
from hbdns.logs import setup_logging

PREFIX = "HBDNS_"
CLIENT_PREFIX = "HBDNS_CLIENT_"

T = TypeVar("T")


class ConfigError(ValueError):
    """A setting has a value that cannot be used."""


def _setting(default: str, parse: Callable[[str], Any] = str, show: Callable[[str], str] = repr) -> Any:
    """Declare a setting: its default (as the environment would spell it), its parser, and how a
    refused value is shown in the error (URLs with passwords are redacted)."""
    return field(default=parse(default), metadata={"parse": parse, "raw_default": default, "show": show})


@dataclass(frozen=True)
class Settings:
    """All settings of all services; each service reads what it needs."""

    # Redis
    redis_url: str = _setting("redis://127.0.0.1:6379/0", values.redis_url, values.redacted)
    # The backend's own Redis (a replica on the DNS host); "" = redis_url
    backend_redis_url: str = _setting("", values.optional_redis_url, values.redacted)
    # Beat writes that recorded a transition wait (bounded) until this many replicas have them
    redis_wait_replicas: int | None = _setting("auto", values.wait_replicas)
    redis_wait_timeout: float = _setting("0.1", values.positive_float)
    log_level: str = _setting("INFO", values.choice("debug", "info", "warning", "error"))

    # PowerDNS remote backend (private: only PowerDNS may reach it)
    backend_host: str = _setting("127.0.0.1")
    backend_port: int = _setting("8053", values.port)
    backend_threads: int = _setting("4", values.positive_int)
    backend_socket: str = _setting("")
    # Answers the backend keeps in-process, kept true by Redis client tracking; 0 = no cache
    backend_cache_entries: int = _setting("100000", values.count)
    backend_metrics_addr: str = _setting("127.0.0.1:9109", values.metrics_addr)
    # PowerDNS HTTP API for cache purges (comma list: several pdns instances allowed)
    pdns_api_urls: tuple[str, ...] = _setting("", values.word_list)
    pdns_api_key: str = _setting("")
    pdns_api_timeout: float = _setting("1.0", values.positive_float)

    # Heartbeat listener (public UDP)
    heartbeat_host: str = _setting("127.0.0.1")
    heartbeat_host6: str = _setting("::1")
    heartbeat_port: int = _setting("8999", values.port)
    heartbeat_max_skew: float = _setting("300", values.positive_float)
    heartbeat_batch: int = _setting("256", values.positive_int)
    heartbeat_pipeline: int = _setting("2", values.positive_int)
    heartbeat_source_rate: float = _setting("200", values.positive_float)  # authenticated beats per source
    heartbeat_source_burst: int = _setting("1000", values.positive_int)
    heartbeat_account_rate: float = _setting("2", values.positive_float)  # authenticated beats per account
    heartbeat_account_burst: int = _setting("20", values.positive_int)
    heartbeat_lookup_rate: float = _setting("20000", values.positive_float)  # pre-auth budget: lookups/s
    heartbeat_lookup_burst: int = _setting("100000", values.positive_int)
    heartbeat_unknown_ttl: float = _setting("2", values.positive_float)
    metrics_host: str = _setting("127.0.0.1")
    metrics_port: int = _setting("9108", values.port)

    # dyndns2 update API (public HTTP)
    update_host: str = _setting("127.0.0.1")
    update_port: int = _setting("8080", values.port)
    update_trusted_proxies: tuple[str, ...] = _setting("", values.networks)
    update_threads: int = _setting("8", values.positive_int)
    update_account_rate: float = _setting("6", values.positive_float)
    update_account_burst: int = _setting("20", values.positive_int)
    update_authfail_rate: float = _setting("1", values.positive_float)  # per (source, account)
    update_authfail_burst: int = _setting("10", values.positive_int)
    update_authfail_source_rate: float = _setting("10", values.positive_float)  # per source, any accounts
    update_authfail_source_burst: int = _setting("100", values.positive_int)
    update_authfail_account_rate: float = _setting("3", values.positive_float)  # per account, any sources
    update_authfail_account_burst: int = _setting("30", values.positive_int)
    update_known_source_ttl: int = _setting("2592000", values.positive_int)
    update_blocked_agents: tuple[str, ...] = _setting("", values.word_list)
    update_public_url: str = _setting("", values.base_url)
    update_metrics_addr: str = _setting("127.0.0.1:9110", values.metrics_addr)

    # ACME DNS-01 (served by the update API under /acme-dns and /httpreq)
    acme_value_ttl: int = _setting("3600", values.positive_int)
    acme_update_rate: float = _setting("6", values.positive_float)  # per credential
    acme_update_burst: int = _setting("10", values.positive_int)
    acme_authfail_rate: float = _setting("10", values.positive_float)  # per source
    acme_authfail_burst: int = _setting("20", values.positive_int)

    # Admin API (hbdns-admin-api; private: its own loopback port by default)
    admin_api_host: str = _setting("127.0.0.1")
    admin_api_port: int = _setting("8070", values.port)
    admin_api_threads: int = _setting("4", values.positive_int)
    admin_api_rate: float = _setting("300", values.positive_float)  # requests per minute, per token
    admin_api_burst: int = _setting("100", values.positive_int)
    admin_api_authfail_rate: float = _setting("10", values.positive_float)  # bad tokens per minute, per source
    admin_api_authfail_burst: int = _setting("20", values.positive_int)
    admin_api_metrics_addr: str = _setting("127.0.0.1:9113", values.metrics_addr)

    # Customer status page (hbdns-status-page; public behind the provider's TLS proxy)
    status_host: str = _setting("127.0.0.1")
    status_port: int = _setting("8081", values.port)
    status_threads: int = _setting("8", values.positive_int)
    status_trusted_proxies: tuple[str, ...] = _setting("", values.networks)
    status_public_url: str = _setting("", values.base_url)
    status_cookie_secure: bool = _setting("true", values.boolean)
    status_session_ttl: int = _setting("28800", values.positive_int)
    status_poll_interval: float = _setting("3", values.positive_float)
    status_metrics_addr: str = _setting("127.0.0.1:9114", values.metrics_addr)

    # Liveness sweeper (hbdns-sweeper)
    sweeper_roles: tuple[str, ...] = _setting("sweep,hints", values.subset("sweep", "hints"))
    sweep_interval: float = _setting("0.5", values.positive_float)
    sweep_batch: int = _setting("1000", values.positive_int)
    # the events stream: entries every consumer group acknowledged are trimmed beyond events_maxlen;
    # past events_hard_cap the oldest go anyway, counted and alarmed (hbdns/event_trim.py)
    events_maxlen: int = _setting("100000", values.positive_int)
    events_hard_cap: int = _setting("5000000", values.positive_int)
    events_trim_interval: float = _setting("1", values.positive_float)
    account_log_size: int = _setting("200", values.positive_int)
    sweeper_metrics_addr: str = _setting("127.0.0.1:9111", values.metrics_addr)

    # Mass outages (hbdns/mass.py): a share of a scope's live heartbeat accounts silent within one
    # window holds the customers' outage messages for mass_hold seconds and alarms the operator
    mass_scopes: tuple[str, ...] = _setting("zone,system", values.subset_or_none("zone", "system"))
    mass_share: float = _setting("0.25", values.share)
    mass_min_accounts: int = _setting("100", values.positive_int)
    mass_window: float = _setting("60", values.positive_float)
    mass_hold: float = _setting("900", values.positive_float)
    mass_settle: float = _setting("10", values.non_negative_float)  # outage messages wait this long first
    operator_emails: tuple[str, ...] = _setting("", values.word_list)
    operator_webhook: str = _setting("", values.http_url_or_empty)

    # Plans: JSON object merged over the built-in table, e.g. {"setip-c": {"interval": 60}}
    plans: str = _setting("", values.json_object)

    # Defaults for new zones
    default_neutral_ipv4: str = _setting("192.0.2.1", values.ipv4)
    default_neutral_ipv6: str = _setting("2001:db8::1", values.ipv6)
    default_ns: tuple[str, ...] = _setting("ns1.example.net", values.word_list)
    default_hostmaster: str = _setting("hostmaster.example.net")
    default_backup_mx: str = _setting("")
    default_backup_mx_pref: int = _setting("50", values.positive_int)
    default_negative_ttl: int = _setting("15", values.negative_ttl)

    # Notifier
    notify_consumer: str = _setting("")
    notify_backoff: float = _setting("1.0", values.positive_float)
    notify_backoff_max: float = _setting("300", values.positive_float)
    notify_probe_max: float = _setting("60", values.positive_float)
    notify_retry_horizon: float = _setting("432000", values.positive_float)
    notify_liveness: float = _setting("5", values.positive_float)
    notify_claim_idle: float = _setting("60", values.positive_float)
    notify_workers: int = _setting("8", values.positive_int)
    notify_sent_ttl: int = _setting("604800", values.positive_int)
    notify_email_rate: float = _setting("50", values.non_negative_float)  # messages/s for all notifiers, 0: no limit
    notify_sms_rate: float = _setting("10", values.non_negative_float)
    notifier_metrics_addr: str = _setting("127.0.0.1:9112", values.metrics_addr)
    smtp_host: str = _setting("")
    smtp_port: int = _setting("25", values.port)
    smtp_security: str = _setting("none", values.choice("none", "starttls", "tls"))
    smtp_user: str = _setting("")
    smtp_password: str = _setting("")
    smtp_from: str = _setting("hbdns@localhost")
    smtp_timeout: float = _setting("10", values.positive_float)
    smtp_ca_file: str = _setting("")
    sms_url: str = _setting("")
    sms_method: str = _setting("POST", values.choice("get", "post", "put"))
    sms_format: str = _setting("json", values.choice("json", "form"))
    sms_body: str = _setting('{"to": "{to}", "text": "{text}"}')
    sms_auth: str = _setting("none", values.choice("none", "basic", "bearer"))
    sms_user: str = _setting("")
    sms_password: str = _setting("")
    sms_token: str = _setting("")
    webhook_secret: str = _setting("")
    http_timeout: float = _setting("5", values.positive_float)
    # What the messages say and how (hbdns.notices): the operator's templates, name and language
    templates_dir: str = _setting("")
    notify_lang: str = _setting("en", values.choice("de", "en"))
    operator_name: str = _setting("hbdns")
    operator_support_url: str = _setting("", values.url_or_empty)
    operator_signature: str = _setting("")
    email_html: bool = _setting("false", values.boolean)
    sms_max_segments: int = _setting("1", values.positive_int)

    # Backup MX flush on recovery (hbdns.mta_flush): ETRN targets, or postqueue for a local Postfix
    backup_mx_flush: tuple[str, ...] = _setting("", values.flush_targets)
    backup_mx_flush_timeout: float = _setting("10", values.positive_float)
    backup_mx_flush_attempts: int = _setting("5", values.positive_int)
    backup_mx_flush_backoff: float = _setting("1", values.positive_float)
    backup_mx_flush_backoff_max: float = _setting("30", values.positive_float)
    backup_mx_flush_helo: str = _setting("", values.hostname)
    backup_mx_flush_source: str = _setting("", values.address_or_empty)
    backup_mx_flush_again: float = _setting("2", values.positive_float)  # second flush: record TTL + this

    # Backup MX lookup tables for Postfix (backup_mx): socketmap on TCP, or a unix socket when set
    backup_mx_map_host: str = _setting("127.0.0.1")
    backup_mx_map_port: int = _setting("8026", values.port)
    backup_mx_map_socket: str = _setting("")
    backup_mx_map_max_connections: int = _setting("256", values.positive_int)

    # Neutral host (neutral_host): what the neutral addresses answer on ports 25 and 80
    neutral_host_addresses: tuple[str, ...] = _setting("127.0.0.1,::1", values.addresses)
    neutral_host_smtp_port: int = _setting("25", values.port)
    neutral_host_http_port: int = _setting("80", values.port)
    neutral_host_name: str = _setting("", values.hostname)
    neutral_host_max_connections: int = _setting("512", values.positive_int)
    neutral_host_per_source: int = _setting("16", values.positive_int)
    neutral_host_timeout: float = _setting("10", values.positive_float)

    def wait_replicas(self) -> int:
        """Replicas a beat write that recorded a transition waits for (``auto``: 1 with Sentinel)."""
        if self.redis_wait_replicas is not None:
            return self.redis_wait_replicas
        return 1 if connection.is_sentinel(self.redis_url) else 0

    @property
    def acme_dns_url(self) -> str:
        """The acme-dns base URL ACME clients are given (``server_url``)."""
        base = self.update_public_url or f"http://{self.update_host}:{self.update_port}"
        return base + "/acme-dns"

    def plan_table(self) -> dict[str, Any]:
        """The plan table with this configuration's overrides applied."""
        from hbdns.plans import build_plans

        return build_plans(json.loads(self.plans))


_SECRET_NAMES = ("password", "token", "secret", "key")

# Settings that were removed, with what replaced them. Unlike an unknown name (a typo, refused) they
# are ignored with a warning at start-up: an env file shared by every service (copied whole from
# deploy/.env.example) must not stop the DNS backend after an upgrade over a notifier-only line.
REMOVED = {
    "HBDNS_NOTIFIER_ROLES": "the sweeper is its own service now (hbdns-sweeper, roles in "
    "HBDNS_SWEEPER_ROLES) and hbdns-notifier always runs its consumer",
    "HBDNS_NOTIFY_MAX_ATTEMPTS": "transient failures are retried until HBDNS_NOTIFY_RETRY_HORIZON "
    "(seconds, default 5 days), with backoff up to HBDNS_NOTIFY_BACKOFF_MAX",
}


def env_name(field_name: str) -> str:
    return PREFIX + field_name.upper()


def is_secret(field_name: str) -> bool:
    """Settings whose values must never be logged or printed."""
    return any(word in field_name for word in _SECRET_NAMES)


def load(env: Mapping[str, str] | None = None) -> Settings:
    """Build settings from ``env`` (default: ``os.environ``); raise ConfigError naming a bad variable."""
    source = os.environ if env is None else env
    known = {env_name(f.name) for f in fields(Settings)} | set(REMOVED)
    # HBDNS_CLIENT_* belong to the stand-alone update client (hbdns_client), not to the services.
    unknown = sorted(k for k in source if k.startswith(PREFIX) and not k.startswith(CLIENT_PREFIX) and k not in known)
    if unknown:
        raise ConfigError(f"{unknown[0]}: unknown setting (typo?)")
    values: dict[str, Any] = {}
    for f in fields(Settings):
        name = env_name(f.name)
        if name not in source:
            continue
        raw = source[name]
        try:
            values[f.name] = f.metadata["parse"](raw)
        except (ValueError, TypeError) as exc:
            shown = "***" if is_secret(f.name) else f.metadata["show"](raw)
            raise ConfigError(f"{name}={shown}: {exc}") from None
    settings = Settings(**values)
    settings.plan_table()  # validate plan overrides now, not at first use
    if settings.events_hard_cap < settings.events_maxlen:
        raise ConfigError(
            f"HBDNS_EVENTS_HARD_CAP={settings.events_hard_cap}: must not be below HBDNS_EVENTS_MAXLEN"
            f" ({settings.events_maxlen})"
        )
    return settings


def describe() -> list[tuple[str, str]]:
    """(variable, default) pairs, for docs and for the .env.example check."""
    return [(env_name(f.name), f.metadata["raw_default"]) for f in fields(Settings)]


def service_settings(prog: str) -> Settings:
    """Settings for a service's ``main()``: a bad value prints one line naming it and exits 2; then
    JSON logging is configured once, with ``prog`` as the service name in every line."""
    try:
        settings = load()
    except ConfigError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    setup_logging(settings.log_level, prog)
    for name in sorted(set(os.environ) & set(REMOVED)):
        logging.getLogger("hbdns.config").warning(f"{name} is ignored: {REMOVED[name]}", extra={"setting": name})
    return settings
