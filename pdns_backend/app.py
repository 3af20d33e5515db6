"""HTTP transport: a Flask app speaking the remote backend's REST form, served by waitress in main().

PowerDNS (``remote-connection-string=http:url=http://127.0.0.1:8053/dnsapi,timeout=2000``) calls
``GET /dnsapi/<method>/<args...>``. Every reply is JSON with a ``result`` key: a method this backend
does not implement answers ``{"result": false}`` (an HTML 404 would make pdns SERVFAIL every query),
and a failure answers HTTP 500, which pdns turns into SERVFAIL instead of a cached NXDOMAIN.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

import redis
from flask import Flask, Response
from redis.backoff import NoBackoff
from redis.retry import Retry
from werkzeug.exceptions import HTTPException

from hbdns import config as hbconfig
from hbdns.connection import connect, is_cluster, scheme
from pdns_backend.answers import result_json
from pdns_backend.backend import Backend, BackendError
from pdns_backend.routes import Router

_JSON = "application/json"
_FALSE = b'{"result":false}'


def reads_from(settings: hbconfig.Settings) -> str:
    """The Redis the backend reads: its own (a replica on the DNS host) or the shared one."""
    return settings.backend_redis_url or settings.redis_url


def backend_redis(url: str) -> redis.Redis:
    """The backend's Redis client: fail within ~1 s (before pdns' own timeout), one quick retry.

    redis-py's default (10 retries with backoff) would hold every query for seconds while Redis is
    down; pdns would time out instead of getting a quick SERVFAIL. A Redis Cluster client keeps the
    retry policy :func:`hbdns.connection.connect` gives it (it asks for the slot map again between
    tries); the lookups' own raw calls try once more at most (:mod:`pdns_backend.routes`)."""
    retry = {} if scheme(url).endswith("+cluster") else {"retry": Retry(NoBackoff(), 1)}
    return connect(url, socket_timeout=1.0, socket_connect_timeout=1.0, health_check_interval=0, **retry)


def cluster_router(url: str) -> Callable[[], Router]:
    """For a Redis Cluster URL: what makes each lookup thread's router (one raw connection per
    primary, :mod:`pdns_backend.routes`), from the cluster plumbing ``hbdns.cluster_route``."""
    import hbdns.cluster_route as cluster_route  # only a Cluster deployment needs it

    # the backend's timeouts (backend_redis): fail before pdns' own timeout
    return lambda: cluster_route.ClusterRouter.from_url(url, socket_timeout=1.0, socket_connect_timeout=1.0)


def lookup_router(client: Any, url: str) -> Callable[[], Router] | None:
    """The lookups' router factory on Redis Cluster, None for standalone and Sentinel (one
    connection per thread)."""
    return cluster_router(url) if is_cluster(client) else None


class LookupFastPath:
    """WSGI middleware for the hot path, ``GET /dnsapi/lookup/<qname>/<qtype>``: answered straight
    from the backend without Flask's request/response objects (their share of the per-request cost
    under waitress: docs/performance.md). Anything else, including odd lookup paths, goes to the
    Flask app."""

    PREFIX = "/dnsapi/lookup/"

    def __init__(self, wsgi_app: Any, backend: Backend) -> None:
        self.wsgi_app = wsgi_app
        self.bodies = backend.lookup_bodies

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        path: str = environ.get("PATH_INFO", "")
        if path.startswith(self.PREFIX) and environ.get("REQUEST_METHOD") == "GET":
            qname, sep, qtype = path[len(self.PREFIX) :].partition("/")
            if sep and qname and qtype and "/" not in qtype:
                reply = self.bodies([(qname, qtype)])[0]
                ok = not isinstance(reply, BackendError)
                body = reply if not isinstance(reply, BackendError) else json.dumps({"error": str(reply)}).encode()
                start_response(
                    "200 OK" if ok else "500 Internal Server Error",
                    [("Content-Type", _JSON), ("Content-Length", str(len(body)))],
                )
                return [body]
        return self.wsgi_app(environ, start_response)


def _reply_body(call: Any, method: str, params: Mapping[str, Any]) -> tuple[int, bytes]:
    """(HTTP status, JSON body) for one call: 500 without ``result`` when the backend cannot answer."""
    try:
        result = call(method, params)
    except BackendError as exc:
        return 500, json.dumps({"error": str(exc)}).encode()
    if result is False:
        return 200, _FALSE
    return 200, result_json(result).encode()


def create_app(config: Mapping[str, Any] | None = None, redis: redis.Redis | None = None) -> Flask:
    """The backend app. ``config`` may carry ``HBDNS_SETTINGS`` (a Settings; default: from the
    environment), ``HBDNS_BACKEND`` (a ready :class:`Backend`, shared with the unix transport) and
    ``HBDNS_ZONE_MAX_AGE`` (seconds zone configuration may be cached; default 1, tests use 0)."""
    app = Flask(__name__)
    app.config.update(config or {})
    backend: Backend | None = app.config.get("HBDNS_BACKEND")
    if backend is None:
        settings = app.config.get("HBDNS_SETTINGS") or hbconfig.load()
        url = reads_from(settings)
        client = redis if redis is not None else backend_redis(url)
        backend = Backend(
            client,
            settings.plan_table(),
            zone_max_age=float(app.config.get("HBDNS_ZONE_MAX_AGE", 1.0)),
            router=lookup_router(client, url),
        )
    app.extensions["hbdns_backend"] = backend
    call = backend.call

    def reply(method: str, params: Mapping[str, Any]) -> Response:
        status, body = _reply_body(call, method, params)
        return Response(body, status=status, mimetype=_JSON)

    @app.get("/dnsapi/lookup/<qname>/<qtype>")
    def lookup(qname: str, qtype: str) -> Response:
        return reply("lookup", {"qname": qname, "qtype": qtype})

    @app.get("/dnsapi/getAllDomains")
    def get_all_domains() -> Response:
        return reply("getAllDomains", {})

    @app.get("/dnsapi/getDomainInfo/<name>")
    def get_domain_info(name: str) -> Response:
        return reply("getDomainInfo", {"name": name})

    @app.get("/dnsapi/getAllDomainMetadata/<name>")
    def get_all_domain_metadata(name: str) -> Response:
        return reply("getAllDomainMetadata", {"name": name})

    @app.get("/dnsapi/getDomainMetadata/<name>/<kind>")
    def get_domain_metadata(name: str, kind: str) -> Response:
        return reply("getDomainMetadata", {"name": name, "kind": kind})

    @app.get("/dnsapi/list/<int:domain_id>/<zonename>")
    @app.get("/dnsapi/list/<zonename>")
    def list_zone(zonename: str, domain_id: int = -1) -> Response:
        return reply("list", {"zonename": zonename, "domain_id": domain_id})

    @app.get("/ping")
    def ping() -> Response:
        ok = backend.ping()
        return Response(json.dumps({"result": ok}), status=200 if ok else 500, mimetype=_JSON)

    @app.get("/stats")
    def stats() -> Response:
        # the answer cache's counters, for the metrics and the tests (private, like the rest)
        return Response(json.dumps(backend.stats()), mimetype=_JSON)

    @app.errorhandler(HTTPException)
    def other(_exc: HTTPException) -> Response:
        # Unknown paths and methods: JSON false, never HTML (pdns would SERVFAIL every query).
        return Response(_FALSE, mimetype=_JSON)

    app.wsgi_app = LookupFastPath(app.wsgi_app, backend)  # type: ignore[method-assign]
    return app
