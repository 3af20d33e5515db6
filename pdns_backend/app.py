"""HTTP transport: a Flask app speaking the remote backend's REST form, served by waitress in main().

PowerDNS (``remote-connection-string=http:url=http://127.0.0.1:8053/dnsapi,timeout=2000``) calls
``GET /dnsapi/<method>/<args...>``. Every reply is JSON with a ``result`` key: a method this backend
does not implement answers ``{"result": false}`` (an HTML 404 would make pdns SERVFAIL every query),
and a failure answers HTTP 500, which pdns turns into SERVFAIL instead of a cached NXDOMAIN.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import redis
from flask import Flask, Response
from werkzeug.exceptions import HTTPException

from hbdns import config as hbconfig
from pdns_backend.handlers import Backend, BackendError

_JSON = "application/json"
_FALSE = b'{"result":false}'


def backend_redis(url: str) -> redis.Redis:
    """The backend's Redis client: fail within ~1 s (before pdns' own timeout), one quick retry."""
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    from hbdns.store import connect

    return connect(
        url,
        socket_timeout=1.0,
        socket_connect_timeout=1.0,
        retry=Retry(NoBackoff(), 1),
        health_check_interval=0,
    )


def create_app(config: Mapping[str, Any] | None = None, redis: redis.Redis | None = None) -> Flask:
    """The backend app. ``config`` may carry ``HBDNS_SETTINGS`` (a Settings; default: from the
    environment) and ``HBDNS_BACKEND`` (a ready :class:`Backend`, shared with the unix transport)."""
    app = Flask(__name__)
    app.config.update(config or {})
    backend: Backend | None = app.config.get("HBDNS_BACKEND")
    if backend is None:
        settings = app.config.get("HBDNS_SETTINGS") or hbconfig.load()
        client = redis if redis is not None else backend_redis(settings.redis_url)
        backend = Backend(client, settings.plan_table())
    app.extensions["hbdns_backend"] = backend
    call = backend.call

    def reply(method: str, params: Mapping[str, Any]) -> Response:
        try:
            result = call(method, params)
        except BackendError as exc:
            return Response(json.dumps({"error": str(exc)}), status=500, mimetype=_JSON)
        if result is False:
            return Response(_FALSE, mimetype=_JSON)
        return Response(json.dumps({"result": result}, separators=(",", ":")), mimetype=_JSON)

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

    @app.errorhandler(HTTPException)
    def other(_exc: HTTPException) -> Response:
        # Unknown paths and methods: JSON false, never HTML (pdns would SERVFAIL every query).
        return Response(_FALSE, mimetype=_JSON)

    return app
