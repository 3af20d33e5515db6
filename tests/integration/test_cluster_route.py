"""Redis Cluster plumbing on a real 3-primary / 3-replica cluster (tests/support/cluster.py).

``slot`` agrees with the server's ``CLUSTER KEYSLOT``; ``connect`` gives a ``RedisCluster`` for a
``redis+cluster://`` URL; the raw-RESP :class:`ClusterRouter` sends each command to its slot's
primary and follows the cluster through a slot migration (MOVED, ASK, TRYAGAIN), a
``CLUSTER FAILOVER`` and a SIGKILLed primary whose replica takes over.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from hbdns import keys
from hbdns.cluster_route import ClusterRouter, ClusterUnavailable, slot
from hbdns.connection import connect, is_cluster, sentinel_manager
from hbdns.resp import BatchConnection, ConnectionLost, encode_command
from tests.support.cluster import Cluster, Node, fresh_cluster, started_cluster
from tests.support.servers import free_port, wait_for

cluster = pytest.fixture(scope="module")(started_cluster)
fresh = pytest.fixture(fresh_cluster)


def tagged(shard: int, name: str) -> str:
    return f"t:{keys.shard_tag(shard)}:{name}"


def test_slot_is_the_servers_keyslot(cluster: Cluster) -> None:
    samples = [
        *(keys.account(i) for i in range(40)),
        *(keys.deadlines(s) for s in range(16)),
        keys.zone("example.com"),
        keys.names(),
        "",
        "plain",
        "{}",
        "{}x",
        "{a",
        "a}b{",
        "x{a}y{b}",
        "{{a}}",
        "{a}{b}",
        "ü{nö}",
        "user1000",
    ]
    for key in samples:
        want = cluster.keyslot(key)
        assert (slot(key), slot(key.encode())) == (want, want), key
    assert {slot(keys.shard_tag(s)) for s in range(16)} == {cluster.keyslot(keys.shard_tag(s)) for s in range(16)}


def test_connect_gives_a_cluster_client_that_follows_slots(fresh: Cluster) -> None:
    r = connect(fresh.url)
    assert is_cluster(r) and not is_cluster(connect("redis://127.0.0.1:1/0"))
    assert sentinel_manager(r) is None
    with pytest.raises(TypeError, match="ClusterRouter"):
        BatchConnection(r)
    for s in range(16):
        r.set(tagged(s, "k"), str(s))
    assert [r.get(tagged(s, "k")) for s in range(16)] == [str(s) for s in range(16)]
    owners = {fresh.owner(fresh.keyslot(tagged(s, "k"))).port for s in range(16)}
    assert len(owners) == 3  # the 16 shard tags spread over every primary
    r.close()


def test_connect_to_no_node_fails_with_a_clear_error() -> None:
    port = free_port()
    with pytest.raises(redis.ConnectionError, match=f"no Redis Cluster node gave its slot map \\(127.0.0.1:{port}\\)"):
        connect(f"redis+cluster://u:secretpw@127.0.0.1:{port}", socket_connect_timeout=0.5)


def test_the_router_sends_each_command_to_its_primary(fresh: Cluster) -> None:
    router = ClusterRouter.from_url(fresh.url)
    batch = [(tagged(s, "k"), encode_command("SET", tagged(s, "k"), f"v{s}")) for s in range(16)]
    batch += [(tagged(s, "n"), encode_command("INCRBY", tagged(s, "n"), str(s))) for s in range(16)]
    batch += [(tagged(s, "k"), encode_command("GET", tagged(s, "k"))) for s in range(16)]
    replies = router.execute(batch)
    assert replies == ["OK"] * 16 + list(range(16)) + [f"v{s}" for s in range(16)]
    for s in range(16):  # on the owner itself, not redirected: a non-owner answers MOVED
        key = tagged(s, "k")
        owner = fresh.owner(fresh.keyslot(key))
        assert router.owner(key) == ("127.0.0.1", owner.port)
        assert owner.cmd("GET", key) == f"v{s}"
    assert len(router.connections()) == 3 and router.refreshes == 1
    router.close()


def test_on_connect_hooks_run_on_every_primary(fresh: Cluster) -> None:
    """Each primary has its own script cache: a SCRIPT LOAD hook makes EVALSHA work on all."""
    source = "return redis.call('INCR', KEYS[1])"
    router = ClusterRouter.from_url(fresh.url)
    router.on_connect.append(lambda c: c.roundtrip(encode_command("SCRIPT", "LOAD", source), 1))
    sha = str(fresh.primaries()[0].cmd("SCRIPT", "LOAD", source))
    fresh.flush()
    batch = [(tagged(s, "c"), encode_command("EVALSHA", sha, "1", tagged(s, "c"))) for s in range(16)]
    assert router.execute(batch) == [1] * 16
    assert all(int(n.cmd("SCRIPT", "EXISTS", sha)[0]) for n in fresh.primaries())
    router.close()


def _other_primary(c: Cluster, key: str) -> tuple[int, Node, Node]:
    s = c.keyslot(key)
    source = c.owner(s)
    target = next(p for p in c.primaries() if p is not source)
    return s, source, target


def test_the_router_follows_a_moved_slot(fresh: Cluster) -> None:
    key = tagged(3, "moving")
    router = ClusterRouter.from_url(fresh.url)
    assert router.execute([(key, encode_command("SET", key, "before"))]) == ["OK"]
    s, _source, target = _other_primary(fresh, key)
    fresh.move_slot(s, target)
    before = router.refreshes
    assert router.execute([(key, encode_command("GET", key)), (key, encode_command("SET", key, "after"))]) == [
        "before",
        "OK",
    ]
    assert router.owner(key) == ("127.0.0.1", target.port)
    assert router.refreshes == before + 1  # one MOVED round asked the map once
    assert target.cmd("GET", key) == "after"
    router.close()


def test_the_router_follows_ask_during_a_migration(fresh: Cluster) -> None:
    old, new = tagged(5, "old"), tagged(5, "new")
    router = ClusterRouter.from_url(fresh.url)
    router.execute([(old, encode_command("SET", old, "here"))])
    s, source, target = _other_primary(fresh, old)
    fresh.begin_migration(s, source, target)
    # a key still on the source is served there; a new one is ASKed to the target
    replies = router.execute([(old, encode_command("GET", old)), (new, encode_command("SET", new, "there"))])
    assert replies == ["here", "OK"]
    asked = BatchConnection(redis.Redis(port=target.port, decode_responses=True))
    assert asked.roundtrip(encode_command("ASKING") + encode_command("GET", new), 2) == ["OK", "there"]
    asked.close()
    assert router.owner(old) == ("127.0.0.1", source.port)  # ASK keeps the map
    fresh.move_slot(s, target)
    router.close()


def _half_migrated(c: Cluster, shard: int) -> tuple[ClusterRouter, str, str, int, Node]:
    """Two keys of one slot, the slot being migrated and only the first key moved yet: a command
    on both gets TRYAGAIN. (a fresh router, the keys, the slot, the migration's target)"""
    a, b = tagged(shard, "a"), tagged(shard, "b")
    router = ClusterRouter.from_url(c.url)
    router.execute([(a, encode_command("SET", a, "1")), (b, encode_command("SET", b, "2"))])
    s, source, target = _other_primary(c, a)
    c.begin_migration(s, source, target)
    source.cmd("MIGRATE", "127.0.0.1", str(target.port), "", "0", "5000", "KEYS", a)
    return router, a, b, s, target


def test_tryagain_is_retried_until_the_migration_ends(fresh: Cluster) -> None:
    router, a, b, s, target = _half_migrated(fresh, 7)
    pauses: list[float] = []

    def finish_migration(seconds: float) -> None:  # the router's pause: the operator finishes meanwhile
        pauses.append(seconds)
        if len(pauses) == 1:
            fresh.move_slot(s, target)

    router.sleep = finish_migration
    assert router.execute([(a, encode_command("MGET", a, b))]) == [["1", "2"]]
    assert len(pauses) == 1  # one pause; the map asked for after it points at the target
    router.close()


def test_retries_are_bounded_and_say_the_command_did_not_run(fresh: Cluster) -> None:
    router, a, b, s, target = _half_migrated(fresh, 9)
    pauses: list[float] = []
    router.sleep = pauses.append
    other = tagged(2, "x") if fresh.keyslot(tagged(2, "x")) != s else tagged(4, "x")
    replies = router.execute([(a, encode_command("MGET", a, b)), (other, encode_command("SET", other, "ok"))])
    assert isinstance(replies[0], ClusterUnavailable) and "TryAgainError" in str(replies[0])
    assert replies[1] == "OK"  # the other command was not held back
    assert pauses == [0.02, 0.04, 0.08, 0.16]
    fresh.move_slot(s, target)
    router.close()


def test_the_router_follows_a_cluster_failover(fresh: Cluster) -> None:
    key = tagged(11, "f")
    router = ClusterRouter.from_url(fresh.url)
    router.execute([(key, encode_command("SET", key, "1"))])
    primary = fresh.owner(fresh.keyslot(key))
    replica = fresh.replica_of(primary)
    replica.failover()
    wait_for(lambda: fresh.owner(fresh.keyslot(key)) is replica, 20, what="slot map with the new primary")
    assert router.execute([(key, encode_command("INCR", key))]) == [2]
    assert router.owner(key) == ("127.0.0.1", replica.port)
    router.close()


def test_a_sigkilled_primary_is_replaced_and_the_router_follows(fresh: Cluster) -> None:
    key = tagged(13, "k")
    router = ClusterRouter.from_url(fresh.url)
    assert router.execute([(key, encode_command("SET", key, "kept"))]) == ["OK"]
    primary = fresh.owner(fresh.keyslot(key))
    replica = fresh.replica_of(primary)
    assert primary.cmd("WAIT", "1", "2000") == 1  # on the replica before the kill
    primary.kill()
    seen: list[object] = []

    def read() -> bool:
        reply = router.execute([(key, encode_command("GET", key))])[0]
        seen.append(reply)
        return reply == "kept"

    wait_for(read, 30, interval=0.05, what="the key read from the promoted replica")
    assert replica.role() == "master" and router.owner(key) == ("127.0.0.1", replica.port)
    # meanwhile never a wrong value or an error reply: the first GET went out on the open connection
    # and lost its reply (it may have run), every later one was 'not placed' (it did not run)
    assert all(isinstance(r, ConnectionLost) for r in seen[:-1]), seen
    assert all(isinstance(r, ClusterUnavailable) for r in seen[1:-1]), seen
    assert len(seen) > 2
    router.close()


@pytest.fixture
def unreachable_router() -> Iterator[ClusterRouter]:
    router = ClusterRouter.from_url(f"redis+cluster://127.0.0.1:{free_port()}", socket_connect_timeout=0.5)
    yield router
    router.close()


def test_no_node_to_ask_is_a_lost_connection(unreachable_router: ClusterRouter) -> None:
    with pytest.raises(ConnectionLost, match="no cluster node gave its slot map"):
        unreachable_router.connection("k")
    unreachable_router.sleep = lambda _s: None
    reply = unreachable_router.execute([("k", encode_command("GET", "k"))])[0]
    assert isinstance(reply, ClusterUnavailable)
