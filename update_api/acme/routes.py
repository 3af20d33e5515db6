"""The ACME routes of the update API: acme-dns under ``/acme-dns``, lego's httpreq under ``/httpreq``.

Their own path prefixes because the dyndns2 API answers ``/update`` (an alias of ``/nic/update``):
an acme-dns client is given ``https://update.example.net/acme-dns`` as its server and posts to
``.../acme-dns/update``, so the two protocols never meet on one path, and both share the update
API's process, TLS proxy, trusted-proxy list and Redis rate limits. acme-dns's ``/register`` is
refused: credentials are made by the operator or the customer's portal (``hbdns account
acme-credentials``), never by an anonymous client.
"""

from __future__ import annotations

import logging

from flask import Blueprint, Response, current_app, jsonify, request
from redis import RedisError

from hbdns.logs import RateLimitedLog
from update_api.acme.service import REGISTER_REFUSED, AcmeReply, AcmeService
from update_api.parsing import client_address

EXTENSION = "hbdns_acme"
log = logging.getLogger(__name__)

bp = Blueprint("acme", __name__)
_redis_log = RateLimitedLog(log, 10.0)


@bp.errorhandler(RedisError)
def redis_error(exc: RedisError) -> Response:
    _redis_log.log(logging.WARNING, "redis", "redis unavailable: answering 503", error=type(exc).__name__)
    return _json(AcmeReply.error(503, "unavailable", "try again later", ("Retry-After", "30")))


def _service() -> AcmeService:
    service: AcmeService = current_app.extensions[EXTENSION]
    return service


def _json(reply: AcmeReply) -> Response:
    resp = jsonify(reply.body)
    resp.status_code = reply.status
    resp.headers["Cache-Control"] = "no-store"
    for name, value in reply.headers:
        resp.headers[name] = value
    return resp


def _source() -> str | None:
    """The client's address, through the trusted proxies the update app was configured with."""
    headers = {h: request.headers.get(h, "") for h in ("X-Forwarded-For", "X-Real-IP")}
    return client_address(request.remote_addr, headers, current_app.config["HBDNS_TRUSTED_PROXIES"])


@bp.route("/acme-dns/update", methods=["POST"])
def acme_dns_update() -> Response:
    body = request.get_json(silent=True, force=True)
    user, key = request.headers.get("X-Api-User"), request.headers.get("X-Api-Key")
    return _json(_service().update(user, key, _source(), body))


@bp.route("/acme-dns/register", methods=["POST"])
def acme_dns_register() -> Response:
    return _json(REGISTER_REFUSED)


@bp.route("/acme-dns/health", methods=["GET"])
def acme_dns_health() -> Response:
    return _json(AcmeReply(200, {}))


def _basic() -> tuple[str | None, str | None]:
    auth = request.authorization
    if auth is None or auth.type != "basic":
        return None, None
    return auth.username, auth.password


@bp.route("/httpreq/present", methods=["POST"])
def httpreq_present() -> Response:
    return _json(_service().present(*_basic(), _source(), request.get_json(silent=True, force=True)))


@bp.route("/httpreq/cleanup", methods=["POST"])
def httpreq_cleanup() -> Response:
    return _json(_service().cleanup(*_basic(), _source(), request.get_json(silent=True, force=True)))
