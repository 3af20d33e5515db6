"""The status page as a WSGI app: ``create_app(service)``.

Server-rendered (Flask + Jinja, one stylesheet, two small scripts, no build step). Every answer
carries a strict Content-Security-Policy (scripts and styles only from this origin, no framing,
forms only to this origin) and, but for static files and the badge, ``Cache-Control: no-store``:
pages hold the customer's data and, once, a new key.
"""

from __future__ import annotations

import logging

from flask import Flask, Response, g
from prometheus_client import CollectorRegistry
from redis import RedisError
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response as BaseResponse

from hbdns.logs import RateLimitedLog
from hbdns.metrics import FlaskMetrics
from update_api.parsing import trusted_networks
from update_api.status import i18n, views
from update_api.status.service import StatusService

log = logging.getLogger(__name__)

MAX_BODY = 16 * 1024  # bytes of a form post
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)


def create_app(service: StatusService, registry: CollectorRegistry | None = None) -> Flask:
    """The status page for ``service``; requests are counted in ``registry`` (default: one of its own)."""
    settings = service.settings
    app = Flask(__name__, static_folder=None)
    FlaskMetrics(registry if registry is not None else CollectorRegistry(), "hbdns_status_page").install(app)
    app.config.update(
        MAX_CONTENT_LENGTH=MAX_BODY,
        HBDNS_COOKIE_SECURE=settings.status_cookie_secure,
        HBDNS_SESSION_TTL=settings.status_session_ttl,
        HBDNS_TRUSTED_PROXIES=trusted_networks(settings.status_trusted_proxies),
    )
    app.extensions[views.EXTENSION] = service
    app.register_blueprint(views.bp)
    redis_log = RateLimitedLog(log, 10.0)

    @app.after_request
    def headers(resp: Response) -> Response:
        resp.headers["Content-Security-Policy"] = CSP
        resp.headers["X-Content-Type-Options"] = "nosniff"
        resp.headers["Referrer-Policy"] = "no-referrer"
        resp.headers["X-Frame-Options"] = "DENY"
        resp.headers.setdefault("Cache-Control", "no-store")
        return resp

    def page(status: int, title: str, text: str) -> BaseResponse:
        if "lang" not in g:
            g.lang, g.session, g.account = "en", None, None
        return views.message(title, text, status)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> BaseResponse:
        if exc.code == 404:
            return page(404, "Not found", "This page does not exist.")
        return page(exc.code or 500, exc.name, exc.description or "")

    @app.errorhandler(RedisError)
    def redis_error(exc: RedisError) -> BaseResponse:
        redis_log.log(logging.WARNING, "redis", "redis unavailable: answering 503", error=type(exc).__name__)
        resp = page(503, "Try again later", "The service is busy or unavailable right now.")
        resp.headers["Retry-After"] = "30"
        return resp

    @app.errorhandler(Exception)
    def unexpected(exc: Exception) -> BaseResponse:
        log.error("status page request failed", extra={"error": type(exc).__name__}, exc_info=exc)
        return page(500, "Try again later", "The service is busy or unavailable right now.")

    assert i18n.LANGUAGES  # the page speaks English and German
    return app
