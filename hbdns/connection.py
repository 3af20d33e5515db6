"""Opening Redis: the one place that turns a Redis URL into a client.

Every service and the admin CLI call :func:`connect`; nothing else builds a Redis client from a
URL, so connection policy (timeouts, health checks, failover) has one owner. The URL forms:

- ``redis://``, ``rediss://`` (TLS), ``unix://``: one Redis server, parsed by redis-py itself.
- ``redis+sentinel://[user:pass@]s1:26379[,s2:26379...]/<master-name>[/<db>][?options]``
  (``rediss+sentinel://``: TLS everywhere): Redis Sentinel. The client asks the sentinels for the
  current primary on every (re)connect, and a READONLY reply (the primary it was talking to has
  been demoted) drops the connection so that the next one asks again. ``user:pass`` are the
  credentials of the Redis servers; the sentinels' own are options. Options (:data:`OPTIONS`):

  ==========================  ============================================================
  ``sentinel_username``       user name for the sentinels (ACL); default none
  ``sentinel_password``       password for the sentinels (their ``requirepass``); default none
  ``ssl``                     ``yes``: TLS to the Redis servers (default: no; yes for rediss+)
  ``sentinel_ssl``            TLS to the sentinels (default: as ``ssl``)
  ``ssl_ca_certs``            CA bundle that signs the servers' certificates
  ``ssl_certfile``            client certificate (``tls-auth-clients``)
  ``ssl_keyfile``             its key
  ``ssl_cert_reqs``           ``required`` (default), ``optional`` or ``none``
  ``ssl_check_hostname``      ``yes`` (default) / ``no``: check the certificate's name
  ``role``                    ``primary`` (default) or ``replica``: read from a replica Sentinel
                              knows (round robin; the primary when there is none)
  ``min_other_sentinels``     ignore a sentinel that sees fewer peers than this (default 0)
  ==========================  ============================================================

A third form (Redis Cluster) is meant to be one more entry of :data:`_PARSERS` and one more
branch in :func:`connect`. :func:`check` validates a URL without connecting (config loading
uses it); :func:`redact` is the URL as it may be logged.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, quote, unquote

import redis
from redis.backoff import NoBackoff
from redis.cluster import RedisCluster
from redis.retry import Retry
from redis.sentinel import Sentinel

SENTINEL_PORT = 26379
_YES = ("1", "yes", "true", "on")
_NO = ("0", "no", "false", "off")

OPTIONS = (
    "sentinel_username",
    "sentinel_password",
    "ssl",
    "sentinel_ssl",
    "ssl_ca_certs",
    "ssl_certfile",
    "ssl_keyfile",
    "ssl_cert_reqs",
    "ssl_check_hostname",
    "role",
    "min_other_sentinels",
)
_SSL_FILES = ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile")


class RedisUrlError(ValueError):
    """A Redis URL that cannot be used; the message never contains a password."""


@dataclass(frozen=True)
class SentinelUrl:
    """A parsed ``redis+sentinel://`` URL."""

    sentinels: tuple[tuple[str, int], ...]
    service: str  # the master name Sentinel monitors
    db: int = 0
    role: str = "primary"  # or "replica"
    username: str | None = None  # of the Redis servers
    password: str | None = None
    sentinel_username: str | None = None
    sentinel_password: str | None = None
    ssl: bool = False
    sentinel_ssl: bool = False
    ssl_options: tuple[tuple[str, Any], ...] = ()  # redis-py ssl_* keyword arguments
    min_other_sentinels: int = 0


def _flag(name: str, raw: str) -> bool:
    low = raw.strip().lower()
    if low in _YES:
        return True
    if low in _NO:
        return False
    raise RedisUrlError(f"option {name}: expected yes or no")


def _hosts(text: str) -> tuple[tuple[str, int], ...]:
    out = []
    for item in text.split(","):
        item = item.strip()
        if not item:
            raise RedisUrlError("empty sentinel address in the host list")
        if item.startswith("["):  # [v6]:port
            host, sep, rest = item[1:].partition("]")
            if not sep or (rest and not rest.startswith(":")):
                raise RedisUrlError("bad IPv6 sentinel address (use [addr]:port)")
            port_text = rest[1:]
        else:
            host, _, port_text = item.partition(":")
        if not host:
            raise RedisUrlError("sentinel address without a host")
        try:
            port = int(port_text) if port_text else SENTINEL_PORT
        except ValueError:
            raise RedisUrlError("sentinel port is not a number") from None
        if not 0 < port < 65536:
            raise RedisUrlError("sentinel port must be 1..65535")
        out.append((host, port))
    return tuple(out)


def parse_sentinel(url: str) -> SentinelUrl:
    """The parts of a ``redis+sentinel://`` (or ``rediss+sentinel://``) URL; RedisUrlError if bad."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in ("redis+sentinel", "rediss+sentinel"):
        raise RedisUrlError("not a redis+sentinel:// URL")
    netloc, _, path_query = rest.partition("/")
    path, _, query = path_query.partition("?")
    userinfo, at, hostlist = netloc.rpartition("@")
    username = password = None
    if at:
        user, colon, pw = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(pw) if colon else None
    parts = [unquote(p) for p in path.split("/")] if path else []
    if not parts or not parts[0]:
        raise RedisUrlError("the master name is missing (redis+sentinel://host:port/<master-name>/<db>)")
    if len(parts) > 2 or (len(parts) == 2 and not parts[1].isdigit()):
        raise RedisUrlError("the path must be /<master-name>/<db> with db a number")
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query))
    except ValueError:
        raise RedisUrlError("malformed query string") from None
    opts: dict[str, str] = {}
    for name, value in pairs:
        if name not in OPTIONS:
            raise RedisUrlError(f"unknown option {name!r} (known: {', '.join(OPTIONS)})")
        if name in opts:
            raise RedisUrlError(f"option {name} given twice")
        opts[name] = value
    ssl = _flag("ssl", opts["ssl"]) if "ssl" in opts else scheme == "rediss+sentinel"
    role = opts.get("role", "primary").strip().lower()
    if role not in ("primary", "replica"):
        raise RedisUrlError("option role: expected primary or replica")
    ssl_options: list[tuple[str, Any]] = [(k, opts[k]) for k in _SSL_FILES if opts.get(k)]
    if "ssl_cert_reqs" in opts:
        reqs = opts["ssl_cert_reqs"].strip().lower()
        if reqs not in ("required", "optional", "none"):
            raise RedisUrlError("option ssl_cert_reqs: expected required, optional or none")
        ssl_options.append(("ssl_cert_reqs", reqs))
    if "ssl_check_hostname" in opts:
        ssl_options.append(("ssl_check_hostname", _flag("ssl_check_hostname", opts["ssl_check_hostname"])))
    try:
        min_others = int(opts.get("min_other_sentinels", "0"))
    except ValueError:
        raise RedisUrlError("option min_other_sentinels: expected a number") from None
    if min_others < 0:
        raise RedisUrlError("option min_other_sentinels: expected a number >= 0")
    return SentinelUrl(
        sentinels=_hosts(hostlist),
        service=parts[0],
        db=int(parts[1]) if len(parts) == 2 else 0,
        role=role,
        username=username,
        password=password,
        sentinel_username=opts.get("sentinel_username") or None,
        sentinel_password=opts.get("sentinel_password") or None,
        ssl=ssl,
        sentinel_ssl=_flag("sentinel_ssl", opts["sentinel_ssl"]) if "sentinel_ssl" in opts else ssl,
        ssl_options=tuple(ssl_options),
        min_other_sentinels=min_others,
    )


def _parse_standalone(url: str) -> dict[str, Any]:
    try:
        return redis.connection.parse_url(url)
    except ValueError as exc:
        raise RedisUrlError(str(exc).replace(url, redact(url))) from None


_PARSERS: dict[str, Callable[[str], Any]] = {
    "redis": _parse_standalone,
    "rediss": _parse_standalone,
    "unix": _parse_standalone,
    "redis+sentinel": parse_sentinel,
    "rediss+sentinel": parse_sentinel,
}


def scheme(url: str) -> str:
    return url.partition("://")[0].strip().lower()


def check(url: str) -> str:
    """``url`` if it is a usable Redis URL of a known form; RedisUrlError (no secrets) otherwise."""
    parser = _PARSERS.get(scheme(url))
    if parser is None or "://" not in url:
        raise RedisUrlError(f"expected one of {', '.join(s + '://' for s in _PARSERS)}")
    parser(url)
    return url


def is_sentinel(url: str) -> bool:
    return scheme(url) in ("redis+sentinel", "rediss+sentinel")


def redact(url: str) -> str:
    """The URL with its passwords (userinfo and ``*password*`` options) replaced by ``***``."""
    head, sep, rest = url.partition("://")
    if not sep:
        return url
    netloc, slash, tail = rest.partition("/")
    userinfo, at, hosts = netloc.rpartition("@")
    if at:
        user, colon, _pw = userinfo.partition(":")
        netloc = f"{user}:***@{hosts}" if colon else f"{user}@{hosts}"
    path, qmark, query = tail.partition("?")
    if qmark:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = "&".join(f"{k}={'***' if 'password' in k else quote(v, safe='/:,')}" for k, v in pairs)
    return f"{head}://{netloc}{slash}{path}{qmark}{query}"


# --- clients ---------------------------------------------------------------------------------------

DEFAULTS: dict[str, Any] = {
    "decode_responses": True,
    "socket_connect_timeout": 2.0,
    "socket_timeout": 5.0,
    "health_check_interval": 15,
}


def connect(url: str, **kwargs: Any) -> redis.Redis:
    """A Redis client that returns ``str`` and fails fast instead of hanging when Redis is gone.

    With a Sentinel URL, the client's connections find the primary (or a replica) through Sentinel
    each time they connect, so every user of the client follows a failover by reconnecting."""
    opts = dict(DEFAULTS)
    opts.update(kwargs)
    check(url)
    if is_sentinel(url):
        return _sentinel_client(parse_sentinel(url), opts)
    return redis.Redis.from_url(url, **opts)


def _sentinel_client(target: SentinelUrl, opts: dict[str, Any]) -> redis.Redis:
    ssl = dict(target.ssl_options)
    sentinel_kwargs: dict[str, Any] = {
        k: v for k, v in opts.items() if k in ("socket_timeout", "socket_connect_timeout", "socket_keepalive")
    }
    # each sentinel is asked once: a dead one must not hold a reconnect for redis-py's retry backoff
    sentinel_kwargs.update(
        retry=Retry(NoBackoff(), 0),
        decode_responses=True,
        username=target.sentinel_username,
        password=target.sentinel_password,
    )
    if target.sentinel_ssl:
        sentinel_kwargs.update(ssl=True, **ssl)
    node: dict[str, Any] = dict(opts, db=target.db, username=target.username, password=target.password)
    if target.ssl:
        node.update(ssl=True, **ssl)
    manager = Sentinel(
        list(target.sentinels), min_other_sentinels=target.min_other_sentinels, sentinel_kwargs=sentinel_kwargs
    )
    if target.role == "replica":
        return manager.slave_for(target.service, **node)
    return manager.master_for(target.service, **node)


def sentinel_manager(client: redis.Redis) -> Sentinel | None:
    """The Sentinel a client from :func:`connect` asks, or None for a standalone client."""
    manager = getattr(client.connection_pool, "sentinel_manager", None)
    return manager if isinstance(manager, Sentinel) else None


def is_cluster(client: object) -> bool:
    """Whether ``client`` talks to a Redis Cluster (each call's keys must then share one slot)."""
    return isinstance(client, RedisCluster)
