"""Looking the server name up, with a deadline, so nothing the network does can hang the client.

``getaddrinfo`` cannot be interrupted and can block for the resolver's whole timeout (seconds to
minutes while the line is still coming up). It runs in a worker thread; the caller waits at most
``timeout`` (and less if it is asked to stop), and at most one lookup is ever in flight: a caller
that finds the previous one still running is told so instead of starting another.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable

Target = tuple[object, ...]  # a socket address: (host, port) or (host, port, flowinfo, scope_id)


class NameNotResolved(OSError):
    """The server name has no usable address right now (no such name, no DNS, timeout)."""


class Resolver:
    """``lookup()`` -> {address family: the first socket address of that family}."""

    def __init__(
        self,
        host: str,
        port: int,
        source: str = "",
        timeout: float = 5.0,
        getaddrinfo: Callable[..., list[tuple[object, ...]]] | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.family = socket.AF_UNSPEC
        if source:  # a pinned source address pins the family
            self.family = socket.AF_INET6 if ":" in source else socket.AF_INET
        self.timeout = timeout
        self._getaddrinfo = getaddrinfo
        self._busy: threading.Thread | None = None

    def lookup(self, stop: Callable[[], bool] = lambda: False, timeout: float | None = None) -> dict[int, Target]:
        """Raise :class:`NameNotResolved` if the name has no IPv4/IPv6 address within ``timeout``."""
        if self._busy is not None and self._busy.is_alive():
            raise NameNotResolved(f"cannot resolve {self.host}: the previous lookup is still waiting for DNS")
        result: dict[str, object] = {}
        done = threading.Event()

        def work() -> None:
            # looked up at call time, so a test's monkeypatch of socket.getaddrinfo applies
            resolve = self._getaddrinfo or socket.getaddrinfo
            try:
                result["infos"] = resolve(self.host, self.port, self.family, socket.SOCK_DGRAM)
            except (OSError, UnicodeError) as exc:  # gaierror, or a name IDNA cannot encode
                result["error"] = exc
            done.set()

        worker = threading.Thread(target=work, name="hbdns-client-resolve", daemon=True)
        worker.start()
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while not done.wait(min(0.05, max(0.0, deadline - time.monotonic()))):
            if stop() or time.monotonic() >= deadline:
                self._busy = worker
                raise NameNotResolved(f"cannot resolve {self.host}: no answer from DNS in time")
        error = result.get("error")
        if error is not None:
            reason = getattr(error, "strerror", None) or str(error)
            raise NameNotResolved(f"cannot resolve {self.host}: {reason}")
        wanted: dict[int, Target] = {}
        for info in result.get("infos") or ():  # type: ignore[attr-defined]
            if info[0] in (socket.AF_INET, socket.AF_INET6):
                wanted.setdefault(int(info[0]), tuple(info[4]))
        if not wanted:
            raise NameNotResolved(f"cannot resolve {self.host}: no IPv4 or IPv6 address")
        return wanted
