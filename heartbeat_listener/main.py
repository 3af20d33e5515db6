"""``hbdns-listener``: the heartbeat UDP listener process.

Settings from ``HBDNS_*`` (see deploy/.env.example), JSON logs, IPv4 and IPv6 sockets with
SO_REUSEPORT (run several processes on one port to use more cores), metrics on
HBDNS_METRICS_HOST:PORT. SIGTERM/SIGINT only set a flag; the loop finishes its batch and exits 0.
Redis need not be up at start: beats are counted as ``redis_down`` until it is.
"""

from __future__ import annotations

import logging
import signal
import socket
import sys
from collections.abc import Callable
from types import FrameType

import redis

from hbdns import config, keys
from hbdns import metrics as prom
from hbdns.connection import connect, is_cluster
from hbdns.liveness import Liveness
from hbdns.logs import RateLimitedLog
from hbdns.purge import Purger
from heartbeat_listener.accounts import AccountCache, Lookup, StoreUnavailable
from heartbeat_listener.cluster_io import ClusterAccounts, ClusterBeats
from heartbeat_listener.ingest import IngestMark
from heartbeat_listener.metrics import Metrics, checks_collector, kernel_drops, socket_inodes
from heartbeat_listener.preauth import IdCeiling, PreAuth
from heartbeat_listener.recent import RecentBeats
from heartbeat_listener.redis_io import BatchConnection, RedisAccounts, RedisBeats
from heartbeat_listener.server import UdpListener, open_socket
from heartbeat_listener.sources import SourceLimiter

log = logging.getLogger("heartbeat_listener")

# Longest pause between tries while Redis fails: a restarted Redis or a new primary after a
# failover gets beats again within this (issue 14: <= 0.5 s); a try costs one refused connect.
REDIS_RETRY_MAX = 0.5


def open_sockets(settings: config.Settings) -> list[socket.socket]:
    """The configured IPv4 and IPv6 sockets. A host without IPv6 (many containers) keeps IPv4 only."""
    socks = []
    if settings.heartbeat_host:
        socks.append(open_socket(settings.heartbeat_host, settings.heartbeat_port))
    if settings.heartbeat_host6:
        try:
            # without an IPv4 socket, let the IPv6 one take IPv4 too (as IPv4-mapped addresses)
            socks.append(open_socket(settings.heartbeat_host6, settings.heartbeat_port, v6only=bool(socks)))
        except OSError as exc:
            if not socks:
                raise
            log.warning(
                "no IPv6 heartbeat socket; IPv4 only",
                extra={"address": settings.heartbeat_host6, "error": str(exc)},
            )
    return socks


def sequence_reader(client: redis.Redis) -> Callable[[], int | None]:
    """Reads the account id sequence (:class:`~heartbeat_listener.preauth.IdCeiling`): one GET."""

    def read() -> int | None:
        try:
            value = client.get(keys.account_seq())
        except redis.RedisError as exc:
            raise StoreUnavailable(str(exc)) from None
        try:
            return int(value) if value is not None else None
        except (TypeError, ValueError):
            return None  # not a counter: don't filter ids by it

    return read


Stages = tuple[Lookup, RedisBeats | ClusterBeats, Callable[[], None]]


def redis_stages(settings: config.Settings, client: redis.Redis, liveness: Liveness, purger: Purger) -> Stages:
    """The lookup and write stages on a standalone or Sentinel Redis, and what closes them: two
    connections, so that lookups for the next batch do not queue behind the scripts in flight."""
    lookups, writes = BatchConnection(client), BatchConnection(client)
    writer = RedisBeats(
        writes,
        liveness,
        wait_replicas=settings.wait_replicas(),
        wait_timeout=settings.redis_wait_timeout,
        purge=purger.purge,
    )

    def close() -> None:
        lookups.close()
        writes.close()

    return RedisAccounts(lookups, settings.plan_table()), writer, close


def cluster_stages(settings: config.Settings, liveness: Liveness, purger: Purger) -> Stages:
    """The stages on Redis Cluster: one router (a connection per primary) for both, each command
    to its slot's primary (heartbeat_listener/cluster_io.py). No WAIT for replicas there."""
    from hbdns.cluster_route import ClusterRouter

    if settings.wait_replicas():
        log.warning("no WAIT for replicas on Redis Cluster: held beats are kept only until stored")
    router = ClusterRouter.from_url(settings.redis_url)
    writer = ClusterBeats(router, liveness, purge=purger.purge, backoff=REDIS_RETRY_MAX)
    return ClusterAccounts(router, settings.plan_table()), writer, router.close


def main(argv: list[str] | None = None) -> int:
    settings = config.service_settings("hbdns-listener")
    try:
        sockets = open_sockets(settings)
    except OSError as exc:
        log.error("cannot open heartbeat socket", extra={"port": settings.heartbeat_port, "error": str(exc)})
        return 1
    if not sockets:
        log.error("no heartbeat address configured (HBDNS_HEARTBEAT_HOST / HBDNS_HEARTBEAT_HOST6)")
        return 2

    client = connect(settings.redis_url)
    liveness = Liveness(
        client,
        max_skew_ms=int(settings.heartbeat_max_skew * 1000),
        events_maxlen=settings.events_maxlen,
        log_size=settings.account_log_size,
    )
    metrics = Metrics()
    purger = Purger(settings.pdns_api_urls, settings.pdns_api_key, settings.pdns_api_timeout).start()
    stages = (
        cluster_stages(settings, liveness, purger)
        if is_cluster(client)
        else redis_stages(settings, client, liveness, purger)
    )
    lookup, writer, close_stages = stages
    inodes = socket_inodes(s.fileno() for s in sockets)
    metrics.collectors.append(
        lambda: {
            "hbdns_heartbeat_kernel_drops_total": kernel_drops(inodes),
            "hbdns_heartbeat_purges_dropped_total": purger.dropped,
            **writer.counters(),
        }
    )
    registry = prom.new_registry()
    metrics.register(registry)
    endpoint = prom.serve_on(registry, settings.metrics_host, settings.metrics_port, "listener")
    # a connection of its own with short timeouts: it is read from the loop, at most a few times a second
    sequence = connect(settings.redis_url, socket_timeout=0.5, socket_connect_timeout=0.5)
    preauth = PreAuth(
        lookup_rate=settings.heartbeat_lookup_rate,
        lookup_burst=settings.heartbeat_lookup_burst,
        unknown_ttl=settings.heartbeat_unknown_ttl,
        ceiling=IdCeiling(sequence_reader(sequence)),
    )
    recent = RecentBeats(settings.heartbeat_account_rate, settings.heartbeat_account_burst)
    cache = AccountCache()
    metrics.collectors.append(checks_collector(preauth, recent, cache))
    listener = UdpListener(
        sockets,
        lookup,
        writer,
        metrics=metrics,
        limiter=SourceLimiter(settings.heartbeat_source_rate, settings.heartbeat_source_burst),
        purger=purger,
        backoff_max=REDIS_RETRY_MAX,
        batch=settings.heartbeat_batch,
        depth=settings.heartbeat_pipeline,
        max_skew_ms=int(settings.heartbeat_max_skew * 1000),
        cache=cache,
        preauth=preauth,
        recent=recent,
    )

    # the ingest mark (sweeper and beat script hold back deadlines of our own outages), on the
    # loop's short-timeout connection
    plans = settings.plan_table()
    marker = IngestMark(sequence, lambda: listener.storing, keep_ms=max(p.expiry_ms for p in plans.values()))
    metrics.collectors.append(lambda: {"hbdns_heartbeat_ingest_marks_total": marker.marks})

    stopping = False

    def stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    log.info(
        "listening",
        extra={
            "addresses": [s.getsockname()[0] for s in sockets],
            "port": settings.heartbeat_port,
            "metrics_port": endpoint.port if endpoint else None,
            "batch": settings.heartbeat_batch,
            "pipeline": settings.heartbeat_pipeline,
        },
    )
    try:
        crash_log = RateLimitedLog(log, 10.0)
        while not stopping:
            try:
                listener.step(0.25)
                marker.step()
            except Exception as exc:  # a bug must cost one batch, not the service
                crash_log.log(logging.ERROR, "step", "listener step failed", error=repr(exc))
        listener.flush()
    finally:
        prom.stop(endpoint)
        purger.stop()
        close_stages()
        sequence.close()
        for s in sockets:
            s.close()
    log.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
