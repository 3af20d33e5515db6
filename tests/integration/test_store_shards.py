"""The store's writes on the sharded schema, on a real redis-server: every command and every MULTI
in one Redis Cluster slot, names given and taken in the order that keeps the DNS lookup right
(claimed globally, then confirmed in the shard; unconfirmed, then released), dead writers' claims
taken over, a stalled writer backing out.

The slot check asks the server itself which arguments are keys (``COMMAND GETKEYS``, EVALSHA's
KEYS included) and computes their slots as Redis Cluster does (CRC16 of the hash tag).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import pytest
import redis
from redis.client import Pipeline
from redis.crc import key_slot

from admin.cli.status import ingest_summary
from hbdns import acme, keys, provision, provision_acme, provision_names, zone_serial
from hbdns.model import Zone
from hbdns.provision_names import CLAIM_FIELD
from hbdns.store import Conflict, Store
from tests.support.listener import ZONE
from update_api.status import badges

OTHER = "other.test"


@dataclass
class Guard:
    """What the client sent: per unit (one command, or one MULTI) its command names and keys."""

    probe: redis.Redis
    units: list[tuple[list[str], list[str]]] = field(default_factory=list)
    bad: list[str] = field(default_factory=list)

    def keys_of(self, args: tuple[Any, ...]) -> list[str]:
        try:
            got = _ORIG_EXEC(self.probe, "COMMAND GETKEYS", *args)
        except redis.ResponseError:
            return []  # a command without keys
        return [k.decode() if isinstance(k, bytes) else str(k) for k in got]

    def unit(self, commands: list[tuple[Any, ...]], what: str) -> None:
        names = [str(c[0]).upper() for c in commands]
        found = [k for c in commands for k in self.keys_of(c)]
        self.units.append((names, found))
        if len({key_slot(k.encode()) for k in found}) > 1:
            self.bad.append(f"{what} {names} spans slots: {found}")

    def index(self, pred: Any) -> int:
        """The first unit for which ``pred(names, keys)`` holds."""
        return next(i for i, (n, k) in enumerate(self.units) if pred(n, k))


_ORIG_EXEC = redis.Redis.execute_command
_ORIG_PIPE_EXEC = Pipeline.execute
_ORIG_IMMEDIATE = Pipeline.immediate_execute_command


@pytest.fixture
def guard(real_redis: redis.Redis, redis_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Guard]:
    g = Guard(redis.Redis.from_url(redis_url))

    def execute_command(self: redis.Redis, *args: Any, **kw: Any) -> Any:
        g.unit([args], "command")
        return _ORIG_EXEC(self, *args, **kw)

    def immediate(self: Pipeline, *args: Any, **kw: Any) -> Any:
        g.unit([args], "command")
        if str(args[0]).upper() == "WATCH":
            self._guard_watched = list(args[1:])  # type: ignore[attr-defined]
        return _ORIG_IMMEDIATE(self, *args, **kw)

    def execute(self: Pipeline, raise_on_error: bool = True) -> Any:
        stack = [c[0] for c in self.command_stack]
        if self.transaction and stack:
            watched = getattr(self, "_guard_watched", [])
            g.unit([("EXISTS", *watched), *stack] if watched else stack, "MULTI")
        else:
            for c in stack:
                g.unit([c], "pipelined")
        self._guard_watched = []  # type: ignore[attr-defined]
        return _ORIG_PIPE_EXEC(self, raise_on_error)

    monkeypatch.setattr(redis.Redis, "execute_command", execute_command)
    monkeypatch.setattr(Pipeline, "immediate_execute_command", immediate)
    monkeypatch.setattr(Pipeline, "execute", execute)
    yield g
    g.probe.close()


@pytest.fixture
def zones(store: Store) -> None:
    for apex in (ZONE, OTHER):
        store.add_zone(Zone(apex, ("ns1.test",), "hostmaster.test", "192.0.2.1"))


def confirmed(r: redis.Redis, account_id: int, name: str) -> bool:
    """What the DNS lookup answers: the global index's id, confirmed by that id's shard."""
    gid = r.hget(keys.names(), name)
    return gid == str(account_id) and r.hget(keys.shard_names(keys.shard_of(account_id)), name) == gid


def test_the_guard_sees_a_transaction_across_slots(guard: Guard, real_redis: redis.Redis) -> None:
    pipe = real_redis.pipeline()
    pipe.hset(keys.account(1), "a", "1")
    pipe.sadd(keys.accounts(), 1)
    pipe.execute()
    assert guard.bad and "MULTI" in guard.bad[0]


def test_every_admin_write_stays_in_one_slot(guard: Guard, store: Store, zones: None) -> None:
    r = store.r
    a = provision.create_account(store, f"a.{ZONE}", "heartbeat-c", aliases=[f"mx.{ZONE}"], wildcard=True).account
    b = provision.create_account(store, f"b.{OTHER}", "heartbeat-c").account
    assert keys.shard_of(a.id) != keys.shard_of(b.id)
    many = store.bulk_add_accounts([store.new_account(f"bulk{i}.{ZONE}", "heartbeat-c") for i in range(40)], chunk=16)
    assert {keys.shard_of(x.id) for x in many} == set(keys.all_shards())
    a = provision.change_account(store, a, provision.AccountChanges(aliases=[f"www.{ZONE}"], wildcard=False))
    store.rotate_key(a)
    issued = provision_acme.issue(store, a, f"www.{ZONE}")
    cred = issued.credential
    args = {"cred_key": keys.acme_credential(cred.id), "name": cred.name, "digest": cred.digest, "ttl_ms": 60_000}
    assert acme.set_value(r, account_id=a.id, value="a" * 43, **args) == 1
    assert badges.enable(r, a.id) and badges.account_for(r, badges.badge_id(r, a.id)) == a.id
    badges.disable(r, a.id)
    provision_acme.revoke(store, a, f"www.{ZONE}")
    store.zone_serial(ZONE)
    store.update_zone(store.get_zone(ZONE))  # type: ignore[arg-type]
    provision.page_accounts(store, zone=None, state=None, after=0, limit=10)
    store.statuses(store.account_ids(ZONE))
    ingest_summary(store)
    provision.remove_account(store, store.resolve(f"b.{OTHER}"))
    store.remove_zone(ZONE, force=True)
    assert guard.bad == []
    assert r.smembers(keys.accounts()) == set() and r.hlen(keys.names()) == 0
    assert all(r.hlen(keys.shard_names(s)) == 0 for s in keys.all_shards())


def test_names_are_claimed_then_confirmed_and_unconfirmed_then_released(
    guard: Guard, store: Store, zones: None
) -> None:
    acct = store.add_account(store.new_account(f"h.{ZONE}", "heartbeat-c", aliases=[f"mx.{ZONE}"]))
    confirm = keys.shard_names(keys.shard_of(acct.id))
    claim = guard.index(lambda n, k: keys.names() in k and "EVALSHA" in n)
    shard = guard.index(lambda n, k: confirm in k)
    listed = guard.index(lambda n, k: keys.accounts() in k)
    assert claim < shard < listed
    assert confirmed(store.r, acct.id, f"mx.{ZONE}")
    # the created event and the serial count are the shard's; the SOA serial sums them
    s = keys.shard_of(acct.id)
    assert [f["type"] for _, f in store.r.xrange(keys.events(s))] == ["created"]
    assert int(store.r.hget(keys.serials(s), ZONE)) == 1
    assert zone_serial.read(store.r, ZONE) == int(store.r.hget(keys.zone(ZONE), "serial")) + 1
    # a new database: every shard's live count starts at 0
    assert all(store.r.hget(keys.stats(i), "live") == "0" for i in keys.all_shards())

    guard.units.clear()
    store.remove_account(acct.id)
    shard = guard.index(lambda n, k: confirm in k)
    release = guard.index(lambda n, k: keys.names() in k and "EVALSHA" in n)
    assert shard < release
    assert store.r.hlen(keys.names()) == 0 and not store.r.exists(keys.account(acct.id))


def test_a_refused_name_writes_nothing(store: Store, zones: None) -> None:
    store.add_account(store.new_account(f"h.{ZONE}", "heartbeat-c"))
    store.r.hset(keys.names(), f"mx.{ZONE}", "1")  # a name only in the index: its holder confirms it?
    store.r.hset(keys.shard_names(keys.shard_of(1)), f"mx.{ZONE}", "1")  # ... yes
    before = {k: store.r.dump(k) for k in store.r.keys("*")}
    for fqdn, aliases, where in ((f"n.{ZONE}", [f"mx.{ZONE}"], "aliases.0"), (f"h.{ZONE}", [], "fqdn")):
        with pytest.raises(Conflict, match="is taken") as exc:
            store.add_account(store.new_account(fqdn, "heartbeat-c", aliases=aliases))
        assert exc.value.field == where
    assert {k: store.r.dump(k) for k in store.r.keys("*")} == before


def test_a_name_moves_between_shards(store: Store, zones: None) -> None:
    a = store.add_account(store.new_account(f"a.{ZONE}", "heartbeat-c", aliases=[f"x.{ZONE}"]))
    b = store.add_account(store.new_account(f"b.{ZONE}", "heartbeat-c"))
    with pytest.raises(Conflict, match="taken") as exc:
        store.save_account(b, replace(b, aliases=(f"x.{ZONE}",)))
    assert exc.value.field == "aliases.0" and not store.r.hexists(keys.account(b.id), CLAIM_FIELD)
    store.save_account(a, replace(a, aliases=()))
    assert store.save_account(b, replace(b, aliases=(f"x.{ZONE}",))).aliases == (f"x.{ZONE}",)
    assert confirmed(store.r, b.id, f"x.{ZONE}")
    assert not store.r.hexists(keys.shard_names(keys.shard_of(a.id)), f"x.{ZONE}")
    assert store.resolve(f"x.{ZONE}").id == b.id


def test_a_dead_writers_claim_is_taken_over_and_a_live_one_is_not(store: Store, zones: None) -> None:
    r = store.r
    # a writer that died after claiming: no hash, no confirmation
    r.hset(keys.names(), f"dead.{ZONE}", "999")
    # a writer still at work: its hash says it is claiming the name, since just now
    r.hset(keys.names(), f"busy.{ZONE}", "998")
    r.hset(keys.account(998), mapping=provision_names.claiming([f"busy.{ZONE}"]))
    assert store.account_id_for(f"dead.{ZONE}") is None  # not confirmed: no account
    took = store.add_account(store.new_account(f"dead.{ZONE}", "heartbeat-c"))
    assert store.account_id_for(f"dead.{ZONE}") == took.id
    assert confirmed(r, took.id, f"dead.{ZONE}")
    with pytest.raises(Conflict, match=f"busy.{ZONE} is taken"):
        store.add_account(store.new_account(f"busy.{ZONE}", "heartbeat-c"))
    # ... until its claim is older than the claim time: that writer died too
    old = int(time.time() * 1000) - provision_names.CLAIM_TTL_MS - 1
    r.hset(keys.account(998), mapping=provision_names.claiming([f"busy.{ZONE}"], now_ms=old))
    took = store.add_account(store.new_account(f"busy.{ZONE}", "heartbeat-c"))
    assert confirmed(r, took.id, f"busy.{ZONE}")


def test_a_writer_that_lost_its_claim_backs_out(store: Store, zones: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """A writer stalled past the claim time finds another account holding its name: it removes
    what it wrote and leaves the other's claim alone."""
    r = store.r
    real = provision_names.claim

    def claim_then_lose(client: Any, wanted: Any, attempts: int = 3) -> None:
        real(client, wanted, attempts)
        r.hset(keys.names(), f"slow.{ZONE}", "777")  # taken over while this writer stalled

    monkeypatch.setattr(provision_names, "claim", claim_then_lose)
    with pytest.raises(Conflict, match=f"slow.{ZONE} is taken"):
        store.add_account(store.new_account(f"slow.{ZONE}", "heartbeat-c"))
    assert r.hget(keys.names(), f"slow.{ZONE}") == "777"
    assert r.smembers(keys.accounts()) == set()
    assert all(r.hlen(keys.shard_names(s)) == 0 for s in keys.all_shards())
    gone = int(r.get(keys.account_seq()))
    assert not r.exists(keys.account(gone))
    assert [f["type"] for _, f in r.xrange(keys.events(keys.shard_of(gone)))] == ["created", "removed"]


def test_zone_listing_and_serial_read_every_shard(store: Store, zones: None) -> None:
    accts = store.bulk_add_accounts([store.new_account(f"n{i}.{OTHER}", "heartbeat-c") for i in range(20)])
    assert store.count_accounts(OTHER) == 20 and [a.id for a in store.list_accounts(OTHER)] == [a.id for a in accts]
    base = int(store.r.hget(keys.zone(OTHER), "serial"))
    store.r.hincrby(keys.serials(3), OTHER, 5)
    store.r.hincrby(keys.serials(11), OTHER, 2)
    assert store.zone_serial(OTHER) == base + 7
