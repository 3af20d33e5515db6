"""The remote-backend methods PowerDNS calls, answered from Redis; shared by the HTTP and unix transports.

:meth:`Backend.call` takes a method name and its parameters and returns the ``result`` value, or
raises :class:`BackendError` when it cannot answer (Redis unreachable, bad data): the transports
turn that into an HTTP 500 / a reply without ``result``, which pdns answers with SERVFAIL. Answering
``false`` instead would be cached as NXDOMAIN by pdns and by resolvers.

Zone configuration (SOA with its serial, NS, static records, neutral addresses) changes rarely and
pdns asks for the apex on every query, so it is held in-process for at most ``zone_max_age``
(1 s): :class:`ZoneCache`. The account part of an answer is never cached: every lookup of a name
below an apex is one Redis round trip (a Lua script: name index -> account fields + whether its
``alive`` key exists), so the live/neutral decision is exact at the moment the key expires.
That script derives the account's keys from the name index, so it needs a single Redis (or a
primary with replicas), not Redis Cluster, where keys must be passed in KEYS.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import hiredis
import redis

from hbdns import keys
from hbdns.logs import RateLimitedLog
from hbdns.plans import Plan
from hbdns.resp import BatchConnection, ConnectionLost, encode_command, raw_capable
from pdns_backend import answers

log = logging.getLogger(__name__)

Params = Mapping[str, Any]


class BackendError(Exception):
    """The backend cannot answer right now; pdns must SERVFAIL, never cache a negative answer."""


def _lua(s: str) -> str:
    return json.dumps(s)  # a JSON string literal is a valid Lua string literal


def account_script() -> str:
    """KEYS: names; ARGV: names -> per name nil | {ACCOUNT_FIELDS..., alive (0/1)}.

    One call for a whole batch of names: Redis' cost per script call (~10 us) is paid once per batch,
    not once per lookup (the same reason the beat script takes a batch)."""
    apre, asuf = keys.lua_parts(keys.account, 987654321987)
    lpre, lsuf = keys.lua_parts(keys.alive, 987654321987)
    afields = ", ".join(_lua(f) for f in answers.ACCOUNT_FIELDS)
    return f"""
local out = {{}}
for i, name in ipairs(ARGV) do
  local id = redis.call('HGET', KEYS[1], name)
  if id then
    local a = redis.call('HMGET', {apre} .. id .. {asuf}, {afields})
    a[#a + 1] = redis.call('EXISTS', {lpre} .. id .. {lsuf})
    out[i] = a
  else
    out[i] = false
  end
end
return out
"""


def zones_script() -> str:
    """KEYS: zones, names -> flat {apex, {ZONE_FIELDS...}, account at apex (0/1), ...} for every zone."""
    zpre, zsuf = keys.lua_parts(keys.zone, "\x01")
    zfields = ", ".join(_lua(f) for f in answers.ZONE_FIELDS)
    return f"""
local out = {{}}
for _, apex in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  out[#out + 1] = apex
  out[#out + 1] = redis.call('HMGET', {zpre} .. apex .. {zsuf}, {zfields})
  out[#out + 1] = redis.call('HEXISTS', KEYS[2], apex)
end
return out
"""


class LuaScript:
    """A read-only Lua script called by its SHA, loaded again after NOSCRIPT (Redis restarted or
    flushed its script cache). Read-only scripts keep working while Redis refuses writes at
    maxmemory (Redis checks OOM only when a script writes)."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = _sha(source)

    def load(self, r: redis.Redis) -> None:
        r.script_load(self.source)

    def run(self, r: redis.Redis, keys: list[str], args: Sequence[str] = ()) -> Any:
        try:
            return r.evalsha(self.sha, len(keys), *keys, *args)
        except redis.exceptions.NoScriptError:
            self.load(r)
            return r.evalsha(self.sha, len(keys), *keys, *args)


def _sha(source: str) -> str:
    return hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()


class Health:
    """Logs a Redis outage once when it starts and once when it ends, however many queries fail.

    ``ok()`` is called only right after a Redis reply arrived: calls that need no Redis (``initialize``
    on every pdns reconnect, metadata, answers from the zone cache) must not end an outage.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.down_since: float | None = None
        self.failures = 0
        self.incidents = 0

    def failed(self, exc: BaseException) -> None:
        with self._lock:
            self.failures += 1
            if self.down_since is not None:
                return
            self.down_since = time.monotonic()
            self.incidents += 1
        log.error(
            "redis unavailable: answering SERVFAIL until it is back",
            extra={"error": f"{type(exc).__name__}: {exc}"},
        )

    def ok(self) -> None:
        if self.down_since is None:  # the common case: no lock
            return
        with self._lock:
            if self.down_since is None:
                return
            down_for = time.monotonic() - self.down_since
            failed, self.failures, self.down_since = self.failures, 0, None
        log.warning("redis reachable again", extra={"down_seconds": round(down_for, 3), "failed_requests": failed})


class _ThreadConn(threading.local):
    """Each thread's own Redis connection for the lookup hot path (no pool lock per call)."""

    conn: Any = None  # a redis-py connection (clients without real sockets, e.g. fakeredis)
    raw: BatchConnection | None = None  # raw RESP on a real socket: the production path


@dataclass(frozen=True)
class ZoneEntry:
    view: answers.ZoneView | None  # None: the zone's hash could not be parsed (its names SERVFAIL)
    serial: int
    apex_account: bool  # an account owns the apex name itself: apex lookups must ask Redis too


class ZoneCache:
    """Every zone's parsed configuration, at most ``max_age`` seconds old.

    One Redis round trip reloads all zones; a zone whose hash did not change keeps its parsed view.
    The thread that finds the cache stale reloads it while the others wait (once per ``max_age``).
    """

    def __init__(
        self, load: Callable[[], list[Any]], max_age: float = 1.0, clock: Callable[[], float] = time.monotonic
    ):
        self._errors = RateLimitedLog(log, 60.0)
        self._load = load
        self.max_age = max_age
        self._clock = clock
        self._lock = threading.Lock()
        self._zones: dict[str, ZoneEntry] = {}
        self._raw: dict[str, tuple[str | None, ...]] = {}
        self._loaded = float("-inf")

    def get(self) -> dict[str, ZoneEntry]:
        if self._clock() - self._loaded < self.max_age:
            return self._zones
        with self._lock:
            if self._clock() - self._loaded >= self.max_age:
                self.store(self._load())
            return self._zones

    def store(self, flat: list[Any]) -> dict[str, ZoneEntry]:
        """Install a fresh reload (the zones script's flat reply); returns the new zone map."""
        now = self._clock()
        zones: dict[str, ZoneEntry] = {}
        raws: dict[str, tuple[str | None, ...]] = {}
        for i in range(0, len(flat), 3):
            apex, raw, apex_account = flat[i], tuple(flat[i + 1]), int(flat[i + 2]) == 1
            old = self._zones.get(apex)
            if old is not None and self._raw.get(apex) == raw:
                zones[apex], raws[apex] = old, raw
                continue
            try:
                view = answers.parse_zone(apex, raw)
            except Exception as exc:  # one bad zone must not take the others down
                self._errors.log(logging.ERROR, f"zone:{apex}", "zone data unusable", zone=apex, error=repr(exc))
                zones[apex], raws[apex] = ZoneEntry(None, 0, apex_account), raw
                continue
            if view is None:  # listed but its hash is gone (being removed)
                continue
            zones[apex], raws[apex] = ZoneEntry(view, view.serial, apex_account), raw
        self._zones, self._raw, self._loaded = zones, raws, now
        return zones


def find_apex(name: str, zones: Mapping[str, Any]) -> str | None:
    """The longest apex that ``name`` is in (or equals), else None."""
    while True:
        if name in zones:
            return name
        dot = name.find(".")
        if dot < 0:
            return None
        name = name[dot + 1 :]


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
    ) -> None:
        self.r = r
        self.plans = dict(plans)
        self.health = Health()
        self._errors = RateLimitedLog(log, 60.0)
        self._account = LuaScript(account_script())
        self._names_key = keys.names()
        self._local = _ThreadConn()
        self._raw = raw_capable(r)
        self._account_load = encode_command("SCRIPT", "LOAD", self._account.source)
        self._zones_script = LuaScript(zones_script())
        self.zones = ZoneCache(self._load_zones, zone_max_age, clock)
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
        try:
            return fn(params)
        except BackendError:
            raise
        except redis.RedisError as exc:
            self.health.failed(exc)
            raise BackendError(f"redis: {type(exc).__name__}") from exc
        except Exception as exc:
            self._errors.log(
                logging.ERROR, f"{method}:{type(exc).__name__}", "backend error", method=method, error=repr(exc)
            )
            raise BackendError(f"internal error in {method}") from exc

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
        flat = self._zones_script.run(self.r, [keys.zones(), keys.names()])
        self.health.ok()
        return list(flat)

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
        try:
            zones = self.zones.get()
        except redis.RedisError as exc:
            self.health.failed(exc)
            return [BackendError(f"redis: {type(exc).__name__}")] * len(queries)
        except Exception as exc:
            self._errors.log(logging.ERROR, f"zones:{type(exc).__name__}", "zone load failed", error=repr(exc))
            return [BackendError("internal error loading zones")] * len(queries)
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
        failure: BackendError | None = None
        if ask:
            try:
                fetched = dict(zip(ask, self._fetch_accounts(ask), strict=True))
                self.health.ok()
            except redis.RedisError as exc:
                self.health.failed(exc)
                failure = BackendError(f"redis: {type(exc).__name__}")
        out: list[Any] = []
        for plan in plans:
            if plan is None:
                out.append(False)
                continue
            q, qtype, entry = plan
            if entry.view is None:
                out.append(BackendError("zone data unusable"))
                continue
            if failure is not None and q in ask:
                out.append(failure)
                continue
            try:
                raw = fetched.get(q)
                account, live = (raw[:-1], int(raw[-1]) == 1) if raw else (None, False)
                records = answers.name_records(q, entry.view, account, live, self.plans)
                if qtype != "ANY":
                    records = answers.select(records, qtype.upper())
                out.append(records or False)
            except Exception as exc:
                self._errors.log(logging.ERROR, f"lookup:{type(exc).__name__}", "backend error", error=repr(exc))
                out.append(BackendError("internal error in lookup"))
        return out

    def _fetch_accounts(self, names: list[str]) -> list[Any]:
        """The account script for all names: one call, one round trip.

        This is the hot path, so it talks to a per-thread connection directly: raw RESP built here
        and parsed by hiredis (:mod:`hbdns.resp`), instead of ``Redis.execute_command`` (pool, retry
        and observability layers, packing and parsing in Python): measured ~45 -> ~30 us of client
        CPU per call. Failures behave as there: a dropped connection is retried once on a new one,
        NOSCRIPT (Redis restarted or flushed) reloads the script once.
        """
        if not self._raw:
            return self._fetch_accounts_redis_py(names)
        conn = self._local.raw
        if conn is None:
            conn = self._local.raw = BatchConnection(self.r)
        payload = encode_command("EVALSHA", self._account.sha, "1", self._names_key, *names)
        reconnected = reloaded = False
        while True:
            try:
                reply = conn.roundtrip(payload, 1)[0]
            except ConnectionLost:
                if reconnected:
                    raise
                reconnected = True
                continue
            if isinstance(reply, hiredis.ReplyError):
                if str(reply).startswith("NOSCRIPT") and not reloaded:
                    reloaded = True
                    conn.roundtrip(self._account_load, 1)
                    continue
                raise redis.ResponseError(str(reply))
            return list(reply)

    def _fetch_accounts_redis_py(self, names: list[str]) -> list[Any]:
        """:meth:`_fetch_accounts` through redis-py's connection (clients without a real socket)."""
        commands = [("EVALSHA", self._account.sha, 1, self._names_key, *names)]
        reconnected = reloaded = False
        while True:
            conn = self._local.conn
            if conn is None:
                pool = self.r.connection_pool
                conn = self._local.conn = pool.connection_class(**pool.connection_kwargs)
            try:
                conn.send_packed_command(conn.pack_commands(commands))
                return list(conn.read_response())
            except redis.exceptions.NoScriptError:
                conn.disconnect()  # unread replies may follow: start clean
                if reloaded:
                    raise
                reloaded = True
                self._account.load(self.r)
            except redis.ConnectionError:
                conn.disconnect()
                if reconnected:
                    raise
                reconnected = True
            except BaseException:
                conn.disconnect()
                raise

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
            pipe.hmget(keys.account(account_id), [*answers.ACCOUNT_FIELDS, "aliases"])
            pipe.exists(keys.alive(account_id))
        raw = pipe.execute()
        out = [*zone.apex_records, *zone.all_static()]
        for n in range(len(ids)):
            fields, live = raw[2 * n], int(raw[2 * n + 1]) == 1
            fqdn, aliases = fields[1], fields[-1]
            if fqdn is None:
                continue
            for name in (fqdn, *json.loads(aliases or "[]")):
                out.extend(answers.account_records(name, zone, fields[:-1], live, self.plans))
        return out
