"""``hbdns-backup-mx-maps``: the backup MX's relay domains, transports and recipient policy for Postfix.

Run it on the backup MX host, next to Postfix (deploy/postfix/main.cf points its socketmap tables
at ``HBDNS_BACKUP_MX_MAP_HOST:PORT`` or ``HBDNS_BACKUP_MX_MAP_SOCKET``). It only reads Redis, so a
read-only Redis user or a replica is enough. The socketmap protocol has no authentication: keep it
on loopback or a unix socket. SIGTERM/SIGINT set a flag; the main thread then stops the server.
"""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType

from backup_mx.maps import MxMaps
from backup_mx.server import MapServer
from hbdns import config
from hbdns.connection import connect

log = logging.getLogger("backup_mx.main")


def main() -> int:
    settings = config.service_settings("hbdns-backup-mx-maps")
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    r = connect(settings.redis_url)
    server = MapServer(
        MxMaps(r).answer,
        host=settings.backup_mx_map_host,
        port=settings.backup_mx_map_port,
        unix_path=settings.backup_mx_map_socket,
        max_connections=settings.backup_mx_map_max_connections,
    ).start()
    where = settings.backup_mx_map_socket or f"{settings.backup_mx_map_host}:{server.port}"
    log.info("backup MX tables listening", extra={"address": where})
    stop.wait()
    server.stop()
    r.close()
    log.info("backup MX tables stopped", extra={"lookups": server.lookups})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
