"""A caching resolver inside a private namespace (the mail tests), as senders and backup MXes
on the Internet have one (issue 13: "it must also work when the backup MX resolves through a
caching resolver that still holds the neutral answer").

Only inside a private namespace (:mod:`tests.support.netns`): its zones are forwarded to pdns
(``forward-zones``, RD=0: pdns is authoritative), reverse zones too (pdns refuses them, the
recursor answers SERVFAIL at once), no root hints and no security poll, so it never tries a server
outside loopback. The test zones are unsigned names under ``.test``, which a validating recursor
that cannot reach the root answers SERVFAIL; ``dnssec=process-no-validate`` serves them as they
are (the facts notes' negative trust anchor does the same for one zone).
"""

from __future__ import annotations

from pathlib import Path

import dns.message
import dns.query

from tests.support.pdns import answer_texts
from tests.support.servers import Process, wait_for, which


class Recursor:
    def __init__(self, workdir: Path, address: str, forward: list[str], upstream: str, probe: str) -> None:
        self.workdir = workdir
        self.probe = probe  # a name of a forwarded zone that answers: the recursor is up
        self.address = address
        self.forward = forward
        self.upstream = upstream  # host:port of pdns
        self.process: Process | None = None

    def start(self) -> Recursor:
        self.workdir.mkdir(parents=True, exist_ok=True)
        zones = [*self.forward, "in-addr.arpa", "ip6.arpa"]
        conf = {
            "local-address": self.address,
            "local-port": "53",
            "allow-from": "127.0.0.0/8, ::1/128, fd00::/8",
            "forward-zones": ", ".join(f"{z}={self.upstream}" for z in zones),
            "dnssec": "process-no-validate",
            "hint-file": "no",
            "security-poll-suffix": "",
            "socket-dir": str(self.workdir),
            "daemon": "no",
            "quiet": "yes",
            "threads": "1",
            "loglevel": "4",
        }
        (self.workdir / "recursor.conf").write_text("".join(f"{k}={v}\n" for k, v in conf.items()))
        self.process = Process([which("pdns_recursor"), f"--config-dir={self.workdir}"], self.workdir / "recursor.log")
        wait_for(lambda: self.query(self.probe, "A", timeout=0.5).rcode() == 0, 20, what="pdns-recursor")
        return self

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()

    def query(self, name: str, rdtype: str, timeout: float = 2.0) -> dns.message.Message:
        return dns.query.udp(dns.message.make_query(name, rdtype), self.address, port=53, timeout=timeout)

    def answers(self, name: str, rdtype: str) -> set[str]:
        return answer_texts(self.query(name, rdtype), name, rdtype)
