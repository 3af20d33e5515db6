"""The daemon loops of the sweeper and the notifier (hbdns/loops.py): a Redis outage only pauses a
loop, a bug in a step does not end it, and a signal only sets the stop flag."""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Iterator

import pytest
import redis

from hbdns.loops import Loops, run_loop
from tests.support.servers import wait_for


@pytest.fixture
def restore_signals() -> Iterator[None]:
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)


def test_redis_errors_pause_the_loop_and_a_bug_does_not_end_it(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="hbdns.loops")
    stop = threading.Event()
    failures = [redis.ConnectionError("down"), redis.TimeoutError("slow"), ValueError("bug")]
    calls: list[int] = []

    def step() -> None:
        calls.append(1)
        if failures:
            raise failures.pop(0)
        if len(calls) >= 5:
            stop.set()

    t = threading.Thread(target=run_loop, args=("test", step, 0.0, stop), daemon=True)
    t.start()
    t.join(10)
    assert not t.is_alive() and len(calls) == 5  # every failure was retried, then the loop ran on
    messages = [r.getMessage() for r in caplog.records]
    assert messages.count("redis unavailable, retrying") == 1  # rate-limited: the second is held back
    assert "loop step failed" in messages and "redis reachable again" in messages


def test_loops_run_until_stopped_and_stop_joins_them() -> None:
    loops = Loops()
    ticks = {"a": 0, "b": 0}

    def tick(name: str) -> None:
        ticks[name] += 1

    loops.start("a", lambda: tick("a"), 0.01)
    loops.start("b", lambda: tick("b"), 0.01)
    assert loops.names == ["a", "b"]
    wait_for(lambda: ticks["a"] >= 3 and ticks["b"] >= 3, 5, what="both loops ticking")
    loops.stop(timeout=5)
    assert loops.names == [] and loops.stop_event.is_set()
    assert not [t for t in threading.enumerate() if t.name in ("a", "b")]  # joined, not left running


def test_serve_stops_on_sigterm_and_calls_stop(restore_signals: None) -> None:
    loops = Loops()
    done: list[str] = []

    def start() -> None:
        done.append("start")
        os.kill(os.getpid(), signal.SIGTERM)  # only sets the flag: the test process lives on

    assert loops.serve(start, lambda: done.append("stop")) == 0
    assert done == ["start", "stop"] and loops.stop_event.is_set()
