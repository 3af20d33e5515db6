"""The hbdns stack of the mail scenarios (phase 2 of issue 13), inside the private namespace of
:mod:`tests.support.mailnet`: every service a provider runs, as its real process.

- pdns on 127.0.0.1:53 with the hbdns backend (unix socket) as its only backend: it serves the
  customers' zone ``dyn.hbdns.test`` from Redis, and ``provider.test`` / ``sender.test`` (the
  backup MX's and the sending MTA's names) as static records of hbdns zones;
- pdns-recursor on 127.0.0.53 (:mod:`tests.support.recursor`), the backup MX's resolver;
- the heartbeat listener (127.0.0.1 and ::1), the sweeper, the notifier with the recovery flush
  (``ETRN`` to the backup MX from 127.0.0.1, or no flush at all for the bench's reference), an
  SMTP sink for the notifications;
- customers' clients: the real ``hbdns-client`` pinned to a source address, or :class:`Beater`,
  which beats over IPv4 and IPv6 from given addresses and can stop one family (the real client
  sends both from one process only where the kernel picks both sources).
"""

from __future__ import annotations

import os
import socket
import sys
import threading
import time
from pathlib import Path

from hbdns_client import wire

from hbdns import provision
from hbdns.model import Account
from hbdns.store import Store
from tests.support.listener import Listener, free_udp_port
from tests.support.netns_recursor import Recursor
from tests.support.pdns import BackendProcess, PdnsServer, answer_texts
from tests.support.servers import Process, RedisServer
from tests.support.services import env_for, spawn
from tests.support.sinks import SmtpSink

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
PDNS, RECURSOR = "127.0.0.1", "127.0.0.53"


class HbdnsStack:
    """Start after the zones and accounts exist (pdns loads its zone cache at start-up)."""

    def __init__(self, workdir: Path, redis: RedisServer, zones: list[str], *, flush_to: str, flush: bool) -> None:
        self.workdir = workdir
        self.redis = redis
        self.zones = zones
        self.flush_to = flush_to  # the backup MX's host:port for ETRN
        self.flush = flush
        self.smtp = SmtpSink()
        self.backend = BackendProcess(workdir / "backend", redis.url, transport="unix")
        self.pdns: PdnsServer | None = None
        self.recursor = Recursor(workdir / "recursor", RECURSOR, zones, f"{PDNS}:53", probe=f"ns1.{zones[-1]}")
        self.port = free_udp_port()
        self.listener: Listener | None = None
        self.services: list[Process] = []  # the sweeper, then the notifier
        self.env: dict[str, str] = {}

    def start(self) -> HbdnsStack:
        self.smtp.start()
        self.backend.start()
        # pdns' packet and query caches as deploy/pdns.conf has them (1 s); every writer purges
        self.pdns = PdnsServer(self.workdir / "pdns", self.backend.connection_string, port=53)
        self.pdns.start()
        self.recursor.start()
        writer = self.pdns.writer_env
        self.listener = Listener(self.workdir, self.redis.url, port=self.port, **writer).start()
        self.env = env_for(self.redis.url, self.smtp)
        self.env.update(writer, HBDNS_SWEEP_INTERVAL="0.2")
        self.services = [spawn("sweeper", self.workdir, "mail", self.env)]
        self.set_flush(self.flush)
        return self

    def set_flush(self, on: bool) -> None:
        """(Re)start the notifier with the recovery flush on or off (the bench's reference)."""
        if len(self.services) > 1:
            self.services.pop().stop()
        env = dict(self.env)
        if on:
            env.update(
                HBDNS_BACKUP_MX_FLUSH=self.flush_to,
                HBDNS_BACKUP_MX_FLUSH_SOURCE=PDNS,
                HBDNS_BACKUP_MX_FLUSH_HELO="hbdns.provider.test",
                HBDNS_BACKUP_MX_FLUSH_BACKOFF="0.5",
            )
        self.flush = on
        self.services.append(spawn("notifier", self.workdir, f"mail-{'flush' if on else 'noflush'}", env))

    def stop(self) -> None:
        for p in self.services:
            p.stop()
        for step in (self.listener, self.recursor, self.pdns, self.backend, self.smtp):
            if step is not None:
                step.stop()

    # --- DNS ------------------------------------------------------------------------------------------

    def answers(self, name: str, rdtype: str) -> set[str]:
        """What pdns answers now."""
        assert self.pdns is not None
        return answer_texts(self.pdns.query(name, rdtype, timeout=1.0), name, rdtype)

    def cached(self, name: str, rdtype: str) -> set[str]:
        """What the caching resolver answers now."""
        return self.recursor.answers(name, rdtype)

    # --- clients --------------------------------------------------------------------------------------

    def client(self, store: Store, account: Account, source: str, tag: str) -> Process:
        """The real ``hbdns-client run`` for ``account``, beating from ``source`` only."""
        conf = self.workdir / f"client-{tag}.conf"
        provision.write_client_config(store, conf, account, f"{PDNS}:{self.port}")
        env = {k: v for k, v in os.environ.items() if not k.startswith("HBDNS_")}
        env["STATE_DIRECTORY"] = str(self.workdir / f"client-state-{account.id}")
        argv = [str(BIN / "hbdns-client"), "--config", str(conf), "--source", source, "run"]
        return Process(argv, self.workdir / f"client-{tag}.log", env=env)


class Beater:
    """Beats for one account every ``interval`` s, over IPv4 from ``source4`` and over IPv6 from
    ``source6`` (consecutive counters, as the client does); ``families`` says which go out."""

    def __init__(self, account: Account, port: int, source4: str, source6: str, interval: float = 5.0) -> None:
        self.account = account
        self.port = port
        self.sources = {4: source4, 6: source6}
        self.interval = interval
        self.families = {4, 6}
        self.last: dict[int, float] = {}  # family -> wall time of its last beat
        self._counter = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> Beater:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def beat(self, family: int) -> None:
        self._counter = max(self._counter + 1, time.time_ns() // 1_000_000)
        data = wire.encode_beat(self.account.id, self._counter, self.account.hb_key, 0)
        fam, dest = (socket.AF_INET, PDNS) if family == 4 else (socket.AF_INET6, "::1")
        with socket.socket(fam, socket.SOCK_DGRAM) as s:
            s.bind((self.sources[family], 0))
            s.sendto(data, (dest, self.port))
        self.last[family] = time.time()

    def _run(self) -> None:
        while not self._stop.is_set():
            for family in sorted(self.families):
                self.beat(family)
            self._stop.wait(self.interval)
