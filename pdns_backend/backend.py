"""The remote-backend methods PowerDNS calls, answered from Redis; shared by the HTTP and unix transports.

:meth:`Backend.call` takes a method name and its parameters and returns the ``result`` value, or
raises :class:`BackendError` when it cannot answer (Redis unreachable, bad data): the transports
turn that into an HTTP 500 / a reply without ``result``, which pdns answers with SERVFAIL. Answering
``false`` instead would be cached as NXDOMAIN by pdns and by resolvers.

A lookup takes the zone part of its answer from :class:`~pdns_backend.zones.ZoneCache` (at most
``zone_max_age`` old) and the account part from Redis, every time
(:class:`~pdns_backend.accounts.AccountReader`: one round trip per batch of names), so the
live/neutral decision is exact, per address family, at the moment an ``alive`` key expires.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import redis

from hbdns import keys
from hbdns.logs import RateLimitedLog
from hbdns.plans import Plan
from pdns_backend import answers, implied
from pdns_backend.accounts import AccountReader, account_keys
from pdns_backend.health import Health
from pdns_backend.metrics import BackendMetrics
from pdns_backend.zones import ZoneCache, ZoneEntry, find_apex, read_ents, read_zones, static_ents

log = logging.getLogger(__name__)

Params = Mapping[str, Any]


class BackendError(Exception):
    """The backend cannot answer right now; pdns must SERVFAIL, never cache a negative answer."""


class Backend:
    """The remote-backend methods over one Redis client; thread-safe (lookups use a connection per
    thread, everything else redis-py's pool)."""

    def __init__(
        self,
        r: redis.Redis,
        plans: Mapping[str, Plan],
        *,
        zone_max_age: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        metrics: BackendMetrics | None = None,
    ) -> None:
        self.r = r
        self.plans = dict(plans)
        self.metrics = metrics if metrics is not None else BackendMetrics()
        self.health = Health(on_failure=self.metrics.redis_errors.inc)
        self.metrics.watch_redis(lambda: self.health.down_since is not None)
        self._errors = RateLimitedLog(log, 60.0)
        self.accounts = AccountReader(r)
        self.zones = ZoneCache(self._load_zones, zone_max_age, clock, load_ents=lambda a: read_ents(r, a))
        self.methods: dict[str, Callable[[Params], Any]] = {
            "initialize": lambda _p: True,
            "lookup": self.lookup_params,
            "getAllDomains": lambda _p: self.all_domains(),
            "getDomainInfo": lambda p: self.domain_info(str(p.get("name", ""))),
            "getAllDomainMetadata": lambda _p: {},
            "getDomainMetadata": lambda _p: [],
            "list": lambda p: self.list_zone(str(p.get("zonename", ""))),
        }

    # --- dispatch ---------------------------------------------------------------------------------

    def call(self, method: str, params: Params) -> Any:
        """The ``result`` of one remote-backend call; ``False`` for methods this backend lacks."""
        fn = self.methods.get(method)
        if fn is None:
            return False
        counted = method != "lookup"  # lookups are counted by result in lookup_batch
        try:
            result = fn(params)
        except BackendError:
            if counted:
                self.metrics.calls.labels(method=method, result="error").inc()
            raise
        except redis.RedisError as exc:
            self.health.failed(exc)
            if counted:
                self.metrics.calls.labels(method=method, result="error").inc()
            raise BackendError(f"redis: {type(exc).__name__}") from exc
        except Exception as exc:
            self._errors.log(
                logging.ERROR, f"{method}:{type(exc).__name__}", "backend error", method=method, error=repr(exc)
            )
            if counted:
                self.metrics.calls.labels(method=method, result="error").inc()
            raise BackendError(f"internal error in {method}") from exc
        if counted:
            self.metrics.calls.labels(method=method, result="ok").inc()
        return result

    def ping(self) -> bool:
        """True when Redis answers (the ``/ping`` health check)."""
        try:
            self.r.ping()
        except redis.RedisError as exc:
            self.health.failed(exc)
            return False
        self.health.ok()
        return True

    def _load_zones(self) -> list[Any]:
        flat = read_zones(self.r)
        self.health.ok()
        return flat

    # --- methods ----------------------------------------------------------------------------------

    def lookup_params(self, p: Params) -> Any:
        return self.lookup(str(p.get("qname", "")), str(p.get("qtype", "ANY")))

    def lookup(self, qname: str, qtype: str) -> list[answers.Record] | bool:
        """Records of ``qname`` (any case, trailing dot or not) of ``qtype`` (or ANY); False if none."""
        result = self.lookup_batch([(qname, qtype)])[0]
        if isinstance(result, BaseException):
            raise result
        return result

    def lookup_batch(self, queries: Sequence[tuple[str, str]]) -> list[Any]:
        """Answers for several lookups with at most one Redis round trip for all of them.

        Each item is a result (records or False) or a :class:`BackendError` for that lookup alone.
        The unix transport batches the calls that arrive together from pdns' distributor threads.
        """
        started = time.perf_counter()
        out, results = self._lookup_batch(queries)
        m = self.metrics
        for result in results:
            m.lookups[result].inc()
        m.lookup_seconds.observe(time.perf_counter() - started)
        return out

    def _lookup_batch(self, queries: Sequence[tuple[str, str]]) -> tuple[list[Any], list[str]]:
        """:meth:`lookup_batch`'s answers, and each one's result for the metrics."""
        try:
            zones = self.zones.get()
        except redis.RedisError as exc:
            self.health.failed(exc)
            return [BackendError(f"redis: {type(exc).__name__}")] * len(queries), ["error"] * len(queries)
        except Exception as exc:
            self._errors.log(logging.ERROR, f"zones:{type(exc).__name__}", "zone load failed", error=repr(exc))
            return [BackendError("internal error loading zones")] * len(queries), ["error"] * len(queries)
        plans: list[tuple[str, str, ZoneEntry] | None] = []
        ask: list[str] = []
        for qname, qtype in queries:
            q = answers.normalise(qname)
            apex = find_apex(q, zones) if q and len(q) <= 253 else None
            if apex is None:
                plans.append(None)
                continue
            entry = zones[apex]
            plans.append((q, qtype, entry))
            if entry.view is not None and (q != apex or entry.apex_account):
                ask.append(q)
        fetched: dict[str, Any] = {}
        challenges: dict[str, list[str]] = {}
        failure: BackendError | None = None
        if ask:
            try:
                fetched = dict(zip(ask, self.accounts.fetch(ask), strict=True))
                challenges = implied.fetch_challenges(self.r, ask)  # ACME values: _acme-challenge.* only
                self.health.ok()
            except redis.RedisError as exc:
                self.health.failed(exc)
                failure = BackendError(f"redis: {type(exc).__name__}")
        out: list[Any] = []
        results: list[str] = []
        for plan in plans:
            if plan is None:
                out.append(False)
                results.append("empty")
                continue
            q, qtype, entry = plan
            if entry.view is None:
                out.append(BackendError("zone data unusable"))
                results.append("error")
                continue
            if failure is not None and q in ask:
                out.append(failure)
                results.append("error")
                continue
            try:
                raw = fetched.get(q)
                account, live = (raw[:-1], int(raw[-1])) if raw else (None, 0)
                records = implied.lookup_rows(
                    q, qtype, entry, account, live, self.plans, challenges.get(q), self._still_ent(entry)
                )
                out.append(records or False)
                results.append(("zone" if account is None else "live" if live else "neutral") if records else "empty")
            except Exception as exc:
                self._errors.log(logging.ERROR, f"lookup:{type(exc).__name__}", "backend error", error=repr(exc))
                out.append(BackendError("internal error in lookup"))
                results.append("error")
        return out, results

    def _still_ent(self, entry: ZoneEntry) -> Callable[[str], bool]:
        """Whether a name of the cached ENT index still has a name below it, read now (one HGET,
        only for names that answer nothing else). Names above static records come with the zone's
        own hash; a failed read keeps the cached answer."""
        view = entry.view
        apex = view.apex if view is not None else ""

        def check(name: str) -> bool:
            if view is not None and name in static_ents(view):
                return True
            try:
                return int(self.r.hget(keys.zone_ents(apex), name) or 0) > 0
            except (redis.RedisError, ValueError):
                return True

        return check

    def all_domains(self) -> list[dict[str, Any]]:
        """Every zone, read now; pdns' zone cache serves exactly these (errors raise: [] would empty it)."""
        zones = self.zones.store(self._load_zones())
        return [answers.domain_info(apex, e.serial) for apex, e in sorted(zones.items())]

    def domain_info(self, name: str) -> dict[str, Any] | bool:
        """The zone whose apex is ``name``; False for any other name (a positive answer would add a zone)."""
        apex = answers.normalise(name)
        if not apex:
            return False
        pipe = self.r.pipeline(transaction=False)
        pipe.sismember(keys.zones(), apex)
        pipe.hget(keys.zone(apex), "serial")
        member, serial = pipe.execute()
        self.health.ok()
        if not member or serial is None:
            return False
        return answers.domain_info(apex, int(serial))

    def list_zone(self, zonename: str) -> list[answers.Record] | bool:
        """Every record of a zone (AXFR, ``pdnsutil list-zone``), read now: two round trips."""
        apex = answers.normalise(zonename)
        if not apex:
            return False
        pipe = self.r.pipeline(transaction=False)
        pipe.sismember(keys.zones(), apex)
        pipe.hmget(keys.zone(apex), list(answers.ZONE_FIELDS))
        pipe.smembers(keys.zone_accounts(apex))
        member, zraw, members = pipe.execute()
        self.health.ok()
        zone = answers.parse_zone(apex, zraw) if member else None
        if zone is None:
            return False
        ids = sorted(int(i) for i in members)
        pipe = self.r.pipeline(transaction=False)
        for account_id in ids:
            pipe.hmget(keys.account(account_id), [*answers.ACCOUNT_FIELDS, "aliases", "wildcard"])
            pipe.mget(account_keys(account_id)[1:])
        raw = pipe.execute()
        out = [*zone.apex_records, *zone.all_static()]
        for n in range(len(ids)):
            fields, up = raw[2 * n], raw[2 * n + 1]
            live = answers.live_mask(up[0] is not None or up[2] is not None, up[1] is not None or up[2] is not None)
            fqdn, aliases, wildcard = fields[1], fields[-2], fields[-1]
            if fqdn is None:
                continue
            for name in implied.account_names(fqdn, aliases, wildcard):
                out.extend(answers.account_records(name, zone, fields[:-2], live, self.plans))
        return out + implied.listing_ents(zone, out)
