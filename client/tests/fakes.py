"""Stand-ins the client's tests share: a loopback UDP server that answers like the listener."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable

from hbdns_client import wire

KEY = bytes(range(32))
KEY_HEX = KEY.hex()

Answer = Callable[[wire.Beat, str], "bytes | None"]


class FakeServer:
    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.05)
        self.port = self.sock.getsockname()[1]
        self.beats: list[wire.Beat] = []
        self._stop = False
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop:
            try:
                data, addr = self.sock.recvfrom(64)
            except (TimeoutError, socket.timeout):
                continue
            except OSError:
                return
            beat = wire.parse_beat(data)
            self.beats.append(beat)
            reply = self.answer(beat, addr[0])
            if reply is not None:
                self.sock.sendto(reply, addr)

    def close(self) -> None:
        self._stop = True
        self._thread.join(2)
        self.sock.close()


def accept(beat: wire.Beat, source: str) -> bytes:
    """What the listener answers to an accepted beat."""
    status = wire.STATUS_OFFLINE_OK if beat.offline else wire.STATUS_OK
    return wire.encode_reply(beat, status, source, KEY)
