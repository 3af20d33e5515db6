"""Fixtures of the client's own tests: no server code, no Redis, only loopback sockets.

``fake_server`` starts a :class:`fakes.FakeServer`: a UDP socket on 127.0.0.1 that answers beats the
way the listener would, with the real wire format, from a thread. Each datagram is passed to
``answer(beat, source)``, which returns the reply bytes or None (silence). The tests that need the
real listener and Redis are in tests/integration/.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from fakes import Answer, FakeServer, accept


@pytest.fixture
def fake_server() -> Iterator[Callable[[Answer], FakeServer]]:
    started: list[FakeServer] = []

    def start(answer: Answer = accept) -> FakeServer:
        server = FakeServer(answer)
        started.append(server)
        return server

    yield start
    for server in started:
        server.close()
