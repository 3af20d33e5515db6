"""The Redis URL forms hbdns accepts: parsed, checked without connecting, redacted for logs.

:mod:`hbdns.connection` turns them into clients (and re-exports these names). The forms:

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

- ``redis+cluster://[user:pass@]host:port[,host:port...][/0][?options]`` (``rediss+cluster://``:
  TLS): Redis Cluster, through redis-py's ``RedisCluster`` (slot map from the nodes listed, then
  MOVED/ASK redirections and failovers followed by asking the cluster again). Only db 0 exists
  there. Options: the ``ssl*`` ones above. The raw RESP hot paths route by slot themselves
  (:mod:`hbdns.cluster_route`) with the same node settings (``connection.cluster_node_kwargs``).

:func:`check` validates a URL without connecting (config loading uses it); :func:`redact` is the
URL as it may be logged.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, quote, unquote

import redis

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
CLUSTER_OPTIONS = ("ssl", *_SSL_FILES, "ssl_cert_reqs", "ssl_check_hostname")
CLUSTER_PORT = 6379


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


@dataclass(frozen=True)
class ClusterUrl:
    """A parsed ``redis+cluster://`` URL: the nodes to learn the slot map from, and how to log in."""

    nodes: tuple[tuple[str, int], ...]
    username: str | None = None
    password: str | None = None
    ssl: bool = False
    ssl_options: tuple[tuple[str, Any], ...] = ()  # redis-py ssl_* keyword arguments


def _flag(name: str, raw: str) -> bool:
    low = raw.strip().lower()
    if low in _YES:
        return True
    if low in _NO:
        return False
    raise RedisUrlError(f"option {name}: expected yes or no")


def _hosts(text: str, what: str = "sentinel", default_port: int = SENTINEL_PORT) -> tuple[tuple[str, int], ...]:
    out = []
    for item in text.split(","):
        item = item.strip()
        if not item:
            raise RedisUrlError(f"empty {what} address in the host list")
        if item.startswith("["):  # [v6]:port
            host, sep, rest = item[1:].partition("]")
            if not sep or (rest and not rest.startswith(":")):
                raise RedisUrlError(f"bad IPv6 {what} address (use [addr]:port)")
            port_text = rest[1:]
        else:
            host, _, port_text = item.partition(":")
        if not host:
            raise RedisUrlError(f"{what} address without a host")
        try:
            port = int(port_text) if port_text else default_port
        except ValueError:
            raise RedisUrlError(f"{what} port is not a number") from None
        if not 0 < port < 65536:
            raise RedisUrlError(f"{what} port must be 1..65535")
        out.append((host, port))
    return tuple(out)


def _split(url: str, schemes: tuple[str, str]) -> tuple[str, str | None, str | None, str, str, dict[str, str]]:
    """(scheme, username, password, host list, path, options) of a multi-host URL."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in schemes:
        raise RedisUrlError(f"not a {schemes[0]}:// URL")
    userinfo, hostlist, _slash, path, _qmark, query = _parts(rest)
    username = password = None
    if userinfo is not None:
        user, colon, pw = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(pw) if colon else None
    known = OPTIONS if scheme.endswith("sentinel") else CLUSTER_OPTIONS
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query))
    except ValueError:
        raise RedisUrlError("malformed query string") from None
    opts: dict[str, str] = {}
    for name, value in pairs:
        if name not in known:
            raise RedisUrlError(f"unknown option {name!r} (known: {', '.join(known)})")
        if name in opts:
            raise RedisUrlError(f"option {name} given twice")
        opts[name] = value
    return scheme, username, password, hostlist, path, opts


def _ssl_options(opts: dict[str, str]) -> tuple[tuple[str, Any], ...]:
    ssl_options: list[tuple[str, Any]] = [(k, opts[k]) for k in _SSL_FILES if opts.get(k)]
    if "ssl_cert_reqs" in opts:
        reqs = opts["ssl_cert_reqs"].strip().lower()
        if reqs not in ("required", "optional", "none"):
            raise RedisUrlError("option ssl_cert_reqs: expected required, optional or none")
        ssl_options.append(("ssl_cert_reqs", reqs))
    if "ssl_check_hostname" in opts:
        ssl_options.append(("ssl_check_hostname", _flag("ssl_check_hostname", opts["ssl_check_hostname"])))
    return tuple(ssl_options)


def parse_sentinel(url: str) -> SentinelUrl:
    """The parts of a ``redis+sentinel://`` (or ``rediss+sentinel://``) URL; RedisUrlError if bad."""
    scheme, username, password, hostlist, path, opts = _split(url, ("redis+sentinel", "rediss+sentinel"))
    parts = [unquote(p) for p in path.split("/")] if path else []
    if not parts or not parts[0]:
        raise RedisUrlError("the master name is missing (redis+sentinel://host:port/<master-name>/<db>)")
    if len(parts) > 2 or (len(parts) == 2 and not parts[1].isdigit()):
        raise RedisUrlError("the path must be /<master-name>/<db> with db a number")
    ssl = _flag("ssl", opts["ssl"]) if "ssl" in opts else scheme == "rediss+sentinel"
    role = opts.get("role", "primary").strip().lower()
    if role not in ("primary", "replica"):
        raise RedisUrlError("option role: expected primary or replica")
    ssl_options = _ssl_options(opts)
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
        ssl_options=ssl_options,
        min_other_sentinels=min_others,
    )


def parse_cluster(url: str) -> ClusterUrl:
    """The parts of a ``redis+cluster://`` (or ``rediss+cluster://``) URL; RedisUrlError if bad."""
    scheme, username, password, hostlist, path, opts = _split(url, ("redis+cluster", "rediss+cluster"))
    if path not in ("", "0"):
        raise RedisUrlError("Redis Cluster has only db 0 (the path may be empty or /0)")
    return ClusterUrl(
        nodes=_hosts(hostlist, "cluster node", CLUSTER_PORT),
        username=username,
        password=password,
        ssl=_flag("ssl", opts["ssl"]) if "ssl" in opts else scheme == "rediss+cluster",
        ssl_options=_ssl_options(opts),
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
    "redis+cluster": parse_cluster,
    "rediss+cluster": parse_cluster,
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


def is_cluster_url(url: str) -> bool:
    return scheme(url) in ("redis+cluster", "rediss+cluster")


def redact(url: str) -> str:
    """The URL with its passwords (userinfo and ``*password*`` options) replaced by ``***``."""
    head, sep, rest = url.partition("://")
    if not sep:
        return url
    userinfo, hosts, slash, path, qmark, query = _parts(rest, redacting=True)
    netloc = hosts
    if userinfo is not None:
        user, colon, _pw = userinfo.partition(":")
        netloc = f"{user}:***@{hosts}" if colon else f"{user}@{hosts}"
    if qmark:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = "&".join(f"{k}={'***' if 'password' in k else quote(v, safe='/:,')}" for k, v in pairs)
    return f"{head}://{netloc}{slash}{path}{qmark}{query}"


def _parts(rest: str, redacting: bool = False) -> tuple[str | None, str, str, str, str, str]:
    """(userinfo or None, hosts, "/", path, "?", query) of what follows ``scheme://``. The userinfo
    ends at the last "@" before the first "/" (when redacting: the last "@" of all, so that a
    password with an unescaped "/" or "?" is hidden too); the hosts at the next "/" or "?" (the
    query may follow the hosts directly, and hold "/" in file names)."""
    first_slash = len(rest) if redacting or "/" not in rest else rest.find("/")
    at = rest.rfind("@", 0, first_slash)
    userinfo = rest[:at] if at >= 0 else None
    after = rest[at + 1 :]
    cut = min((i for i in (after.find("/"), after.find("?")) if i >= 0), default=len(after))
    hosts, tail = after[:cut], after[cut:]
    if tail.startswith("/"):
        path, qmark, query = tail[1:].partition("?")
        return userinfo, hosts, "/", path, qmark, query
    return userinfo, hosts, "", "", "?" if tail else "", tail[1:]
