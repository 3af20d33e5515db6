"""The update API as a WSGI app: the Flask app factory and the dyndns2 routes (flaskr style).

``create_app(service)`` takes the :class:`~update_api.service.UpdateService` that ``main()`` (or a
test) built, so nothing is wired at import; the routes live on a blueprint and reach the service
through ``current_app``. Every answer, errors included, is text/plain with ``Cache-Control:
no-store``; methods other than GET/POST get ``badagent`` (405), as in Dyn's specification, and
a Redis outage answers ``dnserr`` (503) so clients retry later.

``/nic/checkip`` reports only a public unicast source. Anything else (loopback behind a proxy that
is not in ``HBDNS_UPDATE_TRUSTED_PROXIES``, a private or CGNAT address) answers 503 with no address
anywhere in the reply: ddclient 3.10 scans the whole reply, headers included, for the first address
whatever the status (4.x wants a 2xx), and inadyn 2.10 wants a 200, then falls back to its built-in
checkip server. Either way no client publishes the wrong address. There is no zone to allow private
sources here: checkip is unauthenticated.
"""

from __future__ import annotations

import logging

from flask import Blueprint, Flask, Response, current_app, request
from prometheus_client import CollectorRegistry, Counter
from redis import RedisError
from werkzeug.exceptions import HTTPException

from hbdns import validate
from hbdns.logs import RateLimitedLog
from hbdns.metrics import FlaskMetrics
from update_api.acme import routes as acme_routes
from update_api.acme.service import AcmeService
from update_api.answers import STATUS, Reply
from update_api.parsing import UpdateRequest, client_address, trusted_networks
from update_api.service import UpdateService

log = logging.getLogger(__name__)

MAX_QUERY = 8192  # bytes of query string (20 names of 253 characters fit)
MAX_BODY = 8192  # bytes of a POST body
CHECKIP_HTML = "<html><head><title>Current IP Check</title></head><body>Current IP Address: {ip}</body></html>"
CHECKIP_UNKNOWN = "unknown (no public address seen; ask your provider)"
EXTENSION = "hbdns_update"
CHECKIP_LOG = "hbdns_checkip_log"
METRICS = "hbdns_update_metrics"


class Answers:
    """``hbdns_update_answers_total{code}``: each dyndns2 answer line by its code (one per hostname)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.counter = Counter(
            "hbdns_update_answers",
            "dyndns2 answers by code, one per hostname line (good, nochg, badauth, nohost, abuse, dnserr, ...).",
            ["code"],
            registry=registry,
        )

    def count(self, reply: Reply) -> None:
        for line in reply.lines:
            code = line.split(" ", 1)[0]
            self.counter.labels(code=code if code in STATUS else "other").inc()


bp = Blueprint("update", __name__)


def create_app(
    service: UpdateService, acme: AcmeService | None = None, registry: CollectorRegistry | None = None
) -> Flask:
    """The update API for ``service`` (and the ACME routes for ``acme``, by default one on the same
    Redis, purger and limiter); trusted proxies come from its settings. Requests and dyndns2 answers
    are counted in ``registry`` (default: one of its own)."""
    app = Flask(__name__)
    app.config.from_mapping(
        MAX_CONTENT_LENGTH=MAX_BODY,
        HBDNS_TRUSTED_PROXIES=trusted_networks(service.settings.update_trusted_proxies),
    )
    app.extensions[EXTENSION] = service
    registry = registry if registry is not None else CollectorRegistry()
    FlaskMetrics(registry, "hbdns_update").install(app)
    app.extensions[METRICS] = Answers(registry)
    app.extensions[CHECKIP_LOG] = RateLimitedLog(log, 60.0)
    app.extensions[acme_routes.EXTENSION] = acme or AcmeService(
        service.settings, service.store.r, service.purger, service.limiter
    )
    app.register_blueprint(bp)
    app.register_blueprint(acme_routes.bp)
    redis_log = RateLimitedLog(log, 10.0)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Response:
        code = exc.code or 500
        if code == 405:
            return _text(Reply(lines=("badagent",), status=405, headers=(("Allow", "GET, POST"),)))
        if code == 413:
            return _text(Reply(lines=(f"request too large (at most {MAX_BODY} bytes)",), status=413))
        return _text(Reply(lines=(exc.name.lower(),), status=code))

    @app.errorhandler(RedisError)
    def redis_error(exc: RedisError) -> Response:
        redis_log.log(logging.WARNING, "redis", "redis unavailable: answering dnserr", error=type(exc).__name__)
        return _text(Reply.code("dnserr", ("Retry-After", "60")))

    @app.errorhandler(Exception)
    def unexpected(exc: Exception) -> Response:
        log.error("update failed", extra={"error": type(exc).__name__}, exc_info=exc)
        return _text(Reply.code("911", ("Retry-After", "300")))

    return app


def _text(reply: Reply) -> Response:
    answers: Answers | None = current_app.extensions.get(METRICS)
    if answers is not None:
        answers.count(reply)
    resp = Response(reply.body, status=reply.status, mimetype="text/plain")
    resp.headers["Cache-Control"] = "no-store"
    for name, value in reply.headers:
        resp.headers[name] = value
    return resp


def _source() -> str | None:
    proxy_headers = {h: request.headers.get(h, "") for h in ("X-Forwarded-For", "X-Real-IP")}
    return client_address(request.remote_addr, proxy_headers, current_app.config["HBDNS_TRUSTED_PROXIES"])


@bp.route("/nic/update", methods=["GET", "POST"])
@bp.route("/update", methods=["GET", "POST"])
@bp.route("/v3/update", methods=["GET", "POST"])
def update() -> Response:
    if request.method not in ("GET", "POST"):  # Flask adds HEAD to GET routes: no silent updates
        return _text(Reply(lines=("badagent",), status=405, headers=(("Allow", "GET, POST"),)))
    if len(request.query_string) > MAX_QUERY:
        return _text(Reply(lines=(f"request too large (query at most {MAX_QUERY} bytes)",), status=414))
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
        source=_source(),
        user_agent=request.headers.get("User-Agent", ""),
    )
    service: UpdateService = current_app.extensions[EXTENSION]
    return _text(service.handle(req))


@bp.route("/nic/checkip", methods=["GET"])
@bp.route("/checkip", methods=["GET"])
def checkip() -> Response:
    source = _source() or ""
    cls = validate.address_class(source) if source else "missing"
    if cls:
        current_app.extensions[CHECKIP_LOG].log(
            logging.WARNING,
            cls,
            "checkip: the source is not a public address (proxy missing from HBDNS_UPDATE_TRUSTED_PROXIES?)",
            source=source,
            address_class=cls,
        )
        resp = Response(CHECKIP_HTML.format(ip=CHECKIP_UNKNOWN), status=503, mimetype="text/html")
    else:
        resp = Response(CHECKIP_HTML.format(ip=source), mimetype="text/html")
    resp.headers["Cache-Control"] = "no-cache"
    return resp
