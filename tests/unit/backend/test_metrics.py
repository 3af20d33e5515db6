"""The backend's metrics: each lookup counted by result, its latency, the other calls, Redis errors."""

from __future__ import annotations

import fakeredis
import redis
from prometheus_client import CollectorRegistry, generate_latest

from hbdns import config
from hbdns.liveness import BeatRequest
from hbdns.metrics import parse_metrics
from hbdns.store import Store
from pdns_backend.backend import Backend, BackendError
from pdns_backend.metrics import BackendMetrics


def scrape(registry: CollectorRegistry) -> dict[str, float]:
    return parse_metrics(generate_latest(registry).decode())


def test_lookups_by_result_latency_calls_and_redis_errors(
    store: Store, r: redis.Redis, settings: config.Settings, server: fakeredis.FakeServer
) -> None:
    live = store.add_account(store.new_account("live.example.com", "heartbeat-b"))
    store.add_account(store.new_account("gone.example.com", "heartbeat-b"))
    store.liveness.beat(BeatRequest(account_id=live.id, zone=live.zone, expiry_ms=60_000, ipv4="198.51.100.9"))
    registry = CollectorRegistry()
    backend = Backend(r, settings.plan_table(), zone_max_age=0, metrics=BackendMetrics(registry))
    assert backend.lookup("live.example.com.", "A")
    assert backend.lookup("gone.example.com.", "A")  # the neutral address
    assert backend.lookup("example.com.", "SOA")
    assert backend.lookup("nothing.example.com.", "A") is False
    assert backend.lookup("elsewhere.test.", "A") is False
    backend.lookup_batch([("live.example.com", "ANY"), ("gone.example.com", "ANY")])  # one call of two
    backend.call("getAllDomains", {})
    m = scrape(registry)
    assert m['hbdns_backend_lookups_total{result="live"}'] == 2
    assert m['hbdns_backend_lookups_total{result="neutral"}'] == 2
    assert m['hbdns_backend_lookups_total{result="zone"}'] == 1
    assert m['hbdns_backend_lookups_total{result="empty"}'] == 2
    assert m['hbdns_backend_lookups_total{result="error"}'] == 0
    assert m["hbdns_backend_lookup_seconds_count"] == 6  # per call
    assert m['hbdns_backend_calls_total{method="getAllDomains",result="ok"}'] == 1
    assert m["hbdns_backend_redis_up"] == 1 and m["hbdns_backend_redis_errors_total"] == 0

    server.connected = False
    for _ in range(3):
        try:
            backend.lookup("live.example.com.", "A")
        except BackendError:
            pass
    try:
        backend.call("getAllDomains", {})
    except BackendError:
        pass
    m = scrape(registry)
    assert m['hbdns_backend_lookups_total{result="error"}'] == 3
    assert m['hbdns_backend_calls_total{method="getAllDomains",result="error"}'] == 1
    assert m["hbdns_backend_redis_errors_total"] == 4
    assert m["hbdns_backend_redis_up"] == 0
    server.connected = True
    assert backend.lookup("live.example.com.", "A")
    assert scrape(registry)["hbdns_backend_redis_up"] == 1
