"""``hbdns-admin-api``: serves the provisioning API with waitress, as its own private process.

It listens on ``HBDNS_ADMIN_API_HOST``/``HBDNS_ADMIN_API_PORT`` (loopback and a port of its own by
default: the billing system and portal reach it over a private network, never the Internet) with
``HBDNS_ADMIN_API_THREADS`` workers, and purges pdns after changes like every writer. A host that
is not a loopback or private address is logged as a warning. SIGTERM stops it cleanly.
"""

from __future__ import annotations

import ipaddress
import logging

from admin.api.app import MAX_BODY, create_app
from admin.api.service import AdminApi
from hbdns import config
from hbdns import metrics as prom
from hbdns.connection import connect
from hbdns.purge import Purger
from hbdns.wsgi import serve

log = logging.getLogger("admin.api.main")


def is_private(host: str) -> bool:
    """Loopback, RFC 1918/ULA or link-local: where an admin API may listen without a warning."""
    if host == "localhost":
        return True
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        return False
    if addr.is_unspecified:  # 0.0.0.0 / :: listen on every interface, the public ones too
        return False
    return addr.is_loopback or addr.is_private or addr.is_link_local


def main() -> int:
    settings = config.service_settings("hbdns-admin-api")
    r = connect(settings.redis_url)
    purger = Purger(settings.pdns_api_urls, settings.pdns_api_key, settings.pdns_api_timeout).start()
    registry = prom.new_registry()
    app = create_app(AdminApi.build(settings, r, purger), registry=registry)
    endpoint = prom.serve(registry, settings.admin_api_metrics_addr, "admin API")
    if not is_private(settings.admin_api_host):
        log.warning(
            "the admin API listens on a public address: keep it private (firewall or HBDNS_ADMIN_API_HOST)",
            extra={"host": settings.admin_api_host},
        )
    return serve(
        app,
        name="admin API",
        host=settings.admin_api_host,
        port=settings.admin_api_port,
        threads=settings.admin_api_threads,
        max_body=MAX_BODY,
        cleanup=(purger.stop, r.close, lambda: prom.stop(endpoint)),
    )


if __name__ == "__main__":
    raise SystemExit(main())
