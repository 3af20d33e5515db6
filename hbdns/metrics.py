"""Prometheus metrics for every service: a registry of its own, and its ``/metrics`` endpoint.

Each service builds one :class:`~prometheus_client.CollectorRegistry` in ``main()`` (never the
library's global one: tests run several services, or the same one twice, in one process) and hands
it to the objects that count; :func:`serve` then exposes it on the private address its typed
setting names (``HBDNS_<SERVICE>_METRICS_ADDR``, loopback by default, empty = off). A port already
taken is logged and the service runs on without metrics: DNS and beats matter more than a scrape,
and Prometheus' ``up`` shows the gap. Counting is the service's job; this module only knows the
shapes every service shares: Flask request counts and the errors of the daemon loops.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics
from prometheus_client.exposition import start_http_server
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.process_collector import ProcessCollector

log = logging.getLogger(__name__)

# Request and lookup latencies: a cache miss of the backend takes well under a millisecond, an
# update with its scrypt check tens of milliseconds; 5 s is where clients give up.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


def new_registry() -> CollectorRegistry:
    """A service's registry, with the process' CPU, memory and open files (``process_*``).

    Counters then export no ``*_created`` series (a process-wide switch of prometheus_client, set
    from ``main()``): a gauge per labelled counter that dashboards and alerts here never read."""
    disable_created_metrics()
    registry = CollectorRegistry(auto_describe=True)
    ProcessCollector(registry=registry)
    return registry


def parse_addr(raw: str) -> tuple[str, int] | None:
    """``host:port`` or ``[v6]:port`` -> (host, port); empty -> None (off). Raises ValueError."""
    import ipaddress

    value = raw.strip()
    if not value:
        return None
    host, sep, port_text = value.rpartition(":")
    if not sep or not host:
        raise ValueError("expected host:port, [v6]:port or empty (off)")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError("an IPv6 address needs brackets: [::1]:9109")
    try:
        host = str(ipaddress.ip_address(host))
    except ValueError:
        raise ValueError(f"{host!r} is not an IP address") from None
    port = int(port_text)
    if not 0 <= port <= 65535:
        raise ValueError("port must be 0..65535")
    return host, port


@dataclass
class Endpoint:
    """A running ``/metrics`` HTTP server (a daemon thread)."""

    server: Any
    thread: threading.Thread

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def serve(registry: CollectorRegistry, addr: str, service: str) -> Endpoint | None:
    """Serve ``registry`` on ``addr`` (a validated setting); None when off or the port is taken."""
    where = parse_addr(addr)
    if where is None:
        return None
    return serve_on(registry, where[0], where[1], service)


def serve_on(registry: CollectorRegistry, host: str, port: int, service: str) -> Endpoint | None:
    """Serve ``registry`` on ``host``:``port`` (port 0: any free one); None when the port is taken."""
    addr = f"{host}:{port}"
    try:
        server, thread = start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        log.error(
            "cannot open the metrics port; running without metrics",
            extra={"service": service, "address": addr, "error": str(exc)},
        )
        return None
    endpoint = Endpoint(server=server, thread=thread)
    log.info("metrics", extra={"service": service, "address": f"{host}:{endpoint.port}"})
    return endpoint


def stop(endpoint: Endpoint | None) -> None:
    if endpoint is not None:
        endpoint.stop()


def parse_metrics(text: str) -> dict[str, float]:
    """Prometheus text -> {'name{k="v",...}': value}, labels sorted (for tests and benchmarks)."""
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[sample_key(s.name, s.labels)] = float(s.value)
    return out


def sample_key(name: str, labels: Mapping[str, str] | None = None) -> str:
    if not labels:
        return name
    inner = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    return f"{name}{{{inner}}}"


class LoopErrors:
    """``<prefix>_loop_errors_total{loop, kind}``: a daemon loop's step failed (``redis`` or ``bug``)."""

    def __init__(self, registry: CollectorRegistry, prefix: str) -> None:
        self.counter = Counter(
            f"{prefix}_loop_errors",
            "Failed steps of a daemon loop: redis (unreachable, retried with backoff) or bug.",
            ["loop", "kind"],
            registry=registry,
        )

    def __call__(self, loop: str, kind: str) -> None:
        self.counter.labels(loop=loop, kind=kind).inc()


class FlaskMetrics:
    """``<prefix>_requests_total{endpoint, method, status}`` and ``<prefix>_request_seconds{endpoint}``
    for a Flask app; :meth:`install` adds the hooks (the route's name, never the path: bounded)."""

    def __init__(self, registry: CollectorRegistry, prefix: str) -> None:
        self.requests = Counter(
            f"{prefix}_requests",
            "HTTP requests answered, by route (endpoint), method and status code.",
            ["endpoint", "method", "status"],
            registry=registry,
        )
        self.seconds = Histogram(
            f"{prefix}_request_seconds",
            "Time to answer a request, by route.",
            ["endpoint"],
            registry=registry,
            buckets=LATENCY_BUCKETS,
        )

    def install(self, app: Any) -> None:
        from flask import g, request

        @app.before_request
        def _started() -> None:
            g.hbdns_metrics_started = time.perf_counter()

        @app.after_request
        def _answered(response: Any) -> Any:
            endpoint = request.endpoint or "none"
            method = request.method if request.method in _METHODS else "other"
            self.requests.labels(endpoint=endpoint, method=method, status=str(response.status_code)).inc()
            started = g.get("hbdns_metrics_started")
            if started is not None:
                self.seconds.labels(endpoint=endpoint).observe(time.perf_counter() - started)
            return response


_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})
