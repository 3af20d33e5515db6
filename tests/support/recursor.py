"""A real caching resolver in front of the test pdns: Debian's ``pdns_recursor`` from a config dir of
its own, on a free loopback port, that can reach nothing but loopback.

- ``forward-zones`` sends the test zone to the test pdns; everything else would go to the root
  servers of a local hints file, a loopback address where nothing listens (the recursor never
  reaches the real root: ``security-poll-suffix`` is empty too, so it sends no version poll).
- ``dont-query`` is emptied because it lists loopback by default and would refuse the forwarder.
- The test zone is unsigned and the recursor cannot reach the root to prove that, so a negative
  trust anchor (``addNTA`` in the Lua config) keeps validation from answering SERVFAIL.

pdns-recursor 4.8 cuts below a cached NXDOMAIN (RFC 8020, ``nothing-below-nxdomain``) only in
names it resolves itself, never in a forwarded zone (``syncres.cc``: ``!wasForwardedOrAuthZone``),
so through this fixture an empty non-terminal is checked by what the resolver caches for it
(NODATA with the zone's SOA, not NXDOMAIN), which is what a cutting resolver decides on.
"""

from __future__ import annotations

from pathlib import Path

import dns.flags
import dns.message
import dns.query
import dns.rcode

from tests.support.servers import Process, free_port, wait_for, which

ROOT_HINT = "127.255.255.254"  # loopback; nothing listens there


class Recursor:
    def __init__(self, workdir: Path, zone: str, auth_port: int) -> None:
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.zone = zone
        self.auth_port = auth_port
        self.port = free_port()
        self.process: Process | None = None

    def write_config(self) -> None:
        (self.workdir / "root.hints").write_text(
            f".  3600000  NS  a.root.hints.invalid.\na.root.hints.invalid.  3600000  A  {ROOT_HINT}\n"
        )
        (self.workdir / "recursor.lua").write_text(f"addNTA('{self.zone}', 'unsigned test zone')\n")
        conf = {
            "local-address": "127.0.0.1",
            "local-port": str(self.port),
            "socket-dir": str(self.workdir),
            "daemon": "no",
            "disable-syslog": "yes",
            "log-timestamp": "no",
            "quiet": "yes",
            "threads": "1",
            "hint-file": str(self.workdir / "root.hints"),
            "forward-zones": f"{self.zone}=127.0.0.1:{self.auth_port}",
            "dont-query": "",
            "security-poll-suffix": "",
            "lua-config-file": str(self.workdir / "recursor.lua"),
            "allow-from": "127.0.0.0/8",
        }
        (self.workdir / "recursor.conf").write_text("".join(f"{k}={v}\n" for k, v in conf.items()))

    def start(self, timeout: float = 30.0) -> Recursor:
        self.write_config()
        self.process = Process([which("pdns_recursor"), f"--config-dir={self.workdir}"], self.workdir / "recursor.log")
        wait_for(self._ready, timeout, interval=0.1, what=f"pdns_recursor on port {self.port}")
        return self

    def _ready(self) -> bool:
        if self.process is None or not self.process.alive():
            raise RuntimeError("pdns_recursor exited:\n" + (self.process.log_text() if self.process else ""))
        return self.query(self.zone, "SOA", timeout=1.0).rcode() == dns.rcode.NOERROR

    def query(self, qname: str, rdtype: str, timeout: float = 3.0) -> dns.message.Message:
        """A query as a stub resolver sends it: recursion desired, and the AD bit (dig's default), so
        the recursor validates."""
        msg = dns.message.make_query(qname, rdtype)
        msg.flags |= dns.flags.AD
        return dns.query.udp(msg, "127.0.0.1", port=self.port, timeout=timeout)

    def log_text(self) -> str:
        return self.process.log_text() if self.process else ""

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
