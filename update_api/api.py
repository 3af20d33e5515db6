"""The dyndns2 update API: stock clients (ddclient, inadyn, routers) update an account over HTTP.

This is the seed's full account update over TCP ("SetIP"); for expiry plans it is also what keeps an
account alive. The protocol is Dyn's (``/nic/update``, ``/v3/update``) with deSEC's status codes,
answered as text/plain lines the clients parse (see ``docs/update-clients.md``).

Every accepted update, ``nochg`` included, goes through :meth:`hbdns.liveness.Liveness.beat`, the
same atomic script as a heartbeat: it refreshes liveness with the plan's expiry, changes addresses,
records events and bumps the zone serial; changed names are handed to the :class:`Purger`.

Decisions worth knowing:

- An update that names only one address family (``myip=<v4>``, ``myipv6=...``, ``preserve``) leaves
  the other alone; the connection's address is used only when no address is named at all, and never
  when it is loopback (an untrusted local proxy would otherwise publish 127.0.0.1 for everyone).
- A malformed address is refused (``badip``, HE.net's code) instead of Dyn's "fall back to the source
  address": a typo must not publish a wrong address for a backup-MX customer.
- No user agent is required: routers send odd ones or none. ``HBDNS_UPDATE_BLOCKED_AGENTS`` lists
  substrings to refuse with ``badagent`` (for a broken client that floods); other methods than
  GET/POST get ``badagent`` too, as in Dyn's specification.
- ``nohost`` is answered for names of other accounts as well (no ``!yours``): no name oracle.
- Rate limits are GCRA buckets in Redis (one script, Redis ``TIME``), so all processes agree. Failed
  logins count per source (IPv6 per /64) and are checked *before* the slow password hash.
"""

from __future__ import annotations

import ipaddress
import logging
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from flask import Flask, Response, request
from redis import Redis, RedisError
from werkzeug.exceptions import HTTPException

from hbdns import config as hbconfig
from hbdns import keys, validate
from hbdns.connection import connect
from hbdns.liveness import BeatRequest
from hbdns.logs import RateLimitedLog
from hbdns.model import Account
from hbdns.passwords import verify_password
from hbdns.purge import Purger
from hbdns.store import Store

log = logging.getLogger(__name__)

UPDATE_PATHS = ("/nic/update", "/update", "/v3/update")
CHECKIP_PATHS = ("/nic/checkip", "/checkip")
MAX_HOSTNAMES = 20  # Dyn: more is ``numhost``
MAX_QUERY = 8192  # bytes of query string (20 names of 253 characters fit)
MAX_BODY = 8192  # bytes of a POST body
MAX_USERNAME = 253
MAX_PASSWORD = 256

# HTTP status per answer code. deSEC's where it defines one (401 badauth, 404 nohost, 429 throttled);
# 5xx for server trouble (inadyn retries later on 5xx); 200 whenever one host line succeeded, so a
# multi-host answer stays parseable line by line.
STATUS = {
    "good": 200,
    "nochg": 200,
    "badauth": 401,
    "nohost": 404,
    "notfqdn": 400,
    "numhost": 400,
    "badip": 400,
    "badagent": 400,
    "abuse": 429,
    "dnserr": 503,
    "911": 500,
}
_OK = ("good", "nochg")
_YES = ("yes", "true", "on", "1")

CHECKIP_HTML = "<html><head><title>Current IP Check</title></head><body>Current IP Address: {ip}</body></html>"


class BadIP(ValueError):
    """An address parameter that cannot be used; ``str()`` says why (logged, not sent)."""


@dataclass(frozen=True)
class Reply:
    """What to send: one line per hostname (or one account/system-level code), status, headers."""

    lines: tuple[str, ...]
    status: int
    headers: tuple[tuple[str, str], ...] = ()

    @classmethod
    def code(cls, code: str, *headers: tuple[str, str]) -> Reply:
        return cls((code,), STATUS[code], headers)

    @classmethod
    def hosts(cls, lines: Iterable[str], *headers: tuple[str, str]) -> Reply:
        lines = tuple(lines)
        codes = [line.split(" ", 1)[0] for line in lines]
        status = 200 if any(c in _OK for c in codes) else STATUS[codes[0]]
        return cls(lines, status, headers)

    @property
    def body(self) -> str:
        return "\n".join(self.lines) + "\n"


@dataclass(frozen=True)
class UpdateRequest:
    """The parts of an HTTP request the protocol looks at (secrets only in ``password``)."""

    params: Mapping[str, str]
    username: str | None
    password: str = field(default="", repr=False)
    source: str | None = None  # the client's address after trusted-proxy handling
    user_agent: str = ""


@dataclass(frozen=True)
class Addresses:
    ipv4: str = ""  # "" = leave that family alone
    ipv6: str = ""

    def shown(self) -> str:
        return ",".join(a for a in (self.ipv4, self.ipv6) if a)


# --- parsing ----------------------------------------------------------------------------------------


def parse_hostnames(raw: str | None, default: str) -> list[str] | None:
    """The hostname list as sent (``None`` when more than 20). Absent, empty or ``YES`` (some clients
    send that) means the account's own name, as deSEC does."""
    items = [h.strip() for h in (raw or "").split(",") if h.strip()]
    if not items or (len(items) == 1 and items[0].upper() == "YES"):
        return [default]
    return items if len(items) <= MAX_HOSTNAMES else None


def hostname_code(raw: str, account: Account) -> str | None:
    """``None`` when ``raw`` is one of the account's names, else its per-host error code."""
    try:
        name = validate.hostname(raw)
    except validate.ValidationError:
        return "notfqdn"
    if "." not in name:
        return "notfqdn"
    return None if name in account.names else "nohost"


def _usable(addr: str) -> str:
    """Refuse what can never be a published host address (loopback stays allowed: operators park
    names on 127.0.0.x)."""
    ip = ipaddress.ip_address(addr)
    if ip.is_unspecified or ip.is_multicast or ip.is_link_local or getattr(ip, "scope_id", None):
        raise BadIP(f"{addr} is not a global host address")
    return addr


def parse_addresses(params: Mapping[str, str], source: str | None) -> Addresses:
    """Addresses to set from ``myip`` (one or a comma list of both families, either order),
    ``myipv4`` and ``myipv6``; ``preserve`` names a family without changing it. When no address is
    named at all, the connection's source address is used for its own family."""
    found: dict[int, str] = {}
    named = False

    def add(value: str, family: int | None) -> None:
        nonlocal named
        value = value.strip()
        if not value:
            return
        named = True
        if value.lower() == "preserve":
            return
        try:
            fam, addr = validate.ip_any(value)
        except validate.ValidationError:
            raise BadIP(f"{value[:60]!r} is not an IP address") from None
        if family is not None and fam != family:
            raise BadIP(f"{addr} is not an IPv{family} address")
        if found.get(fam, addr) != addr:
            raise BadIP(f"two different IPv{fam} addresses")
        found[fam] = _usable(addr)

    myip = params.get("myip", "")
    if myip.count(",") > 1:
        raise BadIP("myip has more than two addresses")
    for item in myip.split(","):
        add(item, None)
    add(params.get("myipv4", ""), 4)
    add(params.get("myipv6", ""), 6)
    if not named:
        if not source:
            raise BadIP("no address given and no usable source address")
        fam, addr = validate.ip_any(source)
        ip = ipaddress.ip_address(addr)
        if ip.is_loopback or ip.is_unspecified or ip.is_link_local or ip.is_multicast:
            raise BadIP(f"no address given and the source {addr} is not public (untrusted proxy?)")
        found[fam] = addr
    return Addresses(found.get(4, ""), found.get(6, ""))


def client_address(
    remote_addr: str | None,
    headers: Mapping[str, str],
    trusted: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...],
) -> str | None:
    """The client's address: the peer, or, when the peer is a trusted proxy, the right-most address in
    ``X-Forwarded-For`` that is not itself a trusted proxy (else ``X-Real-IP``)."""
    try:
        _, peer = validate.ip_any(remote_addr or "")
    except validate.ValidationError:
        return None

    def is_trusted(addr: str) -> bool:
        ip = ipaddress.ip_address(addr)
        return any(ip in net for net in trusted)

    if not trusted or not is_trusted(peer):
        return peer
    xff = headers.get("X-Forwarded-For", "")
    hops: list[str] = []
    for part in xff.split(","):
        try:
            hops.append(validate.ip_any(part)[1])
        except validate.ValidationError:
            hops = []  # a garbled chain is not believed at all
            break
    for hop in reversed(hops):
        if not is_trusted(hop):
            return hop
    if hops:
        return hops[0]
    try:
        return validate.ip_any(headers.get("X-Real-IP", ""))[1]
    except validate.ValidationError:
        return peer


def source_subject(addr: str | None) -> str:
    """Rate-limit subject for a source: the IPv4 address, or the IPv6 /64 (one customer's LAN)."""
    if not addr:
        return "unknown"
    ip = ipaddress.ip_address(addr)
    if ip.version == 6:
        return str(ipaddress.ip_network(f"{addr}/64", strict=False))
    return addr


# --- rate limits -------------------------------------------------------------------------------------

# GCRA on one key holding the "theoretical arrival time" (ms, Redis clock).
# KEYS: bucket ; ARGV: interval_ms burst take(1|0) -> 0 when allowed, else ms until the next one is.
_GCRA = r"""
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local interval = tonumber(ARGV[1])
local tolerance = interval * (tonumber(ARGV[2]) - 1)
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local wait = tat - now - tolerance
if wait > 0 then return math.floor(wait) end
if ARGV[3] == '1' then
  local new = math.floor(tat + interval)
  redis.call('SET', KEYS[1], string.format('%d', new), 'PX', math.max(new - now, 1))
end
return 0
"""


@dataclass(frozen=True)
class Limit:
    """``burst`` events at once, then ``per_minute`` sustained."""

    per_minute: float
    burst: int

    @property
    def interval_ms(self) -> int:
        return max(1, int(60_000 / self.per_minute))


class RateLimiter:
    """Shared buckets in Redis, so every update API process enforces one limit."""

    def __init__(self, r: Redis) -> None:
        self._script = r.register_script(_GCRA)

    def check(self, key: str, limit: Limit, *, take: bool = True) -> float:
        """0 when allowed (and counted when ``take``), else seconds until the next event is allowed."""
        wait = int(self._script(keys=[key], args=[limit.interval_ms, limit.burst, "1" if take else "0"]))
        return wait / 1000.0


def _retry_after(seconds: float) -> tuple[str, str]:
    return ("Retry-After", str(max(1, math.ceil(seconds))))


# --- the protocol ------------------------------------------------------------------------------------


class UpdateService:
    """Authenticates, limits and applies one dyndns2 update; knows nothing about Flask."""

    def __init__(self, settings: hbconfig.Settings, r: Redis, purger: Purger) -> None:
        self.settings = settings
        self.store = Store(r, settings)
        self.purger = purger
        self.limiter = RateLimiter(r)
        self.account_limit = Limit(settings.update_account_rate, settings.update_account_burst)
        self.authfail_limit = Limit(settings.update_authfail_rate, settings.update_authfail_burst)
        self.blocked_agents = tuple(a.lower() for a in settings.update_blocked_agents)
        self._auth_log = RateLimitedLog(log, 30.0)

    def agent_blocked(self, user_agent: str) -> bool:
        ua = user_agent.lower()
        return any(b in ua for b in self.blocked_agents)

    def authenticate(self, req: UpdateRequest) -> Account | Reply:
        """The account, or the reply refusing the request (``badauth`` or ``abuse``)."""
        if req.username is None:
            return Reply.code("badauth", ("WWW-Authenticate", 'Basic realm="hbdns"'))
        fail_key = keys.ratelimit("authfail", source_subject(req.source))
        wait = self.limiter.check(fail_key, self.authfail_limit, take=False)
        if wait:
            self._auth_log.log(
                logging.WARNING, f"block:{req.source}", "failed logins: source blocked", source=req.source
            )
            return Reply.code("abuse", _retry_after(wait))
        account: Account | None = None
        username = req.username.strip()
        if len(username) <= MAX_USERNAME and len(req.password) <= MAX_PASSWORD:
            account_id = self.store.account_id_for(username)
            account = self.store.get_account(account_id) if account_id is not None else None
        # the slow hash runs whether or not the account exists, so timing tells nothing
        ok = verify_password(req.password[:MAX_PASSWORD], account.pw_hash or None if account else None)
        if not ok or account is None:
            self.limiter.check(fail_key, self.authfail_limit, take=True)
            self._auth_log.log(logging.WARNING, f"fail:{req.source}", "update login failed", source=req.source)
            return Reply.code("badauth", ("WWW-Authenticate", 'Basic realm="hbdns"'))
        return account

    def handle(self, req: UpdateRequest) -> Reply:
        if self.agent_blocked(req.user_agent):
            return Reply.code("badagent")
        auth = self.authenticate(req)
        if isinstance(auth, Reply):
            return auth
        account = auth
        wait = self.limiter.check(keys.ratelimit("update", str(account.id)), self.account_limit)
        if wait:
            log.info("update rate-limited", extra={"account": account.id, "source": req.source})
            return Reply.code("abuse", _retry_after(wait))
        hostnames = parse_hostnames(req.params.get("hostname"), account.fqdn)
        if hostnames is None:
            return Reply.code("numhost")
        codes = [hostname_code(h, account) for h in hostnames]
        if all(codes):
            log.info("update for unknown names", extra={"account": account.id, "codes": codes})
            return Reply.hosts(c for c in codes if c)
        offline = req.params.get("offline", "").strip().lower() in _YES
        addrs = Addresses()
        if not offline:
            try:
                addrs = parse_addresses(req.params, req.source)
            except BadIP as exc:
                log.info("update refused: bad address", extra={"account": account.id, "reason": str(exc)})
                return Reply.code("badip")
        plan = self.store.plans.get(account.plan)
        if plan is None:
            log.error("account has an unknown plan", extra={"account": account.id, "plan": account.plan})
            return Reply.code("911")
        result = self.store.liveness.beat(
            BeatRequest(
                account.id,
                account.zone,
                plan.expiry_ms,
                ipv4=addrs.ipv4,
                ipv6=addrs.ipv6,
                offline=offline,
                source="update",
            )
        )
        if not result.accepted:  # the account was removed meanwhile
            return Reply.hosts(c or "nohost" for c in codes)
        if result.changed:
            self.purger.purge(result.names)
        shown = addrs.shown() or Addresses(result.old_ipv4, result.old_ipv6).shown()
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


# --- Flask -------------------------------------------------------------------------------------------


def _text(reply: Reply) -> Response:
    resp = Response(reply.body, status=reply.status, mimetype="text/plain")
    resp.headers["Cache-Control"] = "no-store"
    for name, value in reply.headers:
        resp.headers[name] = value
    return resp


def create_app(
    config: hbconfig.Settings | None = None,
    redis: Redis | None = None,
    purger: Purger | None = None,
) -> Flask:
    """The update API as a WSGI app. Services come from the arguments (tests) or from settings."""
    settings = config or hbconfig.load()
    r = redis if redis is not None else connect(settings.redis_url)
    service = UpdateService(settings, r, purger or Purger([], ""))
    trusted = tuple(ipaddress.ip_network(n, strict=False) for n in settings.update_trusted_proxies)

    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY
    app.extensions["hbdns_update"] = service

    def source() -> str | None:
        proxy_headers = {h: request.headers.get(h, "") for h in ("X-Forwarded-For", "X-Real-IP")}
        return client_address(request.remote_addr, proxy_headers, trusted)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Response:
        code = exc.code or 500
        if code == 405:
            return _text(Reply(("badagent",), 405, (("Allow", "GET, POST"),)))
        if code == 413:
            return _text(Reply((f"request too large (at most {MAX_BODY} bytes)",), 413))
        return _text(Reply((exc.name.lower(),), code))

    redis_log = RateLimitedLog(log, 10.0)

    @app.errorhandler(RedisError)
    def redis_error(exc: RedisError) -> Response:
        redis_log.log(logging.WARNING, "redis", "redis unavailable: answering dnserr", error=type(exc).__name__)
        return _text(Reply.code("dnserr", ("Retry-After", "60")))

    @app.errorhandler(Exception)
    def unexpected(exc: Exception) -> Response:
        log.error("update failed", extra={"error": type(exc).__name__}, exc_info=exc)
        return _text(Reply.code("911", ("Retry-After", "300")))

    def update() -> Response:
        if request.method not in ("GET", "POST"):  # Flask adds HEAD to GET routes: no silent updates
            return _text(Reply(("badagent",), 405, (("Allow", "GET, POST"),)))
        if len(request.query_string) > MAX_QUERY:
            return _text(Reply((f"request too large (query at most {MAX_QUERY} bytes)",), 414))
        params = {k: v for k, v in request.values.items()}
        auth = request.authorization
        if auth is not None and auth.type == "basic" and auth.username is not None:
            username: str | None = auth.username
            password = auth.password or ""
        elif "username" in params and "password" in params:
            username, password = params["username"], params["password"]
        else:
            username, password = None, ""
        req = UpdateRequest(
            params=params,
            username=username,
            password=password,
            source=source(),
            user_agent=request.headers.get("User-Agent", ""),
        )
        return _text(service.handle(req))

    def checkip() -> Response:
        resp = Response(CHECKIP_HTML.format(ip=source() or ""), mimetype="text/html")
        resp.headers["Cache-Control"] = "no-cache"
        return resp

    for path in UPDATE_PATHS:
        app.add_url_rule(path, f"update{path}", update, methods=["GET", "POST"])
    for path in CHECKIP_PATHS:
        app.add_url_rule(path, f"checkip{path}", checkip, methods=["GET"])
    return app
