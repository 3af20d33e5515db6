"""The notifier on a real 3-primary, 3-replica Redis Cluster (tests/support/cluster.py): every shard's
stream read per shard, messages and their queue through the per-primary pipelines
(hbdns/cluster_pipeline.py), a relay outage retried, a dead consumer's entries taken over per shard.
Accounts and entries are written directly, so that only the notifier is under test; the whole
acceptance scenario on a cluster is tests/integration/test_cluster_acceptance.py."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

import tests.support.cluster as cluster_support
from hbdns import config, event_streams, keys, notify_queue
from hbdns.connection import connect, is_cluster
from hbdns.model import Account
from notifier.consumer import GROUP
from notifier.main import Notifier
from notifier.streams import ShardStreams
from tests.support.servers import wait_for
from tests.support.services import env_for
from tests.support.sinks import SmtpSink

cluster = pytest.fixture(scope="module")(cluster_support.started_cluster)
fresh = pytest.fixture(cluster_support.fresh_cluster)

AT = 1_733_000_000_000


@pytest.fixture
def rc(fresh: Any) -> Iterator[Any]:
    r = connect(fresh.url)
    assert is_cluster(r)
    yield r
    r.close()


def put_account(r: Any, account_id: int) -> Account:
    a = Account(
        id=account_id, fqdn=f"h{account_id}.example.test", zone="example.test", plan="test-fast", hb_key=b"k" * 16,
        emails=(f"h{account_id}@example.org",),
    )  # fmt: skip
    r.hset(keys.account(account_id), mapping=a.new_hash(AT))
    return a


def settled(r: Any) -> bool:
    g = event_streams.group_totals(r, GROUP)
    return g.shards == keys.SHARDS and g.pending == 0 and g.lag == 0 and notify_queue.stats(r).queued == 0


def test_outages_and_queued_recoveries_of_every_shard_on_a_cluster(fresh: Any, rc: Any, smtp: SmtpSink) -> None:
    n = Notifier(config.load(env_for(fresh.url, smtp)), r=rc)
    try:
        assert n.consumer.streams.per_shard
        accounts = [put_account(rc, i) for i in range(1, keys.SHARDS + 1)]
        n.consumer.ensure_group()
        for a in accounts:
            event = {"type": "neutralized", "account": str(a.id), "fqdn": a.fqdn, "at": str(AT), "reason": "missed"}
            rc.xadd(keys.events(keys.shard_of(a.id)), event)
        wait_for(lambda: n.consume_step() == 0 and smtp.count() == keys.SHARDS, 30, what="16 outage e-mails")
        smtp.down()  # the relay away: the recoveries wait in the queue
        for a in accounts:
            rc.hset(keys.account(a.id), mapping={"state": "live", "since": str(AT + 60_000)})
            event = {"type": "recovered", "account": str(a.id), "fqdn": a.fqdn, "at": str(AT + 60_000),
                     "neutral_since": str(AT), "duration_ms": "60000", "family": "4"}  # fmt: skip
            rc.xadd(keys.events(keys.shard_of(a.id)), event)
        wait_for(lambda: n.consume_step() == 0 and notify_queue.stats(rc).queued == keys.SHARDS, 30, what="queued")
        smtp.up()
        wait_for(lambda: n.schedule_step() == 0 and settled(rc), 60, what="the queue sent")
        for a in accounts:
            subjects = sorted(m.subject for m in smtp.mails_for(a.emails[0]))
            assert len(subjects) == 2 and "back online" in subjects[0], subjects
    finally:
        n.stop()


def test_a_dead_consumers_entries_are_taken_over_on_a_cluster(rc: Any) -> None:
    dead, alive = ShardStreams(rc, GROUP, "dead"), ShardStreams(rc, GROUP, "alive")
    dead.ensure_group()
    for s in keys.all_shards():
        rc.xadd(keys.events(s), {"type": "test", "account": str(s)}, id="5-0")
    assert len(dead.read(0)) == keys.SHARDS
    assert alive.claim_from(frozenset({"dead"}), 0) == keys.SHARDS
    got = alive.read(0)
    assert {e.event_id for e in got} == {f"{s}/5-0" for s in keys.all_shards()}
    pipe = rc.pipeline(transaction=False)
    alive.ack(pipe, got)
    pipe.execute()
    assert event_streams.group_totals(rc, GROUP).pending == 0
    assert event_streams.find(rc, "7/5-0") == {"type": "test", "account": "7"}
