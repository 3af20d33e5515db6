"""Shared fixtures. Real servers are started per session on free loopback ports; Redis is flushed per test."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import fakeredis
import pytest
import redis

from hbdns import config
from hbdns.connection import connect
from hbdns.store import Store
from tests.support.servers import RedisServer
from tests.support.sinks import HttpSink, SmtpSink

if TYPE_CHECKING:
    from tests.support.pdns import PdnsServer


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-snapshots",
        action="store_true",
        default=False,
        help="write the snapshot files under tests/snapshots/ anew instead of comparing with them",
    )


@pytest.fixture
def update_snapshots(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--update-snapshots"))


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(Path(tmp_path_factory.mktemp("redis")))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    return redis_server.url


@pytest.fixture
def real_redis(redis_server: RedisServer) -> Iterator[redis.Redis]:
    """A client on the session's real redis-server, flushed before each test."""
    client = connect(redis_server.url)
    client.flushall()
    yield client
    client.close()


@pytest.fixture
def fake_redis() -> redis.Redis:
    return fakeredis.FakeRedis(decode_responses=True)


@pytest.fixture
def settings() -> config.Settings:
    return config.load({})


@pytest.fixture
def store(real_redis: redis.Redis, settings: config.Settings) -> Store:
    return Store(real_redis, settings)


# --- PowerDNS (pdns_backend helper) -------------------------------------------------------------


@pytest.fixture
def pdns_factory(redis_server: RedisServer, tmp_path: Path) -> Iterator[Callable[..., PdnsServer]]:
    """Start backend + pdns_server (after the test created its zones: pdns' zone cache loads at start).

    ``pdns_factory(transport="http"|"unix", *, redis_url=None, extra=None, backend_env=None)`` returns
    a running :class:`~tests.support.pdns.PdnsServer` (``.query()``, ``.port``, ``.purge()``,
    ``.backend_process``). ``pdns.writer_env`` holds the ``HBDNS_PDNS_API_URLS``/``HBDNS_PDNS_API_KEY``
    a writer needs to purge it. Everything started is stopped at teardown.
    """
    from tests.support.pdns import started_pdns, stop_all

    started: list[PdnsServer] = []

    def make(
        transport: str = "http",
        *,
        redis_url: str | None = None,
        extra: dict[str, Any] | None = None,
        backend_env: dict[str, str] | None = None,
    ) -> PdnsServer:
        workdir = tmp_path / f"pdns{len(started)}"
        pdns = started_pdns(workdir, redis_url or redis_server.url, transport, extra=extra, backend_env=backend_env)
        started.append(pdns)
        return pdns

    yield make
    for pdns in reversed(started):
        stop_all(pdns)


@pytest.fixture
def smtp() -> Iterator[SmtpSink]:
    """A real SMTP server (aiosmtpd) on a free loopback port."""
    sink = SmtpSink().start()
    yield sink
    sink.stop()


@pytest.fixture
def http() -> Iterator[HttpSink]:
    """A local HTTP receiver (SMS gateway, webhook) on a free loopback port."""
    sink = HttpSink().start()
    yield sink
    sink.stop()
