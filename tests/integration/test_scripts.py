"""The script loader on a real redis-server: NOSCRIPT recovery on every call path, and every script
touching only the keys it is passed in KEYS (what Redis Cluster will demand).

The KEYS check runs each script with a prelude that shadows ``redis.call``/``redis.pcall``: before a
command runs, each of its key arguments (positions from Redis' own ``COMMAND`` table) must be one of
KEYS, or the script fails. The scenarios drive the real callers (Liveness, the listener's writer,
the backend's reader, the store; the notifier's dispatcher, queue, presence and SMS scheduler)
through every branch that touches a key.
"""

from __future__ import annotations

import collections
import json
import time
from collections.abc import Iterator, Sequence
from dataclasses import replace
from typing import Any

import pytest
import redis

from hbdns import acme, acme_credentials, config, keys, mass, notify_queue, provision_names, recovery_flush, scripts
from hbdns import keys_unsharded as old
from hbdns.event_trim import EventTrimmer
from hbdns.liveness import BeatRequest
from hbdns.mass import MassEvent
from hbdns.migrations import alive_per_family, live_count, sharded
from hbdns.model import Account, NotifyPrefs, Zone
from hbdns.ratelimit import Limit, RateLimiter
from hbdns.resp import BatchConnection, encode_command
from hbdns.store import Store, StoreError
from heartbeat_listener.ingest import IngestMark
from heartbeat_listener.redis_io import RedisBeats
from notifier.channel import Transport, TransportError
from notifier.main import Notifier
from notifier.messages import Message
from notifier.outcomes import DEAD, DEFERRED, DROPPED, DUPLICATE, QUEUED
from pdns_backend.accounts import AccountReader
from sweeper.sweeper import Sweeper
from tests.support import services
from tests.support.clock import Clock
from tests.support.listener import ZONE
from tests.support.servers import wait_for

OTHER = "other.test"
PHONE2 = "+491709876543"
# the notifier's scripts get their scenario in a test of their own
NOTIFIER = frozenset(s.name for s in scripts.ALL if s.name.startswith("notify_"))


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def redis_ms(r: redis.Redis) -> int:
    sec, usec = r.time()
    return sec * 1000 + usec // 1000


def events(r: redis.Redis) -> list[dict[str, str]]:
    """Every shard's event stream's entries, oldest first."""
    entries: Any = [e for s in keys.all_shards() for e in r.xrange(keys.events(s))]
    return [fields for _, fields in sorted(entries, key=lambda e: tuple(map(int, e[0].split("-"))))]


# --- NOSCRIPT recovery ---------------------------------------------------------------------------


def test_redis_py_call_loads_a_flushed_script(real_redis: redis.Redis) -> None:
    real_redis.zadd(keys.deadlines(7), {"7": 1})
    real_redis.script_flush()
    assert scripts.DUE(real_redis, [keys.deadlines(7)], [10]) == ["7"]
    assert real_redis.script_exists(scripts.DUE.sha) == [True]


def test_pipeline_loads_a_flushed_script_before_it_runs(
    store: Store, real_redis: redis.Redis, account: Account
) -> None:
    store.liveness.beat(BeatRequest(account.id, ZONE, 1, ipv4="203.0.113.7", counter=now_ms()))
    wait_for(lambda: store.liveness.due(), 5, what="deadline due")
    real_redis.script_flush()
    [done] = store.liveness.neutralize_if_due([account.id])  # NEUTRALIZE on a pipeline
    assert done.account_id == account.id and not store.status(account).live


def test_transaction_with_a_flushed_script_records_its_event(store: Store, real_redis: redis.Redis) -> None:
    store.add_zone(Zone(ZONE, ("ns1.test",), "hostmaster.test", "192.0.2.1"))
    real_redis.script_flush()
    acct = store.add_account(store.new_account(f"new.{ZONE}", "heartbeat-c"))  # RECORD inside MULTI/EXEC
    [event] = [fields for _, fields in real_redis.xrange(keys.events(keys.shard_of(acct.id)))]
    assert (event["type"], event["account"]) == ("created", str(acct.id))


def test_raw_call_loads_a_flushed_script(real_redis: redis.Redis) -> None:
    real_redis.zadd(keys.deadlines(7), {"7": 1})
    conn = BatchConnection(real_redis)
    payload = scripts.DUE.command([keys.deadlines(7)], ["10"])
    assert scripts.DUE.call(conn, payload) == ["7"]
    real_redis.script_flush()
    assert scripts.DUE.call(conn, payload) == ["7"]
    conn.send(encode_command("PING"), 1)
    with pytest.raises(RuntimeError, match="in flight"):  # a reply would be taken for another's
        scripts.DUE.call(conn, payload)


def test_backend_reader_survives_a_restart_of_redis(store: Store, real_redis: redis.Redis, account: Account) -> None:
    """What a restart does to the lookup path: the connection is gone and the script cache empty."""
    reader = AccountReader(real_redis)
    assert reader.fetch([account.fqdn])[0][1] == account.fqdn
    real_redis.client_kill_filter(_type="normal", skipme=True)
    real_redis.script_flush()
    assert reader.fetch([account.fqdn])[0][1] == account.fqdn
    assert reader.connection().connected


# --- every key in KEYS ---------------------------------------------------------------------------

_PRELUDE = """
local __real = redis
local __declared = {}
for _, k in ipairs(KEYS) do __declared[k] = true end
local __spec = %s
local function __check(cmd, ...)
  local name = string.lower(cmd)
  local s = __spec[name]
  if s == nil then error('keys check: cannot tell the keys of ' .. name) end
  if s[1] == 0 then return end
  local n = select('#', ...)
  local last = s[2]
  if last < 0 then last = n + 1 + last end
  for i = s[1], last, s[3] do
    local k = select(i, ...)
    if not __declared[k] then error('keys check: ' .. name .. ' ' .. tostring(k) .. ' is not in KEYS') end
  end
end
local redis = setmetatable({
  call = function(cmd, ...) __check(cmd, ...) return __real.call(cmd, ...) end,
  pcall = function(cmd, ...) __check(cmd, ...) return __real.pcall(cmd, ...) end,
}, {__index = __real})
"""


def _key_specs(r: redis.Redis) -> str:
    """Lua table: command -> {first, last, step} key positions, for commands whose keys those give."""
    rows = []
    for name, info in sorted(r.command().items()):
        if "movablekeys" in info["flags"]:
            continue  # keys found by parsing the arguments: the check refuses the command
        rows.append(f"[{name!r}] = {{{info['first_key_pos']}, {info['last_key_pos']}, {info['step_count']}}}")
    return "{" + ", ".join(rows) + "}"


class _Checked(scripts.Script):
    """The same script behind the KEYS check; counts its calls."""

    calls: collections.Counter[str] = collections.Counter()

    def __call__(self, client: Any, keys: Sequence[str] = (), args: Sequence[Any] = ()) -> Any:
        self.calls[self.name] += 1
        return super().__call__(client, keys, args)

    def call(self, conn: BatchConnection, payload: bytes) -> Any:
        self.calls[self.name] += 1
        return super().call(conn, payload)


@pytest.fixture
def checked(real_redis: redis.Redis, monkeypatch: pytest.MonkeyPatch) -> Iterator[collections.Counter[str]]:
    """Every script of :data:`hbdns.scripts.ALL` replaced by its checked twin; yields the call counts."""
    prelude = _PRELUDE % _key_specs(real_redis)
    _Checked.calls = collections.Counter()
    for attr, value in list(vars(scripts).items()):
        if isinstance(value, scripts.Script) and value in scripts.ALL:
            monkeypatch.setattr(scripts, attr, _Checked(value.name, prelude + value.source))
    yield _Checked.calls


def test_the_check_refuses_a_key_built_in_the_script(real_redis: redis.Redis) -> None:
    prelude = _PRELUDE % _key_specs(real_redis)
    source = "return redis.call('HGET', KEYS[1] .. ':x', 'f')"
    bad = scripts.Script("bad", source)
    assert bad(real_redis, [keys.zones()]) is None  # Redis itself lets it through
    with pytest.raises(redis.ResponseError, match="not in KEYS"):
        _Checked("bad", prelude + source)(real_redis, [keys.zones()])
    with pytest.raises(redis.ResponseError, match="cannot tell"):
        _Checked("bad", prelude + "return redis.call('EVAL', 'return 1', 0)")(real_redis)


def test_every_script_touches_only_its_keys(
    checked: collections.Counter[str], store: Store, real_redis: redis.Redis, account: Account
) -> None:
    store.add_zone(Zone(OTHER, ("ns1.test",), "hostmaster.test", "192.0.2.1"))
    other = store.add_account(store.new_account(f"o.{OTHER}", "heartbeat-c"))  # RECORD (created)
    lv = store.liveness
    writer = RedisBeats(BatchConnection(real_redis), lv)
    t = now_ms()
    # beat: recovered + ip_changed in two zones, fast path, replay, stale, v6 change, rekey, gone
    assert writer.beats([BeatRequest(account.id, ZONE, 60_000, ipv4="203.0.113.7", counter=t)])[0].changed
    assert lv.beats([BeatRequest(other.id, OTHER, 60_000, ipv4="203.0.113.8", counter=t)])[0].changed
    batch = [
        BeatRequest(account.id, ZONE, 60_000, ipv4="203.0.113.7", counter=t + 1),  # fast path
        BeatRequest(other.id, OTHER, 60_000, ipv6="2001:db8::8", counter=t + 1),  # v6 change
        BeatRequest(account.id, ZONE, 60_000, ipv4="203.0.113.7", counter=t + 1),  # replay
        BeatRequest(other.id, OTHER, 60_000, ipv4="203.0.113.8", counter=t + 900_000),  # stale
        BeatRequest(account.id, ZONE, 60_000, ipv4="203.0.113.7", counter=t + 2, fp="0" * 16),  # rekey
        BeatRequest(99_999, ZONE, 60_000, ipv4="203.0.113.9", counter=t + 2),  # gone
    ]
    statuses = [r.status for r in writer.beats(batch)]
    assert statuses == ["ok", "ok", "replay", "stale", "rekey", "gone"]
    assert writer.beats([BeatRequest(other.id, ZONE, 60_000, counter=t + 2)])[0].status == "rekey"  # not its zone
    # dyndns2 update (no counter), then offline
    lv.beats([BeatRequest(account.id, ZONE, 60_000, ipv4="203.0.113.10", source="update")])
    assert writer.beats([BeatRequest(account.id, ZONE, 60_000, counter=t + 3, offline=True)])[0].changed
    # expired but not swept: the next beat records the outage first
    lv.beats([BeatRequest(other.id, OTHER, 1, ipv4="203.0.113.8", counter=t + 3)])
    real_redis.delete(keys.alive(other.id, 6))  # its IPv6 went too
    wait_for(lambda: not real_redis.exists(keys.alive(other.id)), 5, what="alive key expired")
    writer.beats([BeatRequest(other.id, OTHER, 60_000, ipv4="203.0.113.8", counter=t + 4)])
    assert [e["type"] for e in events(real_redis)[-2:]] == ["neutralized", "recovered"]
    # due + neutralize: neutralized, still alive (deadline moved), gone, not due
    lv.beats([BeatRequest(other.id, OTHER, 1, ipv4="203.0.113.8", counter=t + 5)])
    lv.beats([BeatRequest(account.id, ZONE, 60_000, ipv4="203.0.113.7", counter=t + 6)])
    real_redis.zadd(keys.deadlines(keys.shard_of(account.id)), {str(account.id): 1})
    real_redis.zadd(keys.deadlines(keys.shard_of(99_999)), {"99999": 1})
    wait_for(lambda: len(lv.due()) == 3, 5, what="three deadlines due")
    assert [n.account_id for n in lv.sweep()] == [other.id]
    assert lv.neutralize_if_due([account.id]) == []  # no longer due
    # the backend's lookup: unknown name, first sight (the global index, then the shard confirms;
    # the two accounts' shards in one call), known id, stale id (refuted by its shard, found again)
    reader = AccountReader(real_redis)
    reader.fetch([f"nope.{ZONE}", account.fqdn, f"o.{OTHER}"])
    reader.fetch([account.fqdn])
    store.remove_account(other.id)  # RECORD (removed)
    store.add_account(store.new_account(f"o.{OTHER}", "heartbeat-c"))
    reader.fetch([f"o.{OTHER}"])
    # per family: a dual-stack account loses IPv6 to the sweeper (family_lost) and gets it back
    dual = store.add_account(store.new_account(f"d.{ZONE}", "heartbeat-c"))
    writer.beats([BeatRequest(dual.id, ZONE, 60_000, ipv4="203.0.113.20", counter=t + 10)])
    writer.beats([BeatRequest(dual.id, ZONE, 1, ipv6="2001:db8::20", counter=t + 11)])
    wait_for(lambda: not real_redis.exists(keys.alive(dual.id, 6)), 5, what="IPv6 alive key expired")
    assert [(n.account_id, n.family, n.lost) for n in lv.sweep()] == [(dual.id, 6, True)]
    writer.beats([BeatRequest(dual.id, ZONE, 60_000, ipv6="2001:db8::20", counter=t + 12)])
    # ... and again, this time found by its next beat before any sweep (recorded at the deadline)
    writer.beats([BeatRequest(dual.id, ZONE, 1, ipv6="2001:db8::20", counter=t + 13)])
    wait_for(lambda: not real_redis.exists(keys.alive(dual.id, 6)), 5, what="IPv6 alive key expired")
    lv.beats([BeatRequest(dual.id, ZONE, 60_000, source="update", fams="46")])  # dyndns2 'preserve' of both
    kinds = [e["type"] for e in events(real_redis) if e["account"] == str(dual.id)]
    assert kinds[-4:] == ["family_lost", "family_back", "family_lost", "family_back"], kinds
    # an older writer's layout: the legacy key and plain member, swept as both families; migrated
    real_redis.delete(keys.alive(dual.id, 4), keys.alive(dual.id, 6))
    real_redis.set(keys.alive_legacy(dual.id), "1", px=1)
    real_redis.zadd(keys.deadlines(keys.shard_of(dual.id)), {str(dual.id): 1})
    wait_for(lambda: not real_redis.exists(keys.alive_legacy(dual.id)), 5, what="legacy alive key expired")
    assert [(n.family, n.lost) for n in lv.neutralize_if_due([(dual.id, 0)])] == [(0, False)]
    real_redis.set(keys.alive_legacy(dual.id), "1", px=60_000)
    real_redis.zadd(keys.deadlines(keys.shard_of(dual.id)), {str(dual.id): now_ms() + 60_000})
    # the live counts: what the scripts kept through all of the above is what a recount finds
    ids = [int(i) for i in real_redis.smembers(keys.accounts())]
    assert sharded._live(real_redis, ids, "1", recount=True) == 0
    # hbdns migrate on an account in the unsharded layout (dual's hash there, without 'live'), with
    # an entry in the unsharded stream: per family, counted, then copied and removed
    old_hash = {k: v for k, v in real_redis.hgetall(keys.account(dual.id)).items() if k != "live"}
    real_redis.hset(old.account(dual.id), mapping=old_hash)
    real_redis.set(old.alive_legacy(dual.id), "1", px=60_000)
    real_redis.zadd(old.deadlines(), {str(dual.id): now_ms() + 60_000})
    assert alive_per_family.apply(real_redis) >= 1
    assert live_count.apply(real_redis) == 1 and live_count.apply(real_redis) == 0
    real_redis.xadd(old.events(), {"type": "created", "account": str(dual.id)})
    real_redis.hset(old.ingest(), "mark", now_ms())
    assert sharded.apply(real_redis) >= 1 and sharded.apply(real_redis) == 0
    # the second flush's schedule: claimed (leased), done unless rescheduled meanwhile
    recovery_flush.schedule(real_redis, {dual.id: 0, other.id: 0})
    claimed = dict(recovery_flush.claim_due(real_redis, 60_000))
    assert set(claimed) == {dual.id, other.id} and recovery_flush.claim_due(real_redis, 60_000) == []
    recovery_flush.schedule(real_redis, {other.id: 5})
    assert recovery_flush.done(real_redis, dual.id, claimed[dual.id])
    assert not recovery_flush.done(real_redis, other.id, claimed[other.id])
    # a rate-limit bucket: allowed and taken, then refused
    limiter = RateLimiter(real_redis)
    assert limiter.check(keys.ratelimit("test", "x"), Limit(per_minute=1, burst=1)) == 0
    assert limiter.check(keys.ratelimit("test", "x"), Limit(per_minute=1, burst=1)) > 0
    # ACME DNS-01 values: set (kept, trimmed), refused (revoked credential, name moved), read
    cred, _key = acme_credentials.make(real_redis, account.id, account.fqdn)
    args = {"cred_key": keys.acme_credential(cred.id), "name": account.fqdn, "digest": cred.digest, "ttl_ms": 60_000}
    for value in ("a" * 43, "b" * 43, "c" * 43):
        assert acme.set_value(real_redis, account_id=account.id, value=value, **args) in (1, 2)
    assert acme.set_value(real_redis, account_id=other.id, value="d" * 43, **args) == -1
    assert acme.values(real_redis, [account.fqdn, f"o.{OTHER}"]) == [["b" * 43, "c" * 43], []]
    # ingest health: a mark, an outage going on (the deadline that falls in it is held), the outage
    # closed by the next mark, a beat of the held account (no outage recorded), a held beat's age
    marker = IngestMark(real_redis, lambda: True, keep_ms=60_000, every=0.0, gap_ms=100)
    assert marker.step()
    held = store.add_account(store.new_account(f"held.{ZONE}", "heartbeat-c"))
    writer.beats([BeatRequest(held.id, ZONE, 1, ipv4="203.0.113.30", counter=t + 20)])
    mark = int(real_redis.hget(keys.ingest(keys.shard_of(held.id)), "mark"))
    wait_for(lambda: redis_ms(real_redis) > mark + 150, 5, what="an ingest silence")
    assert lv.sweep() == [] and real_redis.hexists(keys.account(held.id), "held4")
    assert marker.step() and len(json.loads(real_redis.hget(keys.ingest(keys.shard_of(held.id)), "gaps"))) == 1
    before = len(events(real_redis))
    writer.held.add([BeatRequest(held.id, ZONE, 60_000, ipv4="203.0.113.30", counter=t + 21)])
    writer.conn.close()  # the held beat runs on the next connection, with its age
    writer.beats([BeatRequest(account.id, ZONE, 60_000, ipv4="203.0.113.7", counter=t + 22)])
    assert len(events(real_redis)) == before and not real_redis.hexists(keys.account(held.id), "held4")
    assert real_redis.exists(keys.alive(held.id, 4))
    # the events stream's trim (each shard's): read entries, one still pending, then the hard cap
    stream = keys.events(keys.shard_of(account.id))
    real_redis.xgroup_create(stream, "t", id="0")
    real_redis.xreadgroup("t", "c", {stream: ">"}, count=2)
    assert EventTrimmer(real_redis, keep=1, cap=3).step().capped > 0
    # a mass outage: started (twice: once, while it holds), its hold over (twice: once)
    event, mk = MassEvent(mass.SYSTEM, 1, 0, 2, 5, 10), [keys.mass_events(), keys.events(keys.MASS_SHARD)]
    over = replace(event, over=True)
    for op, ev, now, want in (
        ("start", event, 1, 1),
        ("start", event, 1, 0),
        ("over", over, 3, 1),
        ("over", over, 3, 0),
    ):
        assert scripts.MASS_MARK(real_redis, mk, [op, ev.scope, ev.to_json(), now]) == want
    assert set(checked) == {s.name for s in scripts.ALL} - NOTIFIER, "a script without a scenario here"


def test_every_store_script_touches_only_its_keys(
    checked: collections.Counter[str], store: Store, real_redis: redis.Redis, account: Account
) -> None:
    """The admin writes' scripts (names claimed and released, admin transitions, ACME values), each
    branch: a claim taken, a dead writer's claim taken over, a release of a name no longer its."""
    store.add_zone(Zone(OTHER, ("ns1.test",), "hostmaster.test", "192.0.2.1"))
    real_redis.hset(keys.names(), f"dead.{OTHER}", "999")  # a dead writer's claim: taken over
    other = store.add_account(store.new_account(f"o.{OTHER}", "heartbeat-c", aliases=[f"dead.{OTHER}"], wildcard=True))
    with pytest.raises(StoreError, match="taken"):  # refused before the claim ...
        store.add_account(store.new_account(f"o.{OTHER}", "heartbeat-c"))
    # ... and by the claim itself, when the name went between the check and it
    real_redis.hset(keys.names(), f"late.{OTHER}", str(account.id))
    real_redis.hset(keys.shard_names(keys.shard_of(account.id)), f"late.{OTHER}", str(account.id))
    with pytest.raises(provision_names.Taken):
        provision_names.claim(real_redis, {f"late.{OTHER}": other.id, f"free.{OTHER}": other.id})
    assert not real_redis.hexists(keys.names(), f"free.{OTHER}")  # all or nothing
    other = store.save_account(other, replace(other, aliases=(f"x.{OTHER}",), wildcard=False))
    assert provision_names.release(real_redis, other.id, [f"late.{OTHER}"]) == 0  # not its own
    cred, _key = acme_credentials.make(real_redis, other.id, f"x.{OTHER}")
    args = {"cred_key": keys.acme_credential(cred.id), "name": cred.name, "digest": cred.digest, "ttl_ms": 60_000}
    assert acme.set_value(real_redis, account_id=other.id, value="a" * 43, **args) == 1
    store.remove_account(other.id)  # RECORD (removed), NAME_RELEASE
    assert acme.set_value(real_redis, account_id=other.id, value="b" * 43, **args) == -1
    assert {"name_claim", "name_release", "record", "acme_set"} <= set(checked)


class Receiver(Transport):
    """A receiver the test switches: ``down`` fails it as a whole, ``refuse`` one recipient; keeps what it accepted."""

    def __init__(self, channel: str) -> None:
        self.channel = channel
        self.down: TransportError | None = None
        self.refuse: dict[str, TransportError] = {}
        self.got: list[Message] = []

    def notify(self, message: Message) -> None:
        err = self.down or self.refuse.get(message.recipient)
        if err is not None:
            raise err
        self.got.append(message)


def _message(n: int, channel: str, recipient: str) -> Message:
    return Message(channel, recipient, f"s{n}", f"t{n}", 1, "x.example.test", "ip_changed", f"{n}-0")


def test_every_notifier_script_touches_only_its_keys(
    checked: collections.Counter[str], real_redis: redis.Redis, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the notifier's scripts run on its own clock (ARGV), not Redis': a frozen one ahead of Redis', so
    # every deferred SMS is due and no step depends on how fast the test runs
    clock = Clock(float(int(time.time()) + 600))  # whole seconds: the holds keep ms
    env = services.env_for(redis_url, HBDNS_NOTIFY_BACKOFF="2", HBDNS_NOTIFY_CLAIM_IDLE="60")
    store = Store(real_redis, config.load(env))
    prefs = NotifyPrefs(webhook="none", sms_min_outage=0)
    acct = services.add_account(store, "n", emails=["ops@example.org"], phones=[services.PHONE], prefs=prefs)
    mail, sms, mail2 = Receiver("email"), Receiver("sms"), Receiver("email")
    wiring: dict[str, dict[str, Transport]] = {"n1": {"email": mail, "sms": sms}, "n2": {"email": mail2}}
    n1, n2 = (
        Notifier(config.load({**env, "HBDNS_NOTIFY_CONSUMER": name}), r=real_redis, transports=t, clock=clock)
        for name, t in wiring.items()
    )

    def drain() -> None:
        while n1.consumer.step(block_ms=50):
            pass

    try:
        n1.join()
        # an outage while the relay is down: the offline e-mail queued, the relay held (marker, outage, hold, put)
        mail.down = TransportError("connection refused", destination=True)
        services.beat(store, acct)
        sweeper = Sweeper(store.liveness)
        wait_for(lambda: sweeper.step() or services.events(real_redis, "neutralized", acct.id), 10, what="outage")
        drain()
        start = clock.now
        [(_, due)] = notify_queue.queued_jobs(real_redis)
        assert due == start + 2 and notify_queue.stats(real_redis, start).holds["email"]["failures"] == 1
        assert n1.sms.step() == 1  # the outage SMS, claimed from the deferred ones
        # back online: the e-mail recovery (merged: its offline e-mail never went) waits for the relay;
        # the SMS recovery goes plain
        services.beat(store, acct, services.LONG)
        drain()
        assert len(notify_queue.queued_jobs(real_redis)) == 2
        assert n1.sms.step() == 1
        assert ["OFFLINE" in m.text for m in sms.got] == [True, False]
        # an SMS refused once for its recipient: due again in 2 s, within the relay's probe window
        sms.refuse[PHONE2] = TransportError("451 try later")
        clock.now = start + 1
        assert n1.dispatcher.send(_message(1, "sms", PHONE2)).status == QUEUED
        # the relay answers: one probe, the offline e-mail moot, the recovery merged; the hold ends and
        # what was due within the probe window is due now
        mail.down = None
        sms.refuse.clear()
        clock.now = start + 2
        assert n1.dispatcher.retry_step() == 2
        [merged] = mail.got
        assert "was offline for" in merged.subject and notify_queue.stats(real_redis, clock.now).holds == {}
        [(_, due)] = notify_queue.queued_jobs(real_redis)
        assert due == clock.now
        assert n1.dispatcher.retry_step() == 1 and len(sms.got) == 3
        # dead letters beyond the cap (dropped and counted), one retried from the dead letters
        monkeypatch.setattr("notifier.queue.DEAD_LETTER_CAP", 1)
        for n in (2, 3):
            mail.refuse[f"u{n}@example.org"] = TransportError("550 no such user", permanent=True)
        out = [n1.dispatcher.send(_message(n, "email", f"u{n}@example.org")) for n in (2, 3)]
        assert [o.status for o in out] == [DEAD, DEAD] and real_redis.get(keys.notify_dead_dropped()) == "1"
        mail.refuse.clear()
        assert len(notify_queue.retry_dead(real_redis, None, now=clock.now)) == 1
        real_redis.zadd(keys.notify_queue(), {"gone": clock.now})  # its job already removed
        assert n1.dispatcher.retry_step() == 1 and mail.got[-1].recipient == "u3@example.org"
        # a live notifier's send waits; once it is dead its send and its claimed jobs are taken over
        n2.join()
        n1.presence.beat()
        a, b = _message(4, "email", "a@example.org"), _message(5, "email", "b@example.org")
        assert n2.dispatcher.markers.claim([(a.key, False)], n2.presence.token, n2.presence.live()) == ["go"]
        assert n1.dispatcher.send(a).status == DEFERRED
        mail2.refuse[b.recipient] = TransportError("451 try later")
        assert n2.dispatcher.send(b).status == QUEUED
        clock.now += 2
        assert len(n2.dispatcher.queue.claim(clock.now, 60, 10, n2.presence.token)) == 2  # then n2 dies
        clock.now += 6
        assert n1.liveness_step() == 2
        assert n1.dispatcher.retry_step() == 2 and {m.recipient for m in mail.got[-2:]} == {a.recipient, b.recipient}
        assert notify_queue.queued_jobs(real_redis) == [] and n1.dispatcher.send(a).status == DUPLICATE
        # an offline message read after its outage ended is moot
        [neut] = services.events(real_redis, "neutralized", acct.id)
        stale = Message(
            "email", "late@example.org", "s", "t", acct.id, acct.fqdn, "neutralized", "9-0", outage_ms=neut.at_ms
        )
        assert n1.dispatcher.send(stale).status == DROPPED
    finally:
        n1.stop()
        n2.stop()
    assert set(checked) >= NOTIFIER, f"a notifier script without a scenario here: {sorted(NOTIFIER - set(checked))}"
