"""What the backend's metrics cost per lookup call: ``python -m bench.backend_metrics_cost``.

Times :meth:`pdns_backend.backend.Backend.lookup_batch` for one live name on a throw-away
redis-server, with the metrics (a counter by result and the latency histogram) and, in the same
run, with them replaced by no-ops: median of 21 alternating rounds of 1000 calls. This is the
cheapest real lookup (one name, one Redis round trip), so the share is an upper bound. On a busy
machine that difference drowns in noise, so the metric calls alone are timed too (median of 5).
"""

from __future__ import annotations

import statistics
import tempfile
import time
import timeit
from pathlib import Path
from typing import Any

from hbdns import config
from hbdns.liveness import BeatRequest
from hbdns.store import Store
from pdns_backend.app import backend_redis
from pdns_backend.backend import Backend
from tests.support.servers import RedisServer
from tests.support.zones import EXAMPLE_ZONE


class _Null:
    def inc(self, n: float = 1) -> None:
        pass

    def observe(self, value: float) -> None:
        pass


def metric_calls_us(repeats: int = 5, calls: int = 200_000) -> float:
    """Median microseconds of what a lookup call adds: one counter increment, one observation."""
    from prometheus_client import CollectorRegistry

    from pdns_backend.metrics import BackendMetrics

    m = BackendMetrics(CollectorRegistry())
    child, hist = m.lookups["live"], m.lookup_seconds

    def count() -> None:
        child.inc()
        hist.observe(0.0003)

    return statistics.median(timeit.timeit(count, number=calls) / calls * 1e6 for _ in range(repeats))


def measure(rounds: int = 21, calls: int = 1000) -> dict[str, float]:
    """Median microseconds per lookup call, ``with`` and ``without`` metrics."""
    rs = RedisServer(Path(tempfile.mkdtemp(prefix="hbmet"))).start()
    try:
        settings = config.load({})
        r = backend_redis(rs.url)
        store = Store(r, settings)
        store.add_zone(EXAMPLE_ZONE)
        a = store.add_account(store.new_account("h.example.com", "heartbeat-b"))
        store.liveness.beat(BeatRequest(account_id=a.id, zone=a.zone, expiry_ms=600_000, ipv4="198.51.100.9"))
        counted = Backend(r, settings.plan_table())
        bare = Backend(r, settings.plan_table())
        bare.metrics.lookups = {k: _Null() for k in bare.metrics.lookups}  # type: ignore[misc]
        bare.metrics.lookup_seconds = _Null()  # type: ignore[assignment]
        times: dict[str, list[float]] = {"with": [], "without": []}
        for _ in range(rounds):
            for name, backend in (("with", counted), ("without", bare)):
                started = time.perf_counter()
                for _ in range(calls):
                    backend.lookup_batch([("h.example.com", "ANY")])
                times[name].append((time.perf_counter() - started) / calls * 1e6)
        return {name: statistics.median(v) for name, v in times.items()}
    finally:
        rs.stop()


def main() -> Any:
    out = measure()
    share = (out["with"] - out["without"]) / out["without"]
    print(f"lookup call: {out['with']:.1f} us with metrics, {out['without']:.1f} us without ({share:+.1%})")
    print(f"the metric calls alone: {metric_calls_us():.2f} us per lookup call")


if __name__ == "__main__":
    main()
