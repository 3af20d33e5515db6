"""Fixtures of the modules that drive the real listener process: one listener per module, and a
heartbeat account (with an alias) in ``ZONE`` per test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from hbdns.model import Account, Zone
from hbdns.store import Store
from tests.support.listener import ZONE, Listener
from tests.support.servers import RedisServer


@pytest.fixture(scope="module")
def listener(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Listener]:
    lst = Listener(tmp_path_factory.mktemp("listener"), redis_server.url).start()
    yield lst
    lst.stop()


@pytest.fixture
def account(store: Store) -> Account:
    store.add_zone(Zone(ZONE, ("ns1.test",), "hostmaster.test", "192.0.2.1"))
    return store.add_account(store.new_account(f"h.{ZONE}", "heartbeat-c", aliases=[f"mx.{ZONE}"]))
