"""The recovery flush on a real redis-server against an ETRN server (tests.support.etrn): the flush
consumer's group, triggers, the second flush, takeover of a dead consumer's entries; and
``hbdns account flush``. The whole path through a real Postfix: tests/e2e/test_mail_backup_mx.py."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import redis

from admin.cli.main import main as cli
from hbdns import keys, recovery_flush
from hbdns.etrn import FlushTarget
from hbdns.liveness import BeatRequest
from hbdns.model import Account, Zone
from hbdns.mta_flush import MtaFlusher
from hbdns.store import Store
from notifier.flush import GROUP, FlushConsumer
from tests.support.etrn import EtrnServer
from tests.support.events import groups as stream_groups
from tests.support.servers import wait_for

ZONE = "flush.test"


@pytest.fixture
def etrn() -> Iterator[EtrnServer]:
    server = EtrnServer().start()
    yield server
    server.stop()


def flusher(etrn: EtrnServer) -> MtaFlusher:
    return MtaFlusher([FlushTarget("smtp", "127.0.0.1", etrn.port)], attempts=2, backoff=0.05, helo="hbdns.test")


def consumer(store: Store, etrn: EtrnServer, name: str = "c1", **kw: float) -> FlushConsumer:
    c = FlushConsumer(store.r, flusher(etrn), store.plans, name=name, again_after=0.2, **kw)  # type: ignore[arg-type]
    c.ensure_group()
    return c


def accounts(store: Store) -> tuple[Account, Account]:
    store.add_zone(Zone(ZONE, ("ns1.flush.test",), "hostmaster.flush.test", "192.0.2.1", backup_mx="mx.flush.test"))
    mx = store.add_account(store.new_account(f"home.{ZONE}", "heartbeat-c", mx=True, aliases=[f"shop.{ZONE}"]))
    plain = store.add_account(store.new_account(f"web.{ZONE}", "heartbeat-c"))
    return mx, plain


def beat(store: Store, a: Account, ip: str = "203.0.113.5", ttl: int = 60_000) -> None:
    assert store.liveness.beat(BeatRequest(a.id, ZONE, ttl, ipv4=ip)).accepted


def flushed_log(store: Store, a: Account) -> list[dict[str, object]]:
    return [e for e in store.account_log(a.id) if e["type"] == "mx_flushed"]


def test_recovery_flushes_every_name_now_and_again_after_the_ttl(
    store: Store, real_redis: redis.Redis, etrn: EtrnServer
) -> None:
    mx, plain = accounts(store)
    c = consumer(store, etrn)
    beat(store, mx)  # recovered + ip_changed: one flush for the batch
    beat(store, plain)  # no MX: nothing to flush
    assert c.step(block_ms=100) == 4  # recovered + ip_changed twice (the "created" came before the group)
    assert sorted(etrn.domains()) == [f"home.{ZONE}", f"shop.{ZONE}"] and etrn.sessions == 1
    [entry] = flushed_log(store, mx)
    assert (entry["why"], entry["ok"]) == ("recovered", True)
    assert {r["outcome"] for r in entry["results"]} == {"flushed"}  # type: ignore[union-attr]
    assert recovery_flush.counts(real_redis) == {f"127.0.0.1:{etrn.port} flushed": 2}
    assert sum(g["pending"] for g in stream_groups(real_redis, GROUP)) == 0  # acknowledged after
    # the second flush: heartbeat-c's record TTL (3 s) + 0.2 s after the first
    due = real_redis.zscore(keys.flush_due(), str(mx.id))
    assert due is not None and real_redis.zscore(keys.flush_due(), str(plain.id)) is None
    assert c.again_step() == 0  # not due yet
    wait_for(lambda: c.again_step() == 1, 10, interval=0.1, what="the second flush")
    assert len(etrn.domains()) == 4 and [e["why"] for e in flushed_log(store, mx)] == ["again", "recovered"]
    assert real_redis.zcard(keys.flush_due()) == 0


def test_an_address_change_flushes_and_a_new_trigger_moves_the_second_flush(
    store: Store, real_redis: redis.Redis, etrn: EtrnServer
) -> None:
    mx, _ = accounts(store)
    beat(store, mx)
    c = consumer(store, etrn)
    beat(store, mx, ip="203.0.113.6")  # ip_changed
    assert c.step(block_ms=100) == 1 and len(etrn.domains()) == 2
    first = real_redis.zscore(keys.flush_due(), str(mx.id))
    [(account_id, claimed)] = [(mx.id, int(first or 0))]
    beat(store, mx, ip="203.0.113.7")
    c.step(block_ms=100)
    assert real_redis.zscore(keys.flush_due(), str(mx.id)) >= first  # type: ignore[operator]
    assert not recovery_flush.done(real_redis, account_id, claimed - 1)  # a stale claim removes nothing


def test_entries_of_a_consumer_that_died_are_flushed_by_another(
    store: Store, real_redis: redis.Redis, etrn: EtrnServer
) -> None:
    mx, _ = accounts(store)
    dead = consumer(store, etrn, "dead")
    beat(store, mx)
    real_redis.xreadgroup(GROUP, "dead", {keys.events(keys.shard_of(mx.id)): ">"}, count=10)  # read, then it died
    assert not etrn.domains()
    again = consumer(store, etrn, "dead")  # the same name after a restart: its own pending first
    assert again.step(block_ms=100) == 2 and len(etrn.domains()) == 2
    beat(store, mx, ip="203.0.113.9")
    real_redis.xreadgroup(GROUP, "dead", {keys.events(keys.shard_of(mx.id)): ">"}, count=10)
    other = consumer(store, etrn, "other", claim_idle=0.05)
    wait_for(lambda: other.claim_step() == 1, 5, interval=0.1, what="takeover")
    assert len(etrn.domains()) == 4
    assert dead.step(block_ms=10) == 0


def test_a_failing_backup_mx_is_recorded_and_the_entry_still_acknowledged(
    store: Store, real_redis: redis.Redis, etrn: EtrnServer
) -> None:
    mx, _ = accounts(store)
    etrn.default = "554 5.7.1 Etrn command rejected: Access denied"
    c = consumer(store, etrn)
    beat(store, mx)
    c.step(block_ms=100)
    [entry] = flushed_log(store, mx)
    assert entry["ok"] is False and {r["code"] for r in entry["results"]} == {554}  # type: ignore[union-attr]
    assert sum(g["pending"] for g in stream_groups(real_redis, GROUP)) == 0


def test_cli_flushes_an_account_and_refuses_one_without_mx(
    store: Store,
    real_redis: redis.Redis,
    etrn: EtrnServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    mx, plain = accounts(store)
    monkeypatch.setenv("HBDNS_BACKUP_MX_FLUSH", f"127.0.0.1:{etrn.port}")
    monkeypatch.setenv("HBDNS_BACKUP_MX_FLUSH_HELO", "hbdns.test")
    assert cli(["--json", "account", "flush", mx.fqdn], redis_client=real_redis) == 0
    out = json.loads(capsys.readouterr().out)
    assert [(r["domain"], r["outcome"]) for r in out] == [(mx.fqdn, "flushed"), (f"shop.{ZONE}", "flushed")]
    assert [e["why"] for e in flushed_log(store, mx)] == ["admin"]
    assert cli(["account", "flush", plain.fqdn], redis_client=real_redis) == 2
    assert "has no MX" in capsys.readouterr().err
    etrn.default = "459 4.3.0 <home.flush.test>: service unavailable"
    assert cli(["account", "flush", mx.fqdn], redis_client=real_redis) == 1
    assert "not_eligible" in capsys.readouterr().out


def test_cli_sets_the_recipient_list_and_refuses_a_stranger_address(
    store: Store, real_redis: redis.Redis, tmp_path: object, capsys: pytest.CaptureFixture[str]
) -> None:
    mx, _ = accounts(store)
    args = ["account", "set", mx.fqdn, "--mx-recipient", "Alice", "--mx-recipient", f"bob@shop.{ZONE}"]
    assert cli(args, redis_client=real_redis) == 0
    assert json.loads(real_redis.hget(keys.account(mx.id), "mx_recipients") or "") == ["alice", f"bob@shop.{ZONE}"]
    before = real_redis.hgetall(keys.account(mx.id))
    why = {
        "carol@example.org": "is not at a name of this account",
        "a b": "not a local part",
        "..x": "not a local part",
    }
    for bad, reason in why.items():
        assert cli(["account", "set", mx.fqdn, "--mx-recipient", bad], redis_client=real_redis) == 2
        assert reason in capsys.readouterr().err
    assert real_redis.hgetall(keys.account(mx.id)) == before  # refused: nothing written
    assert cli(["account", "set", mx.fqdn, "--mx-recipient", ""], redis_client=real_redis) == 0
    assert real_redis.hget(keys.account(mx.id), "mx_recipients") == ""  # cleared: verify again
