"""A Redis Cluster for tests: real ``redis-server --cluster-enabled yes`` processes on loopback.

:class:`Cluster` starts ``primaries`` x (1 + ``replicas``) servers (each a
:class:`~tests.support.servers.RedisServer` in its own directory, so with the persistence of the
other fixtures, plus ``nodes.conf``), joins them with ``redis-cli --cluster create ...
--cluster-replicas N --cluster-yes`` and waits, with a deadline, until every node reports
``cluster_state:ok``, agrees on the slot map and every replica is in sync. Each node's cluster bus
port is a free port of its own (``cluster-port``), not port + 10000, which may be taken.

``cluster-node-timeout`` is 2000 ms: a SIGKILLed primary is replaced by its replica within a few
seconds (node timeout, then the replica's election), yet a node slowed down by a busy 2-core
machine is not voted out. Which node is primary changes with every failover: ask the cluster
(:meth:`Cluster.primaries`, :meth:`Cluster.owner`), never remember a port.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.support.sentinel import command
from tests.support.servers import RedisServer, free_port, wait_for, which

NODE_TIMEOUT_MS = 2000
SLOTS = 16384


class Node:
    """One cluster member: its server, and what the cluster says about it."""

    def __init__(self, workdir: Path, persist: bool = False, password: str | None = None) -> None:
        self.bus_port = free_port()
        self.password = password
        auth = [f"requirepass {password}", f"masterauth {password}"] if password else []
        self.server = RedisServer(
            workdir,
            persist=persist,
            extra=[
                "cluster-enabled yes",
                "cluster-config-file nodes.conf",
                f"cluster-node-timeout {NODE_TIMEOUT_MS}",
                f"cluster-port {self.bus_port}",
                "enable-debug-command local",
                "repl-diskless-sync-delay 0",
                *auth,
            ],
        )

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def addr(self) -> str:
        return f"127.0.0.1:{self.port}"

    def alive(self) -> bool:
        return self.server.process is not None and self.server.process.alive()

    def cmd(self, *args: str, timeout: float = 2.0) -> Any:
        return command(self.port, *args, timeout=timeout, password=self.password)

    def info(self, section: str) -> dict[str, str]:
        text = self.cmd("INFO", section)
        if isinstance(text, dict):
            return {k: str(v) for k, v in text.items()}
        return {k: v for k, sep, v in (line.partition(":") for line in str(text).splitlines()) if sep}

    def node_id(self) -> str:
        return str(self.cmd("CLUSTER", "MYID"))

    def role(self) -> str:
        """``master`` or ``slave`` as the node itself reports it."""
        return self.info("replication")["role"]

    def kill(self) -> None:
        """SIGKILL: no goodbye to the cluster, its replica has to notice and take over."""
        self.server.kill()

    def start(self) -> None:
        """(Re)start on the same port and directory: it rejoins with its nodes.conf."""
        self.server.start()

    def failover(self, timeout: float = 20.0) -> None:
        """``CLUSTER FAILOVER`` on this replica (the graceful one: its primary stops writes, the
        replica catches up, takes the slots); returns once it reports itself primary."""
        if self.role() != "slave":
            raise RuntimeError(f"{self.addr} is not a replica")
        self.cmd("CLUSTER", "FAILOVER")
        wait_for(lambda: self.role() == "master", timeout, what=f"{self.addr} promoted by CLUSTER FAILOVER")


class Cluster:
    """``primaries`` primaries with ``replicas`` replicas each; :attr:`url` is its ``redis+cluster://``."""

    def __init__(
        self, workdir: Path, primaries: int = 3, replicas: int = 1, persist: bool = False, password: str | None = None
    ) -> None:
        self.workdir = workdir
        self.replicas = replicas
        self.password = password
        count = primaries * (1 + replicas)
        self.nodes = [Node(workdir / f"node-{i}", persist=persist, password=password) for i in range(count)]
        self.primary_count = primaries

    @property
    def url(self) -> str:
        login = f":{self.password}@" if self.password else ""
        return f"redis+cluster://{login}" + ",".join(n.addr for n in self.nodes)

    def start(self, timeout: float = 60.0) -> Cluster:
        for node in self.nodes:
            node.start()
        if self.primary_count < 3:  # redis-cli --cluster create wants 3 primaries: assign by hand
            self._create_by_hand()
        else:
            argv = [which("redis-cli"), "--cluster", "create", *(n.addr for n in self.nodes)]
            argv += ["--cluster-replicas", str(self.replicas), "--cluster-yes"]
            if self.password:
                argv += ["-a", self.password, "--no-auth-warning"]
            done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
            if done.returncode != 0:
                raise RuntimeError(f"redis-cli --cluster create failed:\n{done.stdout}\n{done.stderr}")
        wait_for(self.healthy, timeout, interval=0.1, what="cluster_state:ok on every node, replicas in sync")
        return self

    def _create_by_hand(self) -> None:
        """ADDSLOTSRANGE + MEET (no replicas): the 1- and 2-primary clusters of the benchmark."""
        if self.replicas:
            raise ValueError("fewer than 3 primaries: no replicas")
        n = len(self.nodes)
        for i, node in enumerate(self.nodes):
            node.cmd("CLUSTER", "ADDSLOTSRANGE", str(SLOTS * i // n), str(SLOTS * (i + 1) // n - 1))
            if i:
                node.cmd("CLUSTER", "MEET", "127.0.0.1", str(self.nodes[0].port), str(self.nodes[0].bus_port))

    def stop(self) -> None:
        for node in self.nodes:
            node.server.stop()

    # --- what the cluster says

    def live(self) -> list[Node]:
        return [n for n in self.nodes if n.alive()]

    def slot_map(self, node: Node) -> dict[tuple[int, int], int]:
        """(first, last) slot -> port of its primary, as ``node`` sees it."""
        return {(int(r[0]), int(r[1])): int(r[2][1]) for r in node.cmd("CLUSTER", "SLOTS")}

    def healthy(self) -> bool:
        """Every node up, ``cluster_state:ok``, one slot map everywhere covering all slots, the
        expected number of primaries, and every replica linked and caught up."""
        nodes = self.live()
        if len(nodes) != len(self.nodes):
            return False
        if any("cluster_state:ok" not in str(n.cmd("CLUSTER", "INFO")) for n in nodes):
            return False
        maps = [self.slot_map(n) for n in nodes]
        if any(m != maps[0] for m in maps) or sum(b - a + 1 for a, b in maps[0]) != SLOTS:
            return False
        primaries = [n for n in nodes if n.role() == "master"]
        if len(primaries) != self.primary_count or {p.port for p in primaries} != set(maps[0].values()):
            return False
        for node in nodes:  # every node's view: the same roles, nobody failing or handshaking
            view = [line.split() for line in str(node.cmd("CLUSTER", "NODES")).splitlines() if line.strip()]
            flags = [set(fields[2].split(",")) - {"myself"} for fields in view]
            if sorted("master" if "master" in f else "slave" for f in flags) != sorted(
                "master" if n in primaries else "slave" for n in nodes
            ):
                return False
            if any(f - {"master", "slave"} for f in flags) or any(fields[7] != "connected" for fields in view):
                return False
            if node.role() == "slave":
                r = node.info("replication")
                if r.get("master_link_status") != "up" or r.get("master_sync_in_progress") != "0":
                    return False
        return True

    def primaries(self) -> list[Node]:
        return [n for n in self.live() if n.role() == "master"]

    def by_port(self, port: int) -> Node:
        return next(n for n in self.nodes if n.port == port)

    def owner(self, slot: int) -> Node:
        """The primary serving ``slot`` (as the first live node reports it)."""
        for (first, last), port in self.slot_map(self.live()[0]).items():
            if first <= slot <= last:
                return self.by_port(port)
        raise LookupError(f"slot {slot} is not served")

    def replica_of(self, primary: Node) -> Node:
        pid = primary.node_id()
        for node in self.live():
            if node is not primary and node.info("replication").get("master_port") == str(primary.port):
                return node
        raise LookupError(f"{primary.addr} ({pid}) has no live replica")

    def keyslot(self, key: str) -> int:
        return int(self.live()[0].cmd("CLUSTER", "KEYSLOT", key))

    def move_slot(self, slot: int, target: Node) -> None:
        """Migrate ``slot`` with its keys to primary ``target`` (IMPORTING/MIGRATING, MIGRATE, NODE)."""
        source = self.owner(slot)
        if source is target:
            return
        tid = target.node_id()
        self.begin_migration(slot, source, target)
        while keys := source.cmd("CLUSTER", "GETKEYSINSLOT", str(slot), "100"):
            auth = ["AUTH", self.password] if self.password else []
            source.cmd("MIGRATE", "127.0.0.1", str(target.port), "", "0", "5000", *auth, "KEYS", *keys)
        for node in (target, source):
            node.cmd("CLUSTER", "SETSLOT", str(slot), "NODE", tid)
        for node in self.primaries():
            if node not in (target, source):
                node.cmd("CLUSTER", "SETSLOT", str(slot), "NODE", tid)
        wait_for(lambda: all(self.owner_seen_by(n, slot) == target.port for n in self.live()), 20, what="slot map")

    def begin_migration(self, slot: int, source: Node, target: Node) -> None:
        """The first half of a migration: ``target`` IMPORTING, ``source`` MIGRATING (ASK replies)."""
        target.cmd("CLUSTER", "SETSLOT", str(slot), "IMPORTING", source.node_id())
        source.cmd("CLUSTER", "SETSLOT", str(slot), "MIGRATING", target.node_id())

    def owner_seen_by(self, node: Node, slot: int) -> int:
        for (first, last), port in self.slot_map(node).items():
            if first <= slot <= last:
                return port
        return 0

    def heal(self, timeout: float = 60.0) -> None:
        """Restart every killed node (it rejoins as a replica of whoever took its slots) and wait
        until the cluster is healthy again."""
        for node in self.nodes:
            if not node.alive():
                node.start()
        wait_for(self.healthy, timeout, interval=0.1, what="healed cluster")

    def flush(self) -> None:
        """Empty every primary and every script cache (replicas follow the FLUSHALL)."""
        for node in self.primaries():
            node.cmd("FLUSHALL")
        for node in self.live():
            node.cmd("SCRIPT", "FLUSH")


# --- fixtures: a test module registers them with ``pytest.fixture`` (see test_cluster_route.py)


def started_cluster(tmp_path_factory: Any) -> Iterator[Cluster]:
    """A started 3 x 2 cluster for a module (``cluster = pytest.fixture(scope="module")(started_cluster)``)."""
    c = Cluster(Path(tmp_path_factory.mktemp("cluster"))).start()
    yield c
    c.stop()


def fresh_cluster(cluster: Cluster) -> Iterator[Cluster]:
    """The cluster healed (every node up, healthy) and empty, before and after a test."""
    cluster.heal()
    cluster.flush()
    yield cluster
    cluster.heal()
