"""``hbdns-status-page``: serves the customer status page with waitress, as its own public process
(behind the provider's TLS proxy), on ``HBDNS_STATUS_HOST``/``HBDNS_STATUS_PORT``.

Its own process, not a route of ``hbdns-update-api``: browsers polling the state must not take the
threads routers update through, and a provider may put the two behind different names. SIGTERM
stops it cleanly.
"""

from __future__ import annotations

import logging
import signal
from types import FrameType

import waitress

from hbdns import config
from hbdns.connection import connect
from update_api.status.app import MAX_BODY, create_app
from update_api.status.service import StatusService

log = logging.getLogger("update_api.status.main")


def _stop(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


def main() -> int:
    settings = config.service_settings("hbdns-status-page")
    r = connect(settings.redis_url)
    app = create_app(StatusService(settings, r))
    server = waitress.create_server(
        app,
        host=settings.status_host,
        port=settings.status_port,
        threads=settings.status_threads,
        ident="hbdns",
        max_request_body_size=MAX_BODY,
        channel_timeout=30,
        clear_untrusted_proxy_headers=False,
    )
    signal.signal(signal.SIGTERM, _stop)
    log.info("status page listening", extra={"host": settings.status_host, "port": settings.status_port})
    try:
        server.run()
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        server.close()
        r.close()
        log.info("status page stopped")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
