"""The remote-backend methods PowerDNS calls, answered from Redis; shared by the HTTP and unix transports.

:meth:`Backend.call` takes a method name and its parameters and returns the ``result`` value, or
raises :class:`BackendError` when it cannot answer (Redis unreachable, bad data): the transports
turn that into an HTTP 500 / a reply without ``result``, which pdns answers with SERVFAIL. Answering
``false`` instead would be cached as NXDOMAIN by pdns and by resolvers.

A lookup is one Redis round trip: a Lua script finds the zone (longest apex suffix of the name),
reads the zone hash and, if the name belongs to an account, the account's fields and whether its
``alive`` key exists. The live/neutral decision is therefore exact at the moment the key expires.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import redis

from hbdns import keys
from hbdns.logs import RateLimitedLog
from hbdns.plans import Plan
from pdns_backend import answers

log = logging.getLogger(__name__)

Params = Mapping[str, Any]


class BackendError(Exception):
    """The backend cannot answer right now; pdns must SERVFAIL, never cache a negative answer."""


def _template(make: Callable[[Any], str], sentinel: Any) -> tuple[str, str]:
    """(prefix, suffix) of a key around its variable part, as spelled by :mod:`hbdns.keys`."""
    key = make(sentinel)
    prefix, found, suffix = key.partition(str(sentinel))
    if not found:
        raise RuntimeError(f"key template without its variable part: {key!r}")
    return prefix, suffix


def _lua(s: str) -> str:
    return json.dumps(s)  # a JSON string literal is a valid Lua string literal for key text


def lookup_script() -> str:
    """KEYS: zones, names; ARGV: qname -> {} | {apex, zone} | {apex, zone, account, alive}."""
    zpre, zsuf = _template(keys.zone, "\x01")
    apre, asuf = _template(keys.account, 987654321987)
    lpre, lsuf = _template(keys.alive, 987654321987)
    zfields = ", ".join(_lua(f) for f in answers.ZONE_FIELDS)
    afields = ", ".join(_lua(f) for f in answers.ACCOUNT_FIELDS)
    return f"""
local q = ARGV[1]
local name = q
local apex = nil
while true do
  if redis.call('SISMEMBER', KEYS[1], name) == 1 then apex = name break end
  local dot = string.find(name, '.', 1, true)
  if not dot then break end
  name = string.sub(name, dot + 1)
end
if not apex then return {{}} end
local z = redis.call('HMGET', {_lua(zpre)} .. apex .. {_lua(zsuf)}, {zfields})
local id = redis.call('HGET', KEYS[2], q)
if not id then return {{apex, z}} end
local a = redis.call('HMGET', {_lua(apre)} .. id .. {_lua(asuf)}, {afields})
return {{apex, z, a, redis.call('EXISTS', {_lua(lpre)} .. id .. {_lua(lsuf)})}}
"""


def domains_script() -> str:
    """KEYS: zones -> flat {apex, serial, ...} for every zone whose hash exists."""
    zpre, zsuf = _template(keys.zone, "\x01")
    return f"""
local out = {{}}
for _, apex in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local s = redis.call('HGET', {_lua(zpre)} .. apex .. {_lua(zsuf)}, 'serial')
  if s then out[#out + 1] = apex; out[#out + 1] = s end
end
return out
"""


class Health:
    """Logs a Redis outage once when it starts and once when it ends, however many queries fail.

    ``ok()`` is called only right after a Redis reply arrived: calls that need no Redis (``initialize``
    on every pdns reconnect, metadata) must not end an outage.
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


class Backend:
    """The remote-backend methods over one Redis client (thread-safe: redis-py pools connections)."""

    def __init__(self, r: redis.Redis, plans: Mapping[str, Plan]) -> None:
        self.r = r
        self.plans = dict(plans)
        self.zones = answers.ZoneMemo()
        self.health = Health()
        self._errors = RateLimitedLog(log, 60.0)
        self._lookup = r.register_script(lookup_script())
        self._domains = r.register_script(domains_script())
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
            result = fn(params)
        except redis.RedisError as exc:
            self.health.failed(exc)
            raise BackendError(f"redis: {type(exc).__name__}") from exc
        except Exception as exc:
            self._errors.log(
                logging.ERROR, f"{method}:{type(exc).__name__}", "backend error", method=method, error=repr(exc)
            )
            raise BackendError(f"internal error in {method}") from exc
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

    # --- methods ----------------------------------------------------------------------------------

    def lookup_params(self, p: Params) -> Any:
        return self.lookup(str(p.get("qname", "")), str(p.get("qtype", "ANY")))

    def lookup(self, qname: str, qtype: str) -> list[answers.Record] | bool:
        """Records of ``qname`` (any case, trailing dot or not) of ``qtype`` (or ANY); False if none."""
        q = answers.normalise(qname)
        if not q or len(q) > 253:
            return False
        res = self._lookup(keys=[keys.zones(), keys.names()], args=[q])
        self.health.ok()
        if not res:
            return False
        zone = self.zones.get(res[0], res[1])
        if zone is None:
            return False
        account = res[2] if len(res) > 2 else None
        live = len(res) > 3 and int(res[3]) == 1
        records = answers.select(answers.name_records(q, zone, account, live, self.plans), qtype.upper())
        return records or False

    def all_domains(self) -> list[dict[str, Any]]:
        """Every zone; pdns' zone cache serves exactly these (errors raise: an empty list would empty it)."""
        flat = self._domains(keys=[keys.zones()])
        self.health.ok()
        return [answers.domain_info(flat[i], int(flat[i + 1] or 0)) for i in range(0, len(flat), 2)]

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
        """Every record of a zone (AXFR, ``pdnsutil list-zone``): two round trips whatever its size."""
        apex = answers.normalise(zonename)
        if not apex:
            return False
        pipe = self.r.pipeline(transaction=False)
        pipe.sismember(keys.zones(), apex)
        pipe.hmget(keys.zone(apex), list(answers.ZONE_FIELDS))
        pipe.smembers(keys.zone_accounts(apex))
        member, zraw, members = pipe.execute()
        self.health.ok()
        zone = self.zones.get(apex, zraw) if member else None
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
