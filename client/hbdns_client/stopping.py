"""Stop requests: SIGTERM/SIGINT on POSIX; Ctrl-C, Ctrl-Break, console close, logoff and shutdown on Windows.

Whatever asks the client to stop only sets a flag and makes a socket readable; the loop, which waits
on that socket in every ``select``, then sends the OFFLINE beat and returns. A socket (from
``socketpair``), not a pipe: Windows' ``select`` and ``signal.set_wakeup_fd`` take sockets only.

Windows has no SIGTERM from outside. Ctrl-C and Ctrl-Break reach Python's SIGINT/SIGBREAK handlers,
but for console close, logoff and shutdown the C runtime's handler returns at once and Windows ends
the process, so no Python signal handler ever runs. :func:`install` therefore also registers a
console control handler (``SetConsoleCtrlHandler`` through ctypes, standard library): it requests
the stop and then holds Windows off until the OFFLINE beat went out (:meth:`Stopper.finished`) or
:data:`CONSOLE_WAIT` passed (Windows allows a console process about 5 s).
"""

from __future__ import annotations

import functools
import logging
import os
import signal
import socket
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

log = logging.getLogger("hbdns_client")

CTRL_C_EVENT, CTRL_BREAK_EVENT, CTRL_CLOSE_EVENT, CTRL_LOGOFF_EVENT, CTRL_SHUTDOWN_EVENT = 0, 1, 2, 5, 6
ENDING_EVENTS = (CTRL_CLOSE_EVENT, CTRL_LOGOFF_EVENT, CTRL_SHUTDOWN_EVENT)  # the process ends after the handler
CONSOLE_WAIT = 4.5  # seconds a console handler holds Windows off for the OFFLINE beat


class Stopper:
    """A stop flag with a socket that becomes readable when it is set (``select`` on :meth:`fileno`)."""

    def __init__(self) -> None:
        self._r, self._w = socket.socketpair()
        self._r.setblocking(False)
        self._w.setblocking(False)
        self.requested = False
        self.done = threading.Event()  # the OFFLINE beat went out (or was given up): the process may end
        self._restore: list[Callable[[], None]] = []
        self._keep: Any = None  # the ctypes callback: it must outlive its registration

    def fileno(self) -> int:
        return self._r.fileno()

    def request(self) -> None:
        self.requested = True
        try:
            self._w.send(b"\0")
        except OSError:  # buffer full (already readable) or closed: nothing more to do
            pass

    def handle_signal(self, signum: int, frame: FrameType | None) -> None:
        self.request()

    def finished(self) -> None:
        self.done.set()

    def close(self) -> None:
        for undo in reversed(self._restore):
            undo()
        self._restore.clear()
        self._r.close()
        self._w.close()


def stop_signals(platform: str = os.name) -> list[int]:
    """The signals that mean "stop": SIGTERM and SIGINT; on Windows SIGINT and SIGBREAK (Ctrl-Break)."""
    if platform == "nt":
        return [signal.SIGINT, *([signal.SIGBREAK] if hasattr(signal, "SIGBREAK") else [])]
    return [signal.SIGTERM, signal.SIGINT]


def install(stopper: Stopper, platform: str = os.name, console: Callable[[Stopper], bool] | None = None) -> None:
    """Route every stop request of ``platform`` (``os.name``) to ``stopper`` (call from the main thread)."""
    previous_fd = signal.set_wakeup_fd(stopper._w.fileno(), warn_on_full_buffer=False)
    stopper._restore.append(lambda: _quietly(signal.set_wakeup_fd, previous_fd))
    for signum in stop_signals(platform):
        old = signal.signal(signum, stopper.handle_signal)
        stopper._restore.append(functools.partial(_quietly, signal.signal, signum, old))
    if platform == "nt":
        register = console or console_handler
        if not register(stopper):
            log.warning("no console control handler: closing the console or shutting down sends no offline beat")


def console_handler(stopper: Stopper, kernel32: Any = None, functype: Any = None) -> bool:
    """Register :func:`make_console_handler` with ``SetConsoleCtrlHandler`` (Windows only)."""
    try:
        import ctypes

        functype = functype or ctypes.WINFUNCTYPE(ctypes.c_int, ctypes.c_uint)  # type: ignore[attr-defined]
        kernel32 = kernel32 or ctypes.windll.kernel32  # type: ignore[attr-defined]
    except (ImportError, AttributeError, OSError):
        return False
    callback = functype(make_console_handler(stopper))
    if not kernel32.SetConsoleCtrlHandler(callback, True):
        return False
    stopper._keep = callback
    stopper._restore.append(lambda: _quietly(kernel32.SetConsoleCtrlHandler, callback, False))
    return True


def _quietly(undo: Callable[..., Any], *args: Any) -> None:
    undo(*args)


def make_console_handler(stopper: Stopper, wait: float = CONSOLE_WAIT) -> Callable[[int], int]:
    """The console control handler: Windows calls it in a thread of its own, with the event's number."""

    def handler(event: int) -> int:
        stopper.request()
        if event in ENDING_EVENTS:
            stopper.done.wait(wait)  # when this returns, Windows ends the process
        return 1  # handled: no other handler (and not the default one that ends the process at once)

    return handler
