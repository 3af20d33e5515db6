"""One dyndns2 update: authenticate, limit, apply. Knows nothing about Flask or HTTP.

Every accepted update, ``nochg`` included, goes through :meth:`hbdns.liveness.Liveness.beat`, the
same atomic script as a heartbeat: it refreshes liveness with the plan's expiry, changes addresses,
records events and bumps the zone serial; changed names are handed to the :class:`Purger`.

Decisions worth knowing:

- No user agent is required: routers send odd ones or none. ``HBDNS_UPDATE_BLOCKED_AGENTS`` lists
  substrings to refuse with ``badagent`` (for a broken client that floods).
- ``nohost`` is answered for names of other accounts as well (no ``!yours``): no name oracle.
- The password hash runs whether or not the account exists, so timing tells nothing; failed logins
  are limited per (source, account), per source and per account before it runs, and counted only
  when it failed (:mod:`update_api.ratelimit`).
- A refused update (``badip``, ``nohost``, ``notfqdn``, ``numhost``, ``abuse``) writes nothing, rate
  limits included: the per-account update limit is taken and the source remembered as known only
  right before the update is applied.
- Non-public addresses (:meth:`~update_api.parsing.Addresses.non_public`) need a zone that allows
  them; the zone is read only then.
"""

from __future__ import annotations

import logging

from redis import Redis

from hbdns import config as hbconfig
from hbdns import keys
from hbdns.liveness import BeatRequest
from hbdns.logs import RateLimitedLog
from hbdns.model import Account
from hbdns.passwords import verify_password
from hbdns.purge import Purger
from hbdns.store import Store
from update_api.answers import CHALLENGE, Reply, retry_after
from update_api.parsing import (
    MAX_PASSWORD,
    MAX_USERNAME,
    YES,
    Addresses,
    BadIP,
    UpdateRequest,
    hostname_code,
    parse_addresses,
    parse_hostnames,
    source_subject,
)
from update_api.ratelimit import FailedLogins, Limit, LoginLimits, LoginSubject, RateLimiter

log = logging.getLogger(__name__)


class UpdateService:
    """Authenticates, limits and applies one dyndns2 update; knows nothing about Flask."""

    def __init__(self, settings: hbconfig.Settings, r: Redis, purger: Purger) -> None:
        self.settings = settings
        self.store = Store(r, settings)
        self.purger = purger
        self.limiter = RateLimiter(r)
        self.account_limit = Limit(per_minute=settings.update_account_rate, burst=settings.update_account_burst)
        self.logins = FailedLogins(
            self.limiter,
            LoginLimits(
                pair=Limit(per_minute=settings.update_authfail_rate, burst=settings.update_authfail_burst),
                source=Limit(
                    per_minute=settings.update_authfail_source_rate, burst=settings.update_authfail_source_burst
                ),
                account=Limit(
                    per_minute=settings.update_authfail_account_rate, burst=settings.update_authfail_account_burst
                ),
                known_ttl_s=settings.update_known_source_ttl,
            ),
        )
        self.blocked_agents = tuple(a.lower() for a in settings.update_blocked_agents)
        self._auth_log = RateLimitedLog(log, 30.0)

    def agent_blocked(self, user_agent: str) -> bool:
        ua = user_agent.lower()
        return any(b in ua for b in self.blocked_agents)

    def authenticate(self, req: UpdateRequest) -> tuple[Account, LoginSubject] | Reply:
        """The account and who logged in, or the reply refusing the request (``badauth`` or
        ``abuse``). A limited caller is refused before the slow hash runs."""
        if req.username is None:
            return Reply.code("badauth", CHALLENGE)
        username = req.username.strip()
        plausible = len(username) <= MAX_USERNAME and len(req.password) <= MAX_PASSWORD
        account_id = self.store.account_id_for(username) if plausible else None
        who = LoginSubject.of(source_subject(req.source), account_id, username[:MAX_USERNAME])
        refusal = self.logins.refused(who)
        if refusal is not None:
            self._auth_log.log(
                logging.WARNING,
                f"block:{refusal.scope}:{who.source}",
                "failed logins: refused before the password check",
                source=req.source,
                limit=refusal.scope,
                account=who.account,
            )
            return Reply.code("abuse", retry_after(refusal.wait))
        account = self.store.get_account(account_id) if account_id is not None else None
        # the slow hash runs whether or not the account exists, so timing tells nothing
        ok = verify_password(req.password[:MAX_PASSWORD], account.pw_hash or None if account else None)
        if not ok or account is None:
            self.logins.failed(who)
            self._auth_log.log(logging.WARNING, f"fail:{req.source}", "update login failed", source=req.source)
            return Reply.code("badauth", CHALLENGE)
        return account, who

    def zone_allows_private(self, apex: str) -> bool:
        zone = self.store.get_zone(apex)
        return bool(zone and zone.allow_private)

    def handle(self, req: UpdateRequest) -> Reply:
        if self.agent_blocked(req.user_agent):
            return Reply.code("badagent")
        auth = self.authenticate(req)
        if isinstance(auth, Reply):
            return auth
        account, who = auth
        hostnames = parse_hostnames(req.params.get("hostname"), account.fqdn)
        if hostnames is None:
            return Reply.code("numhost")
        codes = [hostname_code(h, account) for h in hostnames]
        if all(codes):
            log.info("update for unknown names", extra={"account": account.id, "codes": codes})
            return Reply.hosts(c for c in codes if c)
        offline = req.params.get("offline", "").strip().lower() in YES
        addrs = Addresses()
        if not offline:
            try:
                addrs = parse_addresses(req.params, req.source, account.ipv6_interface_id)
            except BadIP as exc:
                log.info("update refused: bad address", extra={"account": account.id, "reason": str(exc)})
                return Reply.code("badip")
            reason = addrs.non_public()
            if reason and not self.zone_allows_private(account.zone):
                log.info("update refused: not a public address", extra={"account": account.id, "reason": reason})
                return Reply.code("badip")
        plan = self.store.plans.get(account.plan)
        if plan is None:
            log.error("account has an unknown plan", extra={"account": account.id, "plan": account.plan})
            return Reply.code("911")
        wait = self.limiter.check(keys.ratelimit("update", str(account.id)), self.account_limit)
        if wait:
            log.info("update rate-limited", extra={"account": account.id, "source": req.source})
            return Reply.code("abuse", retry_after(wait))
        self.logins.accepted(who)
        result = self.store.liveness.beat(
            BeatRequest(
                account_id=account.id,
                zone=account.zone,
                expiry_ms=plan.expiry_ms,
                ipv4=addrs.ipv4,
                ipv6=addrs.ipv6,
                offline=offline,
                source="update",
                fams=addrs.families(),
            )
        )
        if not result.accepted:  # the account was removed meanwhile
            return Reply.hosts(c or "nohost" for c in codes)
        if result.changed:
            self.purger.purge(result.names)
        shown = addrs.shown() or Addresses(ipv4=result.old_ipv4, ipv6=result.old_ipv6).shown()
        line = ("good" if result.changed else "nochg") + (f" {shown}" if shown else "")
        log.info(
            "update",
            extra={
                "account": account.id,
                "source": req.source,
                "ipv4": addrs.ipv4,
                "ipv6": addrs.ipv6,
                "offline": offline,
                "changed": result.changed,
                "agent": req.user_agent[:100],
            },
        )
        return Reply.hosts(c or line for c in codes)
