"""The remote-backend methods PowerDNS calls, answered from Redis; shared by the HTTP and unix transports.

:meth:`Backend.call` takes a method name and its parameters and returns the ``result`` value, or
raises :class:`BackendError` when it cannot answer (Redis unreachable, bad data): the transports
turn that into an HTTP 500 / a reply without ``result``, which pdns answers with SERVFAIL. Answering
``false`` instead would be cached as NXDOMAIN by pdns and by resolvers.

A lookup takes the zone part of its answer from :class:`~pdns_backend.zones.ZoneCache` (at most
``zone_max_age`` old) and the account part from Redis
(:class:`~pdns_backend.accounts.AccountReader`: one round trip per batch of names), so the
live/neutral decision is exact, per address family, at the moment an ``alive`` key expires. With
``cache_entries`` the transports' :meth:`Backend.lookup_bodies` answers from an in-process cache of
replies that Redis keeps true (:mod:`pdns_backend.cached`): no round trip for an answer Redis has
not changed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import redis

from hbdns import keys, zone_serial
from hbdns.logs import RateLimitedLog
from hbdns.plans import Plan
from pdns_backend import answers, implied
from pdns_backend.accounts import AccountReader, account_keys
from pdns_backend.answer_cache import AnswerCache
from pdns_backend.answers import result_json
from pdns_backend.cached import CachedLookups
from pdns_backend.health import Health
from pdns_backend.metrics import BackendMetrics, result_kind
from pdns_backend.routes import Router
from pdns_backend.tracking import Tracker
from pdns_backend.zones import ZoneCache, ZoneEntry, find_apex, read_ents, read_zones, static_ents, with_serial

log = logging.getLogger(__name__)

Params = Mapping[str, Any]


ACCOUNT_LEN = len(answers.ACCOUNT_FIELDS)


class Read(NamedTuple):
    """What one lookup's answer was made from: enough to make it again with less liveness, and to
    tell when it stops being true (:mod:`pdns_backend.cached`)."""

    q: str  # normalised qname
    qtype: str
    apex: str
    entry: ZoneEntry
    account: Sequence[str | None] | None  # ACCOUNT_FIELDS values, None: no account at q
    live: int  # live families: answers.LIVE4 | answers.LIVE6
    account_id: int  # -1: no account
    ttls: tuple[int, ...]  # per liveness bit (IPv4, IPv6), ms it stays live (-1: not live, no expiry)


def _read(q: str, qtype: str, apex: str, entry: ZoneEntry, raw: Sequence[Any] | None) -> Read:
    """A :class:`Read` from the lookup script's reply for ``q`` (hbdns/lua/lookup.lua)."""
    if not raw:
        return Read(q, qtype, apex, entry, None, 0, -1, ())
    n = ACCOUNT_LEN
    return Read(q, qtype, apex, entry, raw[:n], int(raw[n]), int(raw[n + 1]), tuple(int(t) for t in raw[n + 2 :]))


class BackendError(Exception):
    """The backend cannot answer right now; pdns must SERVFAIL, never cache a negative answer."""


class Backend:
    """The remote-backend methods over one Redis client; thread-safe (lookups use a connection per
    thread, everything else redis-py's pool). On Redis Cluster ``r`` is a ``RedisCluster`` and
    ``router`` makes each thread's router for the lookups' raw calls (:mod:`pdns_backend.routes`)."""

    def __init__(
        self,
        r: redis.Redis,
        plans: Mapping[str, Plan],
        *,
        zone_max_age: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        cache_entries: int = 0,
        metrics: BackendMetrics | None = None,
        router: Callable[[], Router] | None = None,
    ) -> None:
        self.r = r
        self.plans = dict(plans)
        self.metrics = metrics if metrics is not None else BackendMetrics()
        self.health = Health(on_failure=self.metrics.redis_errors.inc)
        self.metrics.watch_redis(lambda: self.health.down_since is not None)
        self._errors = RateLimitedLog(log, 60.0)
        # the answer cache (0: none): its entries are dropped by Redis' client tracking
        self.cache: AnswerCache | None = None
        self.tracker: Tracker | None = None
        self.cached: CachedLookups | None = None
        if cache_entries > 0:
            self.cache = AnswerCache(cache_entries)
            self.tracker = Tracker(self.cache.invalidate)
        self.accounts = AccountReader(r, tracker=self.tracker, router=router)
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
        if self.cache is not None and self.tracker is not None:
            self.cached = CachedLookups(self, self.cache, self.tracker)
            self.metrics.watch_cache(lambda: self.stats()["answer_cache"])

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

    def stats(self) -> dict[str, Any]:
        """The answer cache's counters (:class:`~pdns_backend.answer_cache.CacheStats`), its size and
        how many invalidation connections it has opened; None without a cache (``GET /stats``)."""
        if self.cache is None or self.tracker is None:
            return {"answer_cache": None}
        return {
            "answer_cache": {
                **self.cache.stats.as_dict(),
                "entries": len(self.cache),
                "max_entries": self.cache.max_entries,
                "tracking_connects": self.tracker.connects,
            }
        }

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
        try:
            zones = self.zones.get()
        except Exception as exc:
            self.count(["error"] * len(queries), started)
            return [self.zone_failure(exc)] * len(queries)
        looked_up = self.lookup_reads(queries, zones)
        self.count([k for _result, _read, k in looked_up], started)
        return [result for result, _read, _kind in looked_up]

    def count(self, kinds: Sequence[str], started: float) -> None:
        """The metrics of one lookup call: each answer's result, and the time since ``started``."""
        m = self.metrics
        for kind in kinds:
            m.lookups[kind].inc()
        m.lookup_seconds.observe(time.perf_counter() - started)

    def lookup_bodies(self, queries: Sequence[tuple[str, str]]) -> list[bytes | BackendError]:
        """Replies ready to send (``{"result": ...}``, no newline) for several lookups: from the
        answer cache when there is one (:mod:`pdns_backend.cached`), else as :meth:`lookup_batch`."""
        try:
            if self.cached is not None:
                return self.cached.bodies(queries)
            return [r if isinstance(r, BackendError) else result_json(r).encode() for r in self.lookup_batch(queries)]
        except Exception as exc:
            self._errors.log(logging.ERROR, f"lookup:{type(exc).__name__}", "backend error", error=repr(exc))
            return [BackendError("internal error in lookup")] * len(queries)

    def zone_failure(self, exc: Exception) -> BackendError:
        if isinstance(exc, redis.RedisError):
            self.health.failed(exc)
            return BackendError(f"redis: {type(exc).__name__}")
        self._errors.log(logging.ERROR, f"zones:{type(exc).__name__}", "zone load failed", error=repr(exc))
        return BackendError("internal error loading zones")

    def lookup_reads(
        self, queries: Sequence[tuple[str, str]], zones: Mapping[str, ZoneEntry]
    ) -> list[tuple[Any, Read | None, str]]:
        """(result or BackendError, what it was read from, its kind for the metrics) per query; the
        :class:`Read` is None for an answer the cache must not keep (a failure, an ACME challenge,
        an ENT confirmed in Redis, a name in no zone)."""
        plans: list[tuple[str, str, str, ZoneEntry] | None] = []
        ask: list[str] = []
        for qname, qtype in queries:
            q = answers.normalise(qname)
            apex = find_apex(q, zones) if q and len(q) <= 253 else None
            if apex is None:
                plans.append(None)
                continue
            entry = zones[apex]
            plans.append((q, qtype, apex, entry))
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
        out: list[tuple[Any, Read | None, str]] = []
        for plan in plans:
            if plan is None:
                out.append((False, None, "empty"))
                continue
            q, qtype, apex, entry = plan
            if entry.view is None:
                out.append((BackendError("zone data unusable"), None, "error"))
                continue
            if failure is not None and q in ask:
                out.append((failure, None, "error"))
                continue
            try:
                read = _read(q, qtype, apex, entry, fetched.get(q))
                confirmed: list[str] = []  # ENT names confirmed in Redis: such an answer is not cached
                records = self.records(read, read.live, challenges.get(q), confirmed)
                keep = not confirmed and not implied.is_challenge(q)
                out.append((records or False, read if keep else None, result_kind(read.account, read.live, records)))
            except Exception as exc:
                self._errors.log(logging.ERROR, f"lookup:{type(exc).__name__}", "backend error", error=repr(exc))
                out.append((BackendError("internal error in lookup"), None, "error"))
        return out

    def records(
        self, read: Read, live: int, challenge: list[str] | None = None, confirmed: list[str] | None = None
    ) -> list[answers.Record]:
        """The records of one lookup from what it read, with ``live`` as its liveness (the answer
        cache asks again with less of it once an alive key's time is up); names whose ENT row had
        to be confirmed in Redis are added to ``confirmed``."""
        check = self._still_ent(read.entry)

        def still_ent(name: str) -> bool:
            if confirmed is not None:
                confirmed.append(name)
            return check(name)

        return implied.lookup_rows(read.q, read.qtype, read.entry, read.account, live, self.plans, challenge, still_ent)

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
        pipe.exists(keys.zone(apex))
        member, exists = pipe.execute()
        if not member or not exists:
            self.health.ok()
            return False
        serial = zone_serial.read(self.r, apex)
        self.health.ok()
        return answers.domain_info(apex, serial)

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
        zone = answers.parse_zone(apex, with_serial(zraw, zone_serial.read(self.r, apex))) if member else None
        self.health.ok()
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
