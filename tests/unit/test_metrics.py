"""The shared metrics helper (hbdns.metrics), the listener's collector and the daemon loops' error
counter: addresses, the endpoint on a real socket, one registry per service in one process."""

from __future__ import annotations

import logging
import socket
import threading
import urllib.request

import pytest
from flask import Flask
from prometheus_client import CollectorRegistry, generate_latest

from hbdns import config
from hbdns import metrics as prom
from hbdns.loops import Loops
from hbdns.metrics import FlaskMetrics, LoopErrors, parse_metrics
from heartbeat_listener.metrics import _HELP, Metrics, checks_collector
from heartbeat_listener.preauth import PreAuth
from heartbeat_listener.recent import RecentBeats


def scrape(registry: CollectorRegistry) -> dict[str, float]:
    return parse_metrics(generate_latest(registry).decode())


@pytest.mark.parametrize(
    ("raw", "want"),
    [("127.0.0.1:9109", ("127.0.0.1", 9109)), ("[::1]:0", ("::1", 0)), (" 10.1.2.3:80 ", ("10.1.2.3", 80)), ("", None)],
)
def test_parse_addr(raw: str, want: tuple[str, int] | None) -> None:
    assert prom.parse_addr(raw) == want


@pytest.mark.parametrize("raw", ["9109", "localhost:9109", "::1:9109", "127.0.0.1:70000", "127.0.0.1:x", ":9109"])
def test_a_bad_metrics_address_is_refused_naming_the_variable(raw: str) -> None:
    with pytest.raises(config.ConfigError, match="HBDNS_SWEEPER_METRICS_ADDR"):
        config.load({"HBDNS_SWEEPER_METRICS_ADDR": raw})


def test_defaults_are_loopback_one_port_each_and_empty_is_off() -> None:
    s = config.load({})
    addrs = [
        s.backend_metrics_addr,
        s.update_metrics_addr,
        s.sweeper_metrics_addr,
        s.notifier_metrics_addr,
        s.admin_api_metrics_addr,
        s.status_metrics_addr,
        f"{s.metrics_host}:{s.metrics_port}",
    ]
    assert all(a.startswith("127.0.0.1:") for a in addrs) and len(set(addrs)) == len(addrs)
    assert config.load({"HBDNS_NOTIFIER_METRICS_ADDR": "[::1]:9000"}).notifier_metrics_addr == "[::1]:9000"
    assert prom.serve(CollectorRegistry(), "", "test") is None  # off: nothing bound


def test_the_endpoint_serves_its_registry_and_a_taken_port_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    registry = prom.new_registry()
    FlaskMetrics(registry, "hbdns_test")
    endpoint = prom.serve(registry, "127.0.0.1:0", "test")
    assert endpoint is not None
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{endpoint.port}/metrics", timeout=5) as resp:
            text = resp.read().decode()
        assert "# TYPE hbdns_test_requests_total counter" in text
        assert parse_metrics(text)["process_cpu_seconds_total"] > 0
        with caplog.at_level(logging.ERROR, logger="hbdns.metrics"):
            assert prom.serve_on(CollectorRegistry(), "127.0.0.1", endpoint.port, "second") is None
        assert "cannot open the metrics port" in caplog.text
    finally:
        endpoint.stop()
    with socket.socket() as s:  # stopped: the port is free again (a scrape's TIME_WAIT aside)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", endpoint.port))


def test_two_services_of_one_kind_in_one_process_count_apart() -> None:
    a, b = prom.new_registry(), prom.new_registry()
    fa, fb = FlaskMetrics(a, "hbdns_x"), FlaskMetrics(b, "hbdns_x")  # same names: no clash
    fa.requests.labels(endpoint="e", method="GET", status="200").inc()
    assert scrape(a)['hbdns_x_requests_total{endpoint="e",method="GET",status="200"}'] == 1
    assert 'hbdns_x_requests_total{endpoint="e",method="GET",status="200"}' not in scrape(b)
    assert fb.requests is not fa.requests


def test_flask_requests_by_route_method_and_status() -> None:
    app = Flask(__name__)
    registry = CollectorRegistry()
    FlaskMetrics(registry, "hbdns_t").install(app)
    app.add_url_rule("/ok/<name>", "ok", lambda name: "fine")
    client = app.test_client()
    for path in ("/ok/a", "/ok/b", "/missing", "/secret-token-path"):
        client.get(path)
    m = scrape(registry)
    assert m['hbdns_t_requests_total{endpoint="ok",method="GET",status="200"}'] == 2  # the route, not the path
    assert m['hbdns_t_requests_total{endpoint="none",method="GET",status="404"}'] == 2
    assert m['hbdns_t_request_seconds_count{endpoint="ok"}'] == 2
    assert not any("secret" in k for k in m)


def test_the_listener_keeps_every_metric_name() -> None:
    metrics = Metrics()
    registry = CollectorRegistry()
    metrics.register(registry)
    preauth, recent = PreAuth(lookup_rate=10, lookup_burst=10, unknown_ttl=1), RecentBeats(10, 10)
    metrics.collectors.append(checks_collector(preauth, recent, None))
    metrics.collectors.append(lambda: {"hbdns_heartbeat_kernel_drops_total": 3, "hbdns_heartbeat_held_beats": 2})
    metrics.add_packets({"accepted": 5, "bad_mac": 1})
    metrics.inc("hbdns_heartbeat_replies_total", 4)
    text = generate_latest(registry).decode()
    m = parse_metrics(text)
    assert m['hbdns_heartbeat_packets_total{result="accepted"}'] == 5
    assert m['hbdns_heartbeat_packets_total{result="bad_mac"}'] == 1
    assert m["hbdns_heartbeat_replies_total"] == 4
    assert m["hbdns_heartbeat_kernel_drops_total"] == 3
    assert m["hbdns_heartbeat_held_beats"] == 2 and "# TYPE hbdns_heartbeat_held_beats gauge" in text
    assert m["hbdns_heartbeat_redis_up"] == 1
    for name, (kind, _) in _HELP.items():  # every documented name, with its type
        if name in ("hbdns_heartbeat_account_cache_entries", "hbdns_heartbeat_id_ceiling_reads_total"):
            continue  # only with a cache / an id ceiling
        assert f"# TYPE {name} {kind}" in text, name
        assert any(k.partition("{")[0] == name for k in m), name


def test_a_failing_collector_costs_only_its_own_values() -> None:
    metrics = Metrics()
    registry = CollectorRegistry()
    metrics.register(registry)

    def broken() -> dict[str, float]:
        raise RuntimeError("gone")

    metrics.collectors.append(broken)
    assert scrape(registry)["hbdns_heartbeat_redis_up"] == 1


def test_loop_errors_are_counted_by_loop_and_kind() -> None:
    import redis

    registry = CollectorRegistry()
    loops = Loops(on_error=LoopErrors(registry, "hbdns_t"))
    calls = {"n": 0}
    done = threading.Event()

    def step() -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            raise redis.ConnectionError("down")
        if calls["n"] == 2:
            raise ValueError("bug")
        done.set()

    loops.start("work", step)
    assert done.wait(10)
    loops.stop()
    m = scrape(registry)
    assert m['hbdns_t_loop_errors_total{kind="redis",loop="work"}'] == 1
    assert m['hbdns_t_loop_errors_total{kind="bug",loop="work"}'] == 1
