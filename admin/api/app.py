"""The admin API as a WSGI app: ``create_app(service)`` (flask-openapi3 on Flask).

flask-openapi3 reads each view's annotated pydantic models (``path``, ``query``, ``body``) to
validate the request and to write the OpenAPI 3.1 document served at ``/api/v1/openapi.json``;
:func:`admin.api.auth.authenticate` runs before that validation. Every error is problem+json
(:mod:`admin.api.problems`), Redis trouble a 503 with ``Retry-After``.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Response, jsonify
from flask_openapi3 import Info, OpenAPI
from prometheus_client import CollectorRegistry
from redis import RedisError
from werkzeug.exceptions import HTTPException

from admin.api import accounts, acme, notifications, problems, zones
from admin.api.auth import EXTENSION, authenticate
from admin.api.problems import ApiProblem
from admin.api.schemas import Problem
from admin.api.service import AdminApi
from hbdns import validate
from hbdns.logs import RateLimitedLog
from hbdns.metrics import FlaskMetrics
from hbdns.store import StoreError
from hbdns.tokens import TokenError

log = logging.getLogger(__name__)

MAX_BODY = 256 * 1024  # bytes of a request body (a zone with 500 records fits)
DESCRIPTION = """Provision zones and accounts of hbdns (heartbeat dynamic DNS for PowerDNS).

Authenticate with `Authorization: Bearer hbdns_...`, a token made by `hbdns token add --scope
admin|zone:<apex>|account:<fqdn>`. Errors are `application/problem+json` (RFC 9457); 422 answers
list every refused field in `errors`. Secrets (heartbeat keys, generated passwords) appear only in
the answer that made them."""


def create_app(
    service: AdminApi, *, validate_responses: bool = False, registry: CollectorRegistry | None = None
) -> OpenAPI:
    """The admin API for ``service``; ``validate_responses`` checks every answer against its
    documented model (tests turn it on); requests are counted in ``registry`` (default: one of its own)."""
    app = OpenAPI(
        __name__,
        info=Info(title="hbdns admin API", version="1.0.0", description=DESCRIPTION),
        security_schemes={"token": {"type": "http", "scheme": "bearer", "bearerFormat": "hbdns_<id>_<secret>"}},
        doc_ui=False,
        validation_error_status=422,
        validation_error_model=Problem,
        validation_error_callback=problems.from_pydantic,
        validate_response=validate_responses,
    )
    app.config.update(MAX_CONTENT_LENGTH=MAX_BODY)
    app.extensions[EXTENSION] = service
    FlaskMetrics(registry if registry is not None else CollectorRegistry(), "hbdns_admin_api").install(app)
    app.before_request(authenticate)
    for bp in (zones.bp, accounts.bp, acme.bp, notifications.bp):
        app.register_api(bp)
    app.add_url_rule("/api/v1/openapi.json", "openapi_json", lambda: jsonify(app.api_doc))
    _errors(app)
    return app


def _errors(app: OpenAPI) -> None:
    redis_log = RateLimitedLog(log, 10.0)

    @app.errorhandler(ApiProblem)
    def api_problem(exc: ApiProblem) -> Response:
        return problems.response(exc)

    @app.errorhandler(validate.ValidationError)
    @app.errorhandler(StoreError)
    @app.errorhandler(TokenError)
    def refusal(exc: Exception) -> Response:
        return problems.response(problems.from_refusal(exc))

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Any:
        if exc.code is None:  # flask-openapi3 aborts with its finished 422 answer
            return exc.get_response()
        methods = getattr(exc, "valid_methods", None)
        headers = {"Allow": ", ".join(methods)} if methods else {}
        return problems.response(ApiProblem(exc.code, exc.description or "", headers=headers))

    @app.errorhandler(RedisError)
    def redis_error(exc: RedisError) -> Response:
        redis_log.log(logging.WARNING, "redis", "redis unavailable: answering 503", error=type(exc).__name__)
        return problems.response(
            ApiProblem(503, "the database is unavailable; try again", headers={"Retry-After": "5"})
        )

    @app.errorhandler(Exception)
    def unexpected(exc: Exception) -> Response:
        log.error("request failed", extra={"error": type(exc).__name__}, exc_info=exc)
        return problems.response(ApiProblem(500, "internal error (logged)"))
