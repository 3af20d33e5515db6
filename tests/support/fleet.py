"""Many heartbeat clients in one thread: each account beats every ``interval`` seconds at its own
phase, from a source address of its own list (one per beat, in turn: an account with two sources
changes address on every beat), asks for a reply every time and records what was acknowledged.

A reply means the listener stored the beat: it answers only after the beat script's result came
back from the primary. So ``acked`` is what Redis acknowledged, the list a failover must not lose.
"""

from __future__ import annotations

import selectors
import socket
import threading
import time
from dataclasses import dataclass, field

from hbdns_client import wire


@dataclass
class Beater:
    account_id: int
    key: bytes
    sources: tuple[str, ...] = ("127.0.0.1",)
    phase: float = 0.0  # seconds after the fleet's start of the first beat
    beats: int = 0  # sent so far
    stopped: bool = False


@dataclass(frozen=True)
class Sent:
    account_id: int
    counter: int
    source: str
    at: float  # time.monotonic() when sent


@dataclass
class Fleet:
    port: int
    beaters: list[Beater]
    interval: float = 5.0
    reply_timeout: float = 3.0
    sent: list[Sent] = field(default_factory=list)
    acked: list[Sent] = field(default_factory=list)  # in the order the replies came

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fleet", daemon=True)
        self._lock = threading.Lock()
        self._t0 = time.monotonic()  # set again when the thread starts

    def start(self) -> Fleet:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def halt(self, account_id: int) -> None:
        """That account sends no more beats (a customer whose line went down)."""
        with self._lock:
            for b in self.beaters:
                if b.account_id == account_id:
                    b.stopped = True

    def resume(self, account_id: int) -> None:
        """That account beats again (on its phase: no burst of the beats it missed)."""
        with self._lock:
            for b in self.beaters:
                if b.account_id == account_id:
                    b.beats = max(b.beats, int((time.monotonic() - self._t0 - b.phase) // self.interval) + 1)
                    b.stopped = False

    def acked_by(self, account_id: int) -> list[Sent]:
        with self._lock:
            return sorted((s for s in self.acked if s.account_id == account_id), key=lambda s: s.counter)

    def _run(self) -> None:
        sel = selectors.DefaultSelector()
        start = self._t0 = time.monotonic()
        last_counter: dict[int, int] = {}
        try:
            while not self._stop.is_set():
                now = time.monotonic()
                with self._lock:
                    due = [
                        b for b in self.beaters if not b.stopped and start + b.phase + b.beats * self.interval <= now
                    ]
                for b in due:
                    source = b.sources[b.beats % len(b.sources)]
                    b.beats += 1
                    counter = max(time.time_ns() // 1_000_000, last_counter.get(b.account_id, 0) + 1)
                    last_counter[b.account_id] = counter
                    data = wire.encode_beat(b.account_id, counter, b.key, wire.FLAG_REPLY)
                    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                    sock.bind((source, 0))
                    sock.setblocking(False)
                    sock.sendto(data, ("127.0.0.1", self.port))
                    sent = Sent(b.account_id, counter, source, now)
                    with self._lock:
                        self.sent.append(sent)
                    sel.register(sock, selectors.EVENT_READ, (sent, data, b.key))
                for key, _ in sel.select(timeout=0.01):
                    sock = key.fileobj
                    sent, data, hb_key = key.data
                    try:
                        reply = wire.parse_reply(sock.recv(64), data, hb_key)  # type: ignore[union-attr]
                        if reply.status == wire.STATUS_OK:
                            with self._lock:
                                self.acked.append(sent)
                    except (OSError, wire.WireError):
                        pass
                    sel.unregister(sock)
                    sock.close()  # type: ignore[union-attr]
                for key in list(sel.get_map().values()):
                    if key.data[0].at < now - self.reply_timeout:  # unanswered: the beat was dropped
                        sel.unregister(key.fileobj)
                        key.fileobj.close()  # type: ignore[union-attr]
        finally:
            for key in list(sel.get_map().values()):
                key.fileobj.close()  # type: ignore[union-attr]
            sel.close()
