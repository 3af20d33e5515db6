"""Read-your-writes through pdns with the backend's answer cache on (its default).

A writer changes an account's address (the beat script, on its own connection) and at once asks
pdns, 10,000 times over the unix connector (the shipped one) and 3,000 over HTTP (its threads make
the other interleavings; fewer to keep ``make test`` short): every answer must be the new
address. pdns' own caches are off here, which stands in for the writer's purge (hbdns.purge), so
every query reaches the backend; a second query per tenth change must then be answered from the
backend's cache, and its counters (``GET /stats``) show that it was.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from hbdns import config
from hbdns.connection import connect
from hbdns.liveness import BeatRequest
from hbdns.store import Store
from tests.support.pdns import PdnsServer, answer_texts, started_pdns, stop_all
from tests.support.servers import RedisServer
from tests.support.zones import APEX, EXAMPLE_ZONE

pytestmark = pytest.mark.pdns

CHANGES = {"unix": 10_000, "http": 3_000}
CACHES_OFF = {"cache-ttl": "0", "query-cache-ttl": "0", "negquery-cache-ttl": "0"}


@pytest.fixture(scope="module")
def rs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(Path(tmp_path_factory.mktemp("ryw-redis")), unix_socket=True).start()
    r = connect(server.url)
    Store(r, config.load({})).add_zone(EXAMPLE_ZONE)  # before pdns starts: it serves the zones it finds then
    r.close()
    yield server
    server.stop()


@pytest.fixture(params=["unix", "http"])
def pdns(request: pytest.FixtureRequest, rs: RedisServer, tmp_path: Path) -> Iterator[PdnsServer]:
    url = rs.unix_url if request.param == "unix" else rs.url
    server = started_pdns(tmp_path, url, request.param, extra=CACHES_OFF)
    yield server
    stop_all(server)


def cache_stats(pdns: PdnsServer) -> dict[str, int]:
    assert pdns.backend_process is not None
    with urllib.request.urlopen(pdns.backend_process.url + "/stats", timeout=5) as resp:
        return dict(json.load(resp)["answer_cache"])


def test_every_answer_after_a_write_is_the_new_one(pdns: PdnsServer, rs: RedisServer) -> None:
    r = connect(rs.url)
    store = Store(r, config.load({}))
    transport = pdns.backend_process.transport if pdns.backend_process else "x"
    name = f"ryw-{transport}.{APEX}"
    acct = store.add_account(store.new_account(name, "heartbeat-c"))
    before = cache_stats(pdns)
    stale: list[tuple[str, set[str]]] = []
    changes = CHANGES[transport]
    for n in range(changes):
        ip = f"10.{n // 65536}.{n // 256 % 256}.{n % 256}"
        store.liveness.beat(BeatRequest(acct.id, APEX, 3_600_000, ipv4=ip))
        got = answer_texts(pdns.query(name + ".", "A"), name + ".", "A")
        if got != {ip}:
            stale.append((ip, got))
        if n % 10 == 0:  # again, from the backend's cache this time
            again = answer_texts(pdns.query(name + ".", "A"), name + ".", "A")
            if again != {ip}:
                stale.append((ip, again))
    r.close()
    after = cache_stats(pdns)
    assert stale == [], f"{len(stale)} stale answers, first {stale[:3]}"
    # the cache was in play: most changes dropped a cached answer, every tenth query was a hit
    assert after["invalidations"] - before["invalidations"] >= changes * 0.9
    assert after["hits"] - before["hits"] >= changes // 10
