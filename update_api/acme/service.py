"""ACME DNS-01 requests: authenticate a credential, limit, check, set or remove one value. No Flask.

Decisions worth knowing:

- A credential (:mod:`hbdns.acme_credentials`) sets the challenge values of one account name only.
  acme-dns clients name it by ``subdomain`` (the credential's own id), httpreq clients by ``fqdn``
  (``_acme-challenge.<name>.``); any other subdomain or name is refused and nothing is written.
- Failed credential checks count per source (IPv6 per /64) and are refused with 429 *before* the
  check once the bucket is full; value updates count per credential. A refused request writes
  nothing but the failed-check counter.
- The value is written by one script that checks, in the same step, that the credential is still
  the current one and the name still the account's (:func:`hbdns.acme.set_value`); the challenge
  name is then purged from pdns' caches, so a negative answer pdns held does not hide the value.
- Answers are JSON. acme-dns's: 200 ``{"txt": value}`` (acme.sh looks for the value in it),
  ``{"error": "forbidden"}`` 401, ``bad_txt`` / ``bad_subdomain`` / ``malformed_json_payload`` 400.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from redis import Redis

from hbdns import acme, config, keys
from hbdns.acme_credentials import Credential, check
from hbdns.logs import RateLimitedLog
from hbdns.purge import Purger
from hbdns.ratelimit import Limit, RateLimiter
from update_api.answers import retry_after
from update_api.parsing import source_subject

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AcmeReply:
    status: int
    body: dict[str, Any]
    headers: tuple[tuple[str, str], ...] = ()

    @classmethod
    def error(cls, status: int, code: str, detail: str = "", *headers: tuple[str, str]) -> AcmeReply:
        body = {"error": code, **({"detail": detail} if detail else {})}
        return cls(status, body, headers)


FORBIDDEN = AcmeReply.error(401, "forbidden")
REGISTER_REFUSED = AcmeReply.error(
    403,
    "registration_disabled",
    "credentials come from your provider (hbdns account acme-credentials NAME, or the provisioning API); "
    "put them into your client's acme-dns storage",
)


class AcmeService:
    """Authenticates, limits and applies one DNS-01 value change; knows nothing about Flask."""

    def __init__(self, settings: config.Settings, r: Redis, purger: Purger, limiter: RateLimiter) -> None:
        self.r = r
        self.purger = purger
        self.limiter = limiter
        self.value_ttl_ms = settings.acme_value_ttl * 1000
        self.update_limit = Limit(per_minute=settings.acme_update_rate, burst=settings.acme_update_burst)
        self.authfail_limit = Limit(per_minute=settings.acme_authfail_rate, burst=settings.acme_authfail_burst)
        self._log = RateLimitedLog(log, 30.0)

    def authenticate(self, user: str | None, key: str | None, source: str | None) -> Credential | AcmeReply:
        """The credential ``user``/``key`` prove, or the refusal (429 before the check when this
        source failed too often, else 401)."""
        bucket = keys.ratelimit("acme-authfail", source_subject(source))
        wait = self.limiter.check(bucket, self.authfail_limit, take=False)
        if wait:
            self._log.log(
                logging.WARNING, f"block:{source}", "acme: failed checks, refused before the check", source=source
            )
            return AcmeReply.error(429, "too_many_failures", "", retry_after(wait))
        cred = check(self.r, user or "", key or "") if user and key else None
        if cred is None:
            self.limiter.check(bucket, self.authfail_limit, take=True)
            self._log.log(logging.WARNING, f"fail:{source}", "acme: credential check failed", source=source)
            return FORBIDDEN
        return cred

    def _apply(self, cred: Credential, value: str, source: str | None) -> AcmeReply | None:
        """Set ``value`` (already checked) for ``cred``'s name; None when it was written."""
        wait = self.limiter.check(keys.ratelimit("acme-update", cred.id), self.update_limit)
        if wait:
            return AcmeReply.error(429, "too_many_updates", "", retry_after(wait))
        n = acme.set_value(
            self.r,
            cred_key=keys.acme_credential(cred.id),
            name=cred.name,
            account_id=cred.account_id,
            digest=cred.digest,
            value=value,
            ttl_ms=self.value_ttl_ms,
        )
        if n < 0:  # revoked, or the name left the account, since the check
            return FORBIDDEN
        self.purger.purge([acme.challenge_name(cred.name)])
        log.info("acme value set", extra={"credential": cred.id, "acme_name": cred.name, "values": n, "source": source})
        return None

    def update(self, user: str | None, key: str | None, source: str | None, body: Any) -> AcmeReply:
        """acme-dns ``POST /update``: ``{"subdomain": <the credential's>, "txt": <value>}``."""
        auth = self.authenticate(user, key, source)
        if isinstance(auth, AcmeReply):
            return auth
        if not isinstance(body, dict):
            return AcmeReply.error(400, "malformed_json_payload")
        if body.get("subdomain") != auth.id:
            return AcmeReply.error(401, "forbidden", "this credential sets only its own subdomain")
        try:
            value = acme.check_value(body.get("txt"))
        except acme.Refused as exc:
            return AcmeReply.error(400, "bad_txt", str(exc))
        refused = self._apply(auth, value, source)
        return refused or AcmeReply(200, {"txt": value})

    def _own(self, cred: Credential, body: Any) -> str | AcmeReply:
        """httpreq's value, when ``body`` names this credential's challenge name."""
        if not isinstance(body, dict) or not isinstance(body.get("fqdn"), str):
            return AcmeReply.error(400, "malformed_json_payload", 'expected {"fqdn": ..., "value": ...}')
        if acme.name_of(body["fqdn"]) != cred.name:
            return AcmeReply.error(403, "forbidden", f"this credential sets only {acme.challenge_name(cred.name)}")
        try:
            return acme.check_value(body.get("value"))
        except acme.Refused as exc:
            return AcmeReply.error(400, "bad_txt", str(exc))

    def _httpreq(self, user: str | None, key: str | None, source: str | None, body: Any) -> Any:
        """httpreq's (credential, value), or the refusal."""
        auth = self.authenticate(user, key, source)
        if isinstance(auth, AcmeReply):
            return auth
        value = self._own(auth, body)
        return value if isinstance(value, AcmeReply) else (auth, value)

    def present(self, user: str | None, key: str | None, source: str | None, body: Any) -> AcmeReply:
        """lego httpreq ``POST /present``."""
        checked = self._httpreq(user, key, source, body)
        if isinstance(checked, AcmeReply):
            return checked
        cred, value = checked
        refused = self._apply(cred, value, source)
        return refused or AcmeReply(200, {"fqdn": acme.challenge_name(cred.name) + ".", "value": value})

    def cleanup(self, user: str | None, key: str | None, source: str | None, body: Any) -> AcmeReply:
        """lego httpreq ``POST /cleanup``: the value goes now (it would expire anyway)."""
        checked = self._httpreq(user, key, source, body)
        if isinstance(checked, AcmeReply):
            return checked
        cred, value = checked
        if acme.remove_value(self.r, cred.name, value):
            self.purger.purge([acme.challenge_name(cred.name)])
        log.info("acme value removed", extra={"credential": cred.id, "acme_name": cred.name, "source": source})
        return AcmeReply(200, {"fqdn": acme.challenge_name(cred.name) + ".", "value": value})
