"""``hbdns-neutral-host``: the optional service behind the neutral addresses.

Runs on the provider's neutral IPs (``HBDNS_NEUTRAL_HOST_ADDRESSES``; ports 25 and 80 need
``CAP_NET_BIND_SERVICE``, see deploy/systemd/hbdns-neutral-host.service). It needs no Redis: what it
answers is the same for every account. SIGTERM/SIGINT set a flag; the loop then closes the
listeners and exits.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket

from hbdns import config
from neutral_host.server import Limits, NeutralHost

log = logging.getLogger("neutral_host.main")


def build(settings: config.Settings) -> NeutralHost:
    return NeutralHost(
        addresses=settings.neutral_host_addresses,
        smtp_port=settings.neutral_host_smtp_port,
        http_port=settings.neutral_host_http_port,
        name=settings.neutral_host_name or socket.getfqdn(),
        limits=Limits(
            max_connections=settings.neutral_host_max_connections,
            per_source=settings.neutral_host_per_source,
            timeout=settings.neutral_host_timeout,
        ),
    )


async def serve(host: NeutralHost) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await host.start()
    try:
        await stop.wait()
    finally:
        await host.close()
        log.info("neutral host stopped", extra={"counts": dict(host.counts)})


def main() -> int:
    settings = config.service_settings("hbdns-neutral-host")
    try:
        host = build(settings)
    except ValueError as exc:
        log.error("bad neutral host settings", extra={"error": str(exc)})
        return 2
    asyncio.run(serve(host))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
