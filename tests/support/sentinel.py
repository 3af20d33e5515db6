"""A replicated Redis under Sentinel for tests: 1 primary + 1 replica + 3 sentinels on loopback.

:class:`SentinelGroup` starts the two ``redis-server``s (the replica with ``replicaof``), waits for
the replication link, then starts three ``redis-sentinel``s (Debian's ``redis-sentinel`` package)
that monitor the primary as :data:`MASTER` with quorum 2, and waits until each sentinel knows the
replica and the two other sentinels (otherwise a failover could not be authorized). Timings are
tuned down for tests (``down-after-milliseconds`` 1000, ``failover-timeout`` 3000): a SIGKILLed
primary is replaced within a few seconds. Which server is primary changes with every failover, so
the group asks the sentinels (:meth:`primary`, :meth:`replica`); :meth:`heal` restarts a killed
server, which Sentinel then turns into a replica of the new primary.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.support.servers import Process, RedisServer, free_port, wait_for, which

MASTER = "hbdns"
DOWN_AFTER_MS = 1000
FAILOVER_TIMEOUT_MS = 3000


def command(port: int, *args: str, timeout: float = 2.0, password: str | None = None) -> Any:
    """One command to a Redis or Sentinel on 127.0.0.1 (a plain client: no retries, no pool)."""
    import redis

    r = redis.Redis(
        port=port, password=password, socket_timeout=timeout, socket_connect_timeout=timeout, decode_responses=True
    )
    try:
        return r.execute_command(*args)
    finally:
        r.close()


def noscripts(port: int) -> int:
    """NOSCRIPT replies the server on ``port`` has sent so far."""
    import redis

    stats = redis.Redis(port=port).info("errorstats")
    return int(stats.get("errorstat_NOSCRIPT", {}).get("count", 0))


def cached(port: int, sha: str) -> bool:
    """Whether the script with SHA1 ``sha`` is in that server's script cache."""
    return bool(command(port, "SCRIPT", "EXISTS", sha)[0])


def info(port: int, section: str) -> dict[str, str]:
    text = command(port, "INFO", section)
    if isinstance(text, dict):
        return {k: str(v) for k, v in text.items()}
    out = {}
    for line in str(text).splitlines():
        key, sep, value = line.partition(":")
        if sep:
            out[key] = value
    return out


class SentinelProcess:
    def __init__(self, workdir: Path, master_port: int, quorum: int = 2, extra: list[str] | None = None) -> None:
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.master_port = master_port
        self.quorum = quorum
        self.extra = extra or []  # e.g. requirepass, sentinel auth-pass
        self.password: str | None = None  # this sentinel's own requirepass, if any
        self.process: Process | None = None

    def start(self) -> SentinelProcess:
        conf = self.workdir / "sentinel.conf"  # Sentinel rewrites it: its own file
        conf.write_text(
            "\n".join(
                [
                    f"port {self.port}",
                    "bind 127.0.0.1",
                    f"dir {self.workdir}",
                    "daemonize no",
                    "sentinel resolve-hostnames no",
                    f"sentinel monitor {MASTER} 127.0.0.1 {self.master_port} {self.quorum}",
                    f"sentinel down-after-milliseconds {MASTER} {DOWN_AFTER_MS}",
                    f"sentinel failover-timeout {MASTER} {FAILOVER_TIMEOUT_MS}",
                    f"sentinel parallel-syncs {MASTER} 1",
                    *self.extra,
                ]
            )
            + "\n"
        )
        self.process = Process([which("redis-sentinel"), str(conf)], self.workdir / "sentinel.log")
        wait_for(self.ping, 10, what=f"redis-sentinel on port {self.port}")
        return self

    def ping(self) -> bool:
        if self.process is None or not self.process.alive():
            raise RuntimeError("redis-sentinel exited:\n" + (self.process.log_text() if self.process else ""))
        with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16)[:1] in (b"+", b"-")  # PONG, or NOAUTH when it has a password

    def master_port_now(self) -> int:
        _host, port = command(self.port, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER)
        return int(port)

    def ready(self) -> bool:
        """Knows a healthy replica and both other sentinels, and sees the primary up."""
        replicas = command(self.port, "SENTINEL", "REPLICAS", MASTER)
        others = command(self.port, "SENTINEL", "SENTINELS", MASTER)
        master = command(self.port, "SENTINEL", "MASTER", MASTER)
        flags = _pairs(master).get("flags", "")
        healthy = [
            r for r in replicas if _pairs(r).get("flags") == "slave" and _pairs(r).get("master-link-status") == "ok"
        ]
        return flags == "master" and len(healthy) >= 1 and len(others) >= 2

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()


def _pairs(reply: Any) -> dict[str, str]:
    if isinstance(reply, dict):
        return {str(k): str(v) for k, v in reply.items()}
    items = list(reply)
    return {str(items[i]): str(items[i + 1]) for i in range(0, len(items) - 1, 2)}


class SentinelGroup:
    """Primary, replica and three sentinels; :attr:`url` is the ``redis+sentinel://`` URL."""

    def __init__(self, workdir: Path, *, redis_extra: list[str] | None = None) -> None:
        self.workdir = workdir
        # a new replica's sync starts at once (Redis waits 5 s for more replicas by default)
        extra = ["enable-debug-command local", "repl-diskless-sync-delay 0", *(redis_extra or [])]
        first = RedisServer(workdir / "redis-a", extra=extra)
        second = RedisServer(workdir / "redis-b", extra=[*extra, f"replicaof 127.0.0.1 {first.port}"])
        self.servers = {first.port: first, second.port: second}
        self.sentinels = [SentinelProcess(workdir / f"sentinel-{i}", first.port) for i in range(3)]

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)
        return f"redis+sentinel://{hosts}/{MASTER}/0"

    def start(self) -> SentinelGroup:
        for server in self.servers.values():
            server.start()
        wait_for(self.replicating, 20, what="replica's link to the primary")
        for s in self.sentinels:
            s.start()
        wait_for(self.ready, 30, interval=0.1, what="sentinels that know the replica and each other")
        return self

    def stop(self) -> None:
        for s in self.sentinels:
            s.stop()
        for server in self.servers.values():
            server.stop()

    def primary_port(self) -> int:
        """The primary's port as the sentinels report it (the first that answers)."""
        for s in self.sentinels:
            if s.process is not None and s.process.alive():
                try:
                    return s.master_port_now()
                except Exception:
                    continue
        raise RuntimeError("no sentinel answers")

    def primary(self) -> RedisServer:
        return self.servers[self.primary_port()]

    def replica(self) -> RedisServer:
        port = self.primary_port()
        return next(s for p, s in self.servers.items() if p != port)

    def replicating(self) -> bool:
        """One primary, and every other server its replica with the link up and in sync."""
        roles = {}
        for port, server in self.servers.items():
            if server.process is None or not server.process.alive():
                return False
            roles[port] = info(port, "replication")["role"]
        primaries = [p for p, role in roles.items() if role == "master"]
        if len(primaries) != 1:
            return False
        offset = int(info(primaries[0], "replication")["master_repl_offset"])  # read before the replicas'
        for port in roles:
            if port == primaries[0]:
                continue
            r = info(port, "replication")
            if r.get("master_link_status") != "up" or int(r.get("master_port", 0)) != primaries[0]:
                return False
            if int(r.get("slave_repl_offset", -1)) < offset:
                return False
        return True

    def ready(self) -> bool:
        return self.replicating() and all(s.ready() for s in self.sentinels)

    def kill_primary(self) -> RedisServer:
        """SIGKILL the current primary; returns it (for :meth:`heal`)."""
        server = self.primary()
        server.kill()
        return server

    def wait_failover(self, old_port: int, timeout: float = 30.0) -> tuple[int, float]:
        """Wait until a sentinel reports a primary other than ``old_port``: (its port, when)."""

        def moved() -> int:
            port = self.primary_port()
            return port if port != old_port else 0

        port = wait_for(moved, timeout, interval=0.02, what="Sentinel failover")
        return port, time.monotonic()

    def heal(self, server: RedisServer, timeout: float = 40.0) -> None:
        """Restart a killed server as a replica of the current primary (as Sentinel would make it)
        and wait until every sentinel knows it again as a healthy replica."""
        if server.process is not None and server.process.alive():
            return
        primary = self.primary_port()
        server.extra = [x for x in server.extra if not x.startswith("replicaof ")]
        server.extra.append(f"replicaof 127.0.0.1 {primary}")
        server.start()
        wait_for(self.ready, timeout, interval=0.1, what="healed group (old primary back as a replica)")


# --- fixtures: a test module registers them with ``pytest.fixture`` (see tests/integration/test_sentinel.py)


def started_group(tmp_path_factory: Any) -> Iterator[SentinelGroup]:
    """A started group for a module (``group = pytest.fixture(scope="module")(started_group)``)."""
    g = SentinelGroup(Path(tmp_path_factory.mktemp("sentinel"))).start()
    yield g
    g.stop()


def fresh_group(group: SentinelGroup) -> Iterator[SentinelGroup]:
    """The group with an empty database, empty script caches and both servers up (a test that
    killed one is healed before and after)."""
    from hbdns.connection import connect

    for server in group.servers.values():
        if server.process is None or not server.process.alive():
            group.heal(server)
    connect(group.url).flushall()
    for server in group.servers.values():
        command(server.port, "SCRIPT", "FLUSH")
    wait_for(group.replicating, 10, what="replica in sync")
    yield group
    for server in group.servers.values():
        if server.process is None or not server.process.alive():
            group.heal(server)
