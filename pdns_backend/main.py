"""``hbdns-backend``: the PowerDNS remote backend process.

Serves HTTP on ``HBDNS_BACKEND_HOST:HBDNS_BACKEND_PORT`` (loopback by default: only PowerDNS may
reach it) with ``HBDNS_BACKEND_THREADS`` waitress threads, and, when ``HBDNS_BACKEND_SOCKET`` is
set, the faster unix socket too; metrics on ``HBDNS_BACKEND_METRICS_ADDR``. Matching pdns settings
(see ``deploy/pdns.conf``)::

    launch=remote
    remote-connection-string=unix:path=/run/hbdns/backend.sock,timeout=2000
    # or, over HTTP:
    remote-connection-string=http:url=http://127.0.0.1:8053/dnsapi,timeout=2000

Start the backend before pdns: pdns exits when its backend is unreachable at start-up.
"""

from __future__ import annotations

import logging
import signal
import sys
from types import FrameType

import waitress

from hbdns import config
from hbdns import metrics as prom
from hbdns.connection import redact
from pdns_backend.app import backend_redis, create_app, lookup_router, reads_from
from pdns_backend.backend import Backend
from pdns_backend.metrics import BackendMetrics
from pdns_backend.unix import UnixServer

log = logging.getLogger("pdns_backend")


def _terminate(signum: int, _frame: FrameType | None) -> None:
    """SIGTERM ends waitress' ``run()`` the way SIGINT does (an exception out of its loop): the
    loop has no stop flag to set, so this is the one handler here that does more than set one."""
    raise SystemExit(0)


def main(argv: list[str] | None = None) -> int:
    settings = config.service_settings("hbdns-backend")
    # waitress warns "Task queue depth is N" whenever all threads are busy for a moment: normal here.
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)
    registry = prom.new_registry()
    url = reads_from(settings)
    client = backend_redis(url)
    backend = Backend(
        client,
        settings.plan_table(),
        cache_entries=settings.backend_cache_entries,
        metrics=BackendMetrics(registry),
        router=lookup_router(client, url),
    )
    endpoint = prom.serve(registry, settings.backend_metrics_addr, "backend")
    app = create_app({"HBDNS_SETTINGS": settings, "HBDNS_BACKEND": backend})
    unix = UnixServer(settings.backend_socket, backend).start() if settings.backend_socket else None
    server = waitress.create_server(
        app,
        host=settings.backend_host,
        port=settings.backend_port,
        threads=settings.backend_threads,
        ident="hbdns-backend",
        connection_limit=max(100, settings.backend_threads * 4),
        channel_timeout=300,
        clear_untrusted_proxy_headers=False,  # nothing here reads proxy headers: skip the scan
    )
    signal.signal(signal.SIGTERM, _terminate)
    log.info(
        "backend serving",
        extra={
            "http": f"{settings.backend_host}:{server.effective_port}",
            "unix": settings.backend_socket or None,
            "threads": settings.backend_threads,
            "redis": redact(reads_from(settings)),
        },
    )
    try:
        server.run()
    except (SystemExit, KeyboardInterrupt):
        pass
    finally:
        if unix is not None:
            unix.stop()
        server.close()
        prom.stop(endpoint)
    return 0


if __name__ == "__main__":
    sys.exit(main())
