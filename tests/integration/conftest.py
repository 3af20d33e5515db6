"""Fixtures shared by the integration modules: the real listener process (one per module) with a
heartbeat account (with an alias) in ``ZONE`` per test; sweeper and notifier services started in
the test process; service processes stopped at teardown."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from hbdns import config
from hbdns.model import Account, Zone
from hbdns.store import Store
from notifier.main import Notifier
from sweeper.main import SweeperService
from tests.support.listener import ZONE, Listener
from tests.support.servers import Process, RedisServer


@pytest.fixture(scope="module")
def listener(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Listener]:
    lst = Listener(tmp_path_factory.mktemp("listener"), redis_server.url).start()
    yield lst
    lst.stop()


@pytest.fixture
def account(store: Store) -> Account:
    store.add_zone(Zone(ZONE, ("ns1.test",), "hostmaster.test", "192.0.2.1"))
    return store.add_account(store.new_account(f"h.{ZONE}", "heartbeat-c", aliases=[f"mx.{ZONE}"]))


@pytest.fixture
def notifiers() -> Iterator[Callable[..., Notifier]]:
    """``notifiers(settings, **kw)``: a started :class:`Notifier` (its loops in threads)."""
    started: list[Notifier] = []

    def start(settings: config.Settings, **kw: Any) -> Notifier:
        n = Notifier(settings, **kw).start()
        started.append(n)
        return n

    yield start
    for n in started:
        n.stop()


@pytest.fixture
def sweepers() -> Iterator[Callable[..., SweeperService]]:
    """``sweepers(settings)``: a started :class:`SweeperService` (sweep and hints loops in threads)."""
    started: list[SweeperService] = []

    def start(settings: config.Settings, **kw: Any) -> SweeperService:
        s = SweeperService(settings, **kw).start()
        started.append(s)
        return s

    yield start
    for s in started:
        s.stop()


@pytest.fixture
def procs() -> Iterator[list[Process]]:
    """Processes a test appends here are stopped (SIGTERM, then SIGKILL) at teardown."""
    started: list[Process] = []
    yield started
    for p in started:
        p.stop()
