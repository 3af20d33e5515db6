"""The backend's unit fixtures: fakeredis (one server per test, so a test can take it down), and a
store holding the zone ``example.com`` that every backend test answers from."""

from __future__ import annotations

import json

import fakeredis
import pytest
import redis

from hbdns import config
from hbdns.store import Store
from tests.support.clock import Clock
from tests.support.zones import EXAMPLE_ZONE


@pytest.fixture
def server() -> fakeredis.FakeServer:
    return fakeredis.FakeServer()


@pytest.fixture
def r(server: fakeredis.FakeServer) -> redis.Redis:
    return fakeredis.FakeRedis(server=server, decode_responses=True)


@pytest.fixture
def settings() -> config.Settings:
    """The shipped plans plus ``slow``, an expiry plan with its own TTL."""
    return config.load(
        {"HBDNS_PLANS": json.dumps({"slow": {"kind": "expiry", "interval": 600, "misses": 1, "ttl": 300}})}
    )


@pytest.fixture
def store(r: redis.Redis, settings: config.Settings) -> Store:
    s = Store(r, settings)
    s.add_zone(EXAMPLE_ZONE)
    return s


@pytest.fixture
def clock() -> Clock:
    return Clock(1000.0)
