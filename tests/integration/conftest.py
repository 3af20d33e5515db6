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


def _running(cls: Callable[..., Any]) -> Iterator[Callable[..., Any]]:
    """A factory ``start(settings, **kw)`` of started ``cls`` services, all stopped afterwards."""
    started: list[Any] = []

    def start(settings: config.Settings, **kw: Any) -> Any:
        service = cls(settings, **kw).start()
        started.append(service)
        return service

    yield start
    for service in started:
        service.stop()


@pytest.fixture
def notifiers() -> Iterator[Callable[..., Notifier]]:
    """``notifiers(settings, **kw)``: a started :class:`Notifier` (its loops in threads)."""
    yield from _running(Notifier)


@pytest.fixture
def sweepers() -> Iterator[Callable[..., SweeperService]]:
    """``sweepers(settings)``: a started :class:`SweeperService` (sweep and hints loops in threads)."""
    yield from _running(SweeperService)


@pytest.fixture
def procs() -> Iterator[list[Process]]:
    """Processes a test appends here are stopped (SIGTERM, then SIGKILL) at teardown."""
    started: list[Process] = []
    yield started
    for p in started:
        p.stop()
