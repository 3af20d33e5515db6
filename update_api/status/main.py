"""``hbdns-status-page``: serves the customer status page with waitress, as its own public process
(behind the provider's TLS proxy), on ``HBDNS_STATUS_HOST``/``HBDNS_STATUS_PORT``.

Its own process, not a route of ``hbdns-update-api``: browsers polling the state must not take the
threads routers update through, and a provider may put the two behind different names. SIGTERM
stops it cleanly.
"""

from __future__ import annotations

from hbdns import config
from hbdns import metrics as prom
from hbdns.connection import connect
from hbdns.wsgi import serve
from update_api.status.app import MAX_BODY, create_app
from update_api.status.service import StatusService


def main() -> int:
    settings = config.service_settings("hbdns-status-page")
    r = connect(settings.redis_url)
    registry = prom.new_registry()
    app = create_app(StatusService(settings, r), registry=registry)
    endpoint = prom.serve(registry, settings.status_metrics_addr, "status page")
    return serve(
        app,
        name="status page",
        host=settings.status_host,
        port=settings.status_port,
        threads=settings.status_threads,
        max_body=MAX_BODY,
        cleanup=(r.close, lambda: prom.stop(endpoint)),
        clear_untrusted_proxy_headers=False,
    )


if __name__ == "__main__":
    raise SystemExit(main())
