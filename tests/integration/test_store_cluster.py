"""The admin writes and listings on a real Redis Cluster (3 primaries, 3 replicas, the fixture of
tests/support/cluster.py): redis-py's ``RedisCluster`` refuses a MULTI whose keys span slots
(``CrossSlotTransactionError``) and the server a script touching another slot, so this runs every
store path through both; listings read the global sets, not one node's keyspace.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from redis.cluster import ClusterNode, RedisCluster

import tests.support.cluster as cluster_support
from admin.cli.status import ingest_summary
from hbdns import acme, config, keys, provision, provision_acme, scripts
from hbdns.connection import connect, is_cluster
from hbdns.model import Zone
from hbdns.store import Conflict, Store
from update_api.status import badges

ZONE, OTHER = "dyn.example.net", "other.test"

cluster = pytest.fixture(scope="module")(cluster_support.started_cluster)


@pytest.fixture
def store(cluster: Any) -> Iterator[Store]:
    cluster.flush()
    hosts = cluster.url.removeprefix("redis+cluster://").split(",")
    nodes = [ClusterNode(h.rsplit(":", 1)[0], int(h.rsplit(":", 1)[1])) for h in hosts]
    r = RedisCluster(startup_nodes=nodes, decode_responses=True)
    r.script_flush()  # every script loaded by the paths themselves
    s = Store(r, config.load({}))
    for apex in (ZONE, OTHER):
        s.add_zone(Zone(apex, ("ns1.test",), "hostmaster.test", "192.0.2.1"))
    yield s
    r.close()


def test_every_admin_path_runs_on_a_cluster(store: Store) -> None:
    r = store.r
    assert is_cluster(r)
    with pytest.raises(Conflict, match="exists already"):
        store.add_zone(Zone(ZONE, ("ns1.test",), "hostmaster.test", "192.0.2.1"))
    a = provision.create_account(store, f"a.{ZONE}", "heartbeat-c", aliases=[f"mx.{ZONE}"], wildcard=True).account
    b = provision.create_account(store, f"b.{OTHER}", "heartbeat-c").account
    with pytest.raises(Conflict, match=f"mx.{ZONE} is taken"):
        store.add_account(store.new_account(f"c.{ZONE}", "heartbeat-c", aliases=[f"mx.{ZONE}"]))
    many = store.bulk_add_accounts([store.new_account(f"bulk{i}.{ZONE}", "heartbeat-c") for i in range(40)], chunk=16)
    assert {keys.shard_of(x.id) for x in many} == set(keys.all_shards())
    a = provision.change_account(store, a, provision.AccountChanges(aliases=[f"www.{ZONE}"], wildcard=False))
    assert store.resolve(f"www.{ZONE}").id == a.id and store.account_id_for(f"mx.{ZONE}") is None
    store.rotate_key(a)
    # ACME: a value set for a name of the account, refused once the credential is revoked
    cred = provision_acme.issue(store, a, f"www.{ZONE}").credential
    args = {"cred_key": keys.acme_credential(cred.id), "name": cred.name, "digest": cred.digest, "ttl_ms": 60_000}
    assert acme.set_value(r, account_id=a.id, value="a" * 43, **args) == 1
    assert acme.values(r, [cred.name]) == [["a" * 43]]
    assert provision_acme.revoke(store, a, f"www.{ZONE}")
    assert acme.set_value(r, account_id=a.id, value="b" * 43, **args) == -1
    # badges
    badge = badges.enable(r, a.id)
    assert badges.account_for(r, badge) == a.id
    badges.disable(r, a.id)
    assert badges.account_for(r, badge) is None
    # zone serial: the hash's plus every shard's count
    before = store.zone_serial(ZONE)
    store.update_zone(store.get_zone(ZONE))  # type: ignore[arg-type]
    assert store.zone_serial(ZONE) == before + 1
    # listings over every node: the global sets
    ids = sorted([a.id, *(x.id for x in many)])
    page = provision.page_accounts(store, zone=ZONE, state=None, after=0, limit=100)
    assert [x.account.id for x in page.items] == ids
    assert len(store.list_accounts()) == 42 and len(store.statuses(store.account_ids(ZONE))) == 41
    assert ingest_summary(store)[0] == {"tracked": False}
    assert [r.hget(keys.stats(s), "live") for s in keys.all_shards()] == ["0"] * keys.SHARDS
    # removal: one account, then a zone with its accounts
    provision.remove_account(store, b)
    store.remove_zone(ZONE, force=True)
    assert r.smembers(keys.accounts()) == set() and r.hlen(keys.names()) == 0
    assert sum(r.hlen(keys.shard_names(s)) for s in keys.all_shards()) == 0
    assert [r.exists(keys.account(x)) for x in ids] == [0] * len(ids)


def test_a_script_the_shard_multi_finds_unloaded_runs_again(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """A failover between the script's load and the MULTI: NOSCRIPT inside it, the call run again
    on its own, the event recorded once."""
    r = store.r
    real = r.script_load
    r.script_flush()
    real(scripts.NAME_CLAIM.source)  # the claim before the MULTI finds its script
    skipped: list[str] = []

    def lost_once(source: str) -> Any:
        if not skipped:
            skipped.append(source)  # as if the node had failed over right after this load
            return None
        return real(source)

    monkeypatch.setattr(r, "script_load", lost_once)
    acct = store.add_account(store.new_account(f"late.{ZONE}", "heartbeat-c"))
    assert skipped == [scripts.RECORD.source]
    events = [f for _, f in r.xrange(keys.events(keys.shard_of(acct.id)))]
    assert [(e["type"], e["account"]) for e in events] == [("created", str(acct.id))]
    assert r.hget(keys.shard_names(keys.shard_of(acct.id)), f"late.{ZONE}") == str(acct.id)


def test_the_admin_cli_works_on_a_cluster_url(
    cluster: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``hbdns`` itself with ``HBDNS_REDIS_URL=redis+cluster://...`` (the standalone and Sentinel
    forms have their own tests): zones, accounts, status and migrate."""
    from admin.cli.main import main

    cluster.flush()
    monkeypatch.setenv("HBDNS_REDIS_URL", cluster.url)
    apex = "cli.example.net"
    assert main(["zone", "add", apex, "--ns", f"ns1.{apex}"]) == 0
    for i in range(20):  # over every shard
        assert main(["account", "add", f"h{i}.{apex}", "--plan", "heartbeat-c"]) == 0
    capsys.readouterr()
    assert main(["--json", "account", "show", f"h7.{apex}"]) == 0
    assert json.loads(capsys.readouterr().out)["fqdn"] == f"h7.{apex}"
    assert main(["status"]) == 0 and main(["migrate", "--status"]) == 0 and main(["migrate"]) == 0
    assert main(["account", "remove", f"h7.{apex}"]) == 0
    assert main(["account", "show", f"h7.{apex}"]) != 0
    r = connect(cluster.url)
    assert r.scard(keys.accounts()) == 19 and sum(r.hlen(keys.shard_names(s)) for s in keys.all_shards()) == 19
