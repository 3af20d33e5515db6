"""The sweeper on a real Redis Cluster (3 primaries, 3 replicas; tests/support/cluster.py): one
process sweeps the shards of every primary, its scripts load on each node after a SCRIPT FLUSH, a
primary that dies fails only its own shards until its replica takes over, and no transition is
recorded twice. Accounts are written straight into Redis (tests/integration/test_sweeper_shards.py)."""

from __future__ import annotations

from typing import Any

import pytest
import redis

import tests.support.cluster as support
from hbdns import config, keys, mass
from hbdns.connection import connect, is_cluster
from hbdns.event_trim import EventTrimmer, stream_status
from hbdns.liveness import Liveness
from sweeper.main import SweeperService
from sweeper.metrics import liveness_counts
from sweeper.sweeper import Sweeper
from tests.integration.test_sweeper_shards import ZONE, _live
from tests.support.servers import wait_for
from tests.support.services import env_for

cluster = pytest.fixture(scope="module")(support.started_cluster)
fresh = pytest.fixture(support.fresh_cluster)


def _neutralized(r: Any, shards: Any = None) -> list[int]:
    out = []
    for s in keys.all_shards() if shards is None else shards:
        raw: Any = r.xrange(keys.events(s))
        out += [int(f["account"]) for _, f in raw if f["type"] == "neutralized"]
    return sorted(out)


def test_one_sweeper_sweeps_every_primary_and_trims_every_shard(fresh: Any) -> None:
    r = connect(fresh.url)
    assert is_cluster(r)
    assert len({fresh.owner(fresh.keyslot(keys.deadlines(s))).port for s in keys.all_shards()}) == 3
    ids = list(range(1, 97))
    _live(r, ids)  # every script cache is empty (fresh): each node loads the scripts on first use
    assert Sweeper(Liveness(r), batch=4).step() == 96 and _neutralized(r) == ids
    assert [r.hget(keys.serials(s), ZONE) for s in keys.all_shards()] == ["6"] * keys.SHARDS
    c = liveness_counts(r)
    assert (c["live"], c["backlog"]) == (0, 0)
    res = EventTrimmer(r, keep=2, cap=4).step()  # no group: the cap alone, counted per shard
    assert (res.capped, res.unread, res.length) == (32, 32, 64)
    assert stream_status(r)["unread"] == 32


def test_a_dead_primary_fails_only_its_shards_and_its_replica_takes_them(fresh: Any) -> None:
    r = connect(fresh.url)
    ids = list(range(1, 65))
    _live(r, ids)
    victim = fresh.owner(fresh.keyslot(keys.deadlines(0)))
    theirs = [s for s in keys.all_shards() if fresh.owner(fresh.keyslot(keys.deadlines(s))) is victim]
    victim.kill()
    sweeper = Sweeper(Liveness(r))

    def step() -> int:
        try:
            return sweeper.step()
        except (redis.ConnectionError, redis.TimeoutError, redis.ResponseError):
            return 0  # the service's loop counts the error and steps again

    wait_for(lambda: step() and True, 10, what="a sweep of the live primaries' shards")
    alive = [s for s in keys.all_shards() if s not in theirs]
    assert _neutralized(r, alive) == [i for i in ids if keys.shard_of(i) in alive]

    def all_swept() -> bool:
        step()
        try:
            return _neutralized(r) == ids  # each once
        except (redis.ConnectionError, redis.TimeoutError, redis.ResponseError):
            return False  # its replica is not primary yet

    wait_for(all_swept, 30, interval=0.2, what="the dead primary's shards swept on its replica")


def test_the_service_on_a_cluster_runs_no_hints(fresh: Any) -> None:
    settings = config.load(env_for(fresh.url, HBDNS_MASS_MIN_ACCOUNTS="5", HBDNS_MASS_SHARE="0.5"))
    service = SweeperService(settings).start()
    try:
        assert service.loops.names == ["sweep", "trim", "mass"]
        service.watch.census_step()
        assert mass.load(service.r) == {}
    finally:
        service.stop()
