"""Serving a WSGI app with waitress as a service's main thread, the same way for every HTTP service:
sizes capped in waitress (an oversized request is refused before the app reads it), SIGTERM a clean
stop, the ``cleanup`` callbacks run however the server ends."""

from __future__ import annotations

import logging
import signal
from collections.abc import Callable, Iterable
from types import FrameType
from typing import Any

import waitress


def _stop(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


def serve(
    app: Any,
    *,
    name: str,
    host: str,
    port: int,
    threads: int,
    max_body: int,
    cleanup: Iterable[Callable[[], object]] = (),
    **options: Any,
) -> int:
    """Serve ``app`` until SIGTERM or Ctrl-C; ``options`` go to waitress (e.g. header limits)."""
    log = logging.getLogger(name)
    server = waitress.create_server(
        app, host=host, port=port, threads=threads, ident="hbdns", max_request_body_size=max_body,
        channel_timeout=30, **options,
    )  # fmt: skip
    signal.signal(signal.SIGTERM, _stop)
    log.info(f"{name} listening", extra={"host": host, "port": port, "threads": threads})
    try:
        server.run()
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        server.close()
        for step in cleanup:
            step()
        log.info(f"{name} stopped")
    return 0
