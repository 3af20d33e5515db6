"""A DNS prober for fault tests: asks pdns for names in turn, one query at a time, and keeps every
answer with its time, so a test can say what pdns answered before, during and after a fault."""

from __future__ import annotations

import threading
import time

import dns.rcode

from tests.support.pdns import PdnsServer, answer_texts


class Prober(threading.Thread):
    """Asks pdns for every account's A record in turn, as fast as it answers (one query at a time)."""

    def __init__(self, pdns: PdnsServer, names: list[str], pause: float = 0.002) -> None:
        super().__init__(name="prober", daemon=True)
        self.pdns = pdns
        self.names = names
        self.pause = pause  # seconds between two queries
        self.seen: list[tuple[float, str, str, frozenset[str]]] = []  # (when, name, rcode, A rdata)
        self.timeouts = 0
        self._halt = threading.Event()

    def run(self) -> None:
        i = 0
        while not self._halt.is_set():
            name = self.names[i % len(self.names)]
            i += 1
            try:
                msg = self.pdns.query(name, "A", timeout=2.0)
            except Exception:
                self.timeouts += 1
                continue
            self.seen.append(
                (time.monotonic(), name, dns.rcode.to_text(msg.rcode()), frozenset(answer_texts(msg, name, "A")))
            )
            self._halt.wait(self.pause)

    def stop(self) -> None:
        self._halt.set()
        self.join(10)
