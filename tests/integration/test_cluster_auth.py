"""A Redis Cluster with a password (``requirepass`` on every node): the URL's credentials reach
every node, on both call paths, and a wrong password is refused without showing it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from hbdns.cluster_route import ClusterRouter
from hbdns.connection import connect
from hbdns.resp import ConnectionLost, encode_command
from tests.support.cluster import Cluster

PASSWORD = "cl-secret-7"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = Cluster(Path(tmp_path_factory.mktemp("cluster-auth")), replicas=0, password=PASSWORD).start()
    yield c
    c.stop()


def keys16() -> list[str]:
    return [f"auth:{{s:{s}}}:k" for s in range(16)]


def test_the_password_reaches_every_node_on_both_paths(cluster: Cluster) -> None:
    assert cluster.url.startswith(f"redis+cluster://:{PASSWORD}@")
    r = connect(cluster.url)
    for k in keys16():
        r.set(k, k)
    router = ClusterRouter.from_url(cluster.url)
    assert router.execute([(k, encode_command("GET", k)) for k in keys16()]) == keys16()
    assert len(router.connections()) == 3
    router.close()
    r.close()


def test_a_wrong_password_is_refused_without_showing_it(cluster: Cluster) -> None:
    wrong = cluster.url.replace(PASSWORD, "not-the-pw")
    with pytest.raises(redis.ConnectionError) as err:
        connect(wrong)
    assert "not-the-pw" not in str(err.value)
    router = ClusterRouter.from_url(wrong)
    with pytest.raises(ConnectionLost) as lost:
        router.refresh()
    assert "not-the-pw" not in str(lost.value) and "AuthenticationError" in str(lost.value)
    router.close()
