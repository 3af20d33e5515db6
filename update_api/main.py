"""``hbdns-update-api``: serves the dyndns2 update API with waitress, as its own public process.

It listens on ``HBDNS_UPDATE_HOST``/``HBDNS_UPDATE_PORT`` (a different port from the private pdns
backend) with ``HBDNS_UPDATE_THREADS`` workers. Header and body sizes are capped in waitress too, so
an oversized request is refused before the app reads it. SIGTERM stops it cleanly.

Waitress 3 deletes ``X-Forwarded-For`` unless its own single ``trusted_proxy`` sent it; the app
decides instead, from the CIDR list ``HBDNS_UPDATE_TRUSTED_PROXIES``
(:func:`update_api.parsing.client_address`), so waitress is told to keep the headers.
"""

from __future__ import annotations

import logging
import signal
from types import FrameType

import waitress

from hbdns import config
from hbdns import metrics as prom
from hbdns.connection import connect
from hbdns.purge import Purger
from update_api.app import MAX_BODY, MAX_QUERY, create_app
from update_api.service import UpdateService

log = logging.getLogger("update_api.main")


def _stop(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


def main() -> int:
    settings = config.service_settings("hbdns-update-api")
    r = connect(settings.redis_url)
    purger = Purger(settings.pdns_api_urls, settings.pdns_api_key, settings.pdns_api_timeout).start()
    registry = prom.new_registry()
    app = create_app(UpdateService(settings, r, purger), registry=registry)
    endpoint = prom.serve(registry, settings.update_metrics_addr, "update API")
    server = waitress.create_server(
        app,
        host=settings.update_host,
        port=settings.update_port,
        threads=settings.update_threads,
        ident="hbdns",
        max_request_header_size=MAX_QUERY + 8192,
        max_request_body_size=MAX_BODY,
        channel_timeout=30,
        clear_untrusted_proxy_headers=False,
    )
    signal.signal(signal.SIGTERM, _stop)
    log.info(
        "update API listening",
        extra={"host": settings.update_host, "port": settings.update_port, "threads": settings.update_threads},
    )
    try:
        server.run()
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        server.close()
        prom.stop(endpoint)
        purger.stop()
        r.close()
        log.info("update API stopped")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
