"""Stop requests on POSIX and on Windows (its branches run here with the platform passed in)."""

from __future__ import annotations

import os
import select
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from hbdns_client import stopping
from hbdns_client.stopping import CTRL_C_EVENT, CTRL_CLOSE_EVENT, CTRL_SHUTDOWN_EVENT, Stopper


@pytest.fixture
def stopper() -> Iterator[Stopper]:
    s = Stopper()
    yield s
    s.close()


def readable(s: Stopper, timeout: float = 0.0) -> bool:
    return bool(select.select([s], [], [], timeout)[0])


def test_a_request_makes_the_stop_socket_readable(stopper: Stopper) -> None:
    assert not readable(stopper) and not stopper.requested
    stopper.request()
    stopper.request()  # twice is harmless
    assert readable(stopper) and stopper.requested


def test_signals_per_platform(monkeypatch: pytest.MonkeyPatch) -> None:
    assert stopping.stop_signals("posix") == [signal.SIGTERM, signal.SIGINT]
    monkeypatch.setattr(signal, "SIGBREAK", 21, raising=False)  # Windows' Ctrl-Break
    assert stopping.stop_signals("nt") == [signal.SIGINT, 21]  # Windows never delivers SIGTERM


@pytest.mark.skipif(os.name == "nt", reason="sends itself SIGTERM")
def test_sigterm_only_sets_the_flag_and_wakes_the_loop(stopper: Stopper) -> None:
    before = signal.getsignal(signal.SIGTERM)
    stopping.install(stopper, "posix")
    os.kill(os.getpid(), signal.SIGTERM)
    assert readable(stopper, 2.0) and stopper.requested
    stopper.close()
    assert signal.getsignal(signal.SIGTERM) == before  # restored


@pytest.mark.skipif(os.name == "nt", reason="stands SIGUSR1 in for SIGBREAK")
def test_windows_install_routes_ctrl_break_and_registers_a_console_handler(monkeypatch: pytest.MonkeyPatch) -> None:
    """os.name == "nt": SIGINT and SIGBREAK (here SIGUSR1 stands in for it), plus the console handler."""
    monkeypatch.setattr(signal, "SIGBREAK", signal.SIGUSR1, raising=False)
    registered: list[Stopper] = []
    s = Stopper()
    term_before = signal.getsignal(signal.SIGTERM)
    try:

        def console(st: Stopper) -> bool:
            registered.append(st)
            return True

        stopping.install(s, "nt", console=console)
        assert registered == [s]
        assert signal.getsignal(signal.SIGTERM) == term_before  # not touched on Windows
        os.kill(os.getpid(), signal.SIGUSR1)
        assert readable(s, 2.0) and s.requested
    finally:
        s.close()
    assert signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL


class FakeKernel32:
    def __init__(self, ok: bool = True) -> None:
        self.ok = ok
        self.calls: list[tuple[Any, bool]] = []

    def SetConsoleCtrlHandler(self, callback: Any, add: bool) -> int:
        self.calls.append((callback, add))
        return 1 if self.ok else 0


def test_console_handler_holds_windows_off_until_the_offline_beat_went_out(stopper: Stopper) -> None:
    kernel32 = FakeKernel32()
    assert stopping.console_handler(stopper, kernel32=kernel32, functype=lambda f: f)
    [(handler, added)] = kernel32.calls
    assert added
    returned: list[int] = []
    shutdown = threading.Thread(target=lambda: returned.append(handler(CTRL_SHUTDOWN_EVENT)))
    shutdown.start()  # Windows calls the handler in a thread of its own
    assert readable(stopper, 2.0) and stopper.requested
    time.sleep(0.2)
    assert shutdown.is_alive() and not returned  # Windows would end the process when it returns
    stopper.finished()  # the loop sent the OFFLINE beat
    shutdown.join(2)
    assert returned == [1]
    assert handler(CTRL_C_EVENT) == 1  # Ctrl-C: no wait (the process is not ended by Windows)
    stopper.close()
    assert kernel32.calls[-1] == (handler, False)  # unregistered


def test_console_handler_gives_up_waiting_after_its_limit() -> None:
    s = Stopper()
    handler = stopping.make_console_handler(s, wait=0.1)
    started = time.monotonic()
    assert handler(CTRL_CLOSE_EVENT) == 1 and s.requested
    assert time.monotonic() - started < 1.5
    s.close()


def test_console_handler_not_available(stopper: Stopper) -> None:
    assert not stopping.console_handler(stopper, kernel32=FakeKernel32(ok=False), functype=lambda f: f)
    assert not stopping.console_handler(stopper)  # no ctypes.windll here: reported, not raised
