"""Each service's own metrics, on fakeredis (it runs the scripts): the sweeper's transitions and the
liveness counts it reads from the deadlines set, the notifier's outcomes, delivery delay and queue,
the update API's answers by dyndns2 code."""

from __future__ import annotations

import base64
import time
from dataclasses import replace

import redis
from prometheus_client import CollectorRegistry, generate_latest

from hbdns import config, keys
from hbdns.liveness import BeatRequest
from hbdns.mass import SYSTEM, MassEvent
from hbdns.metrics import parse_metrics
from hbdns.model import Zone
from hbdns.passwords import hash_password
from hbdns.purge import Purger
from hbdns.store import Store
from notifier.channel import Transport, TransportError
from notifier.consumer import GROUP
from notifier.counters import Counters
from notifier.dispatch import Dispatcher
from notifier.messages import Message
from notifier.metrics import CountersCollector, NotifierMetrics, QueueCollector, event_ms
from notifier.presence import Presence
from sweeper.mass_metrics import MassCollector
from sweeper.metrics import LivenessCollector, SweeperMetrics, liveness_counts
from sweeper.sweeper import Sweeper
from tests.support.servers import wait_for
from update_api.app import create_app
from update_api.service import UpdateService

ZONE = "example.test"


def scrape(registry: CollectorRegistry) -> dict[str, float]:
    return parse_metrics(generate_latest(registry).decode())


def _store(r: redis.Redis) -> Store:
    store = Store(r, config.load({}))
    store.add_zone(Zone(apex=ZONE, ns=("ns1.example.test",), hostmaster="hm.example.test", neutral_ipv4="192.0.2.1"))
    return store


def test_sweeper_counts_transitions_and_reads_live_neutral_backlog_and_lag(fake_redis: redis.Redis) -> None:
    store = _store(fake_redis)
    live, due, _never = (store.add_account(store.new_account(f"{n}.{ZONE}", "heartbeat-c")) for n in "abc")
    for account, expiry in ((live, 600_000), (due, 1)):
        store.liveness.beat(BeatRequest(account_id=account.id, zone=ZONE, expiry_ms=expiry, ipv4="198.51.100.7"))
    registry = CollectorRegistry()
    metrics = SweeperMetrics(registry)
    registry.register(LivenessCollector(fake_redis))
    wait_for(lambda: liveness_counts(fake_redis)["lag"] > 0.01, 5, what="the short deadline passing")
    m = scrape(registry)
    assert m["hbdns_accounts_counted"] == 1  # a new database counts from its first account
    assert m['hbdns_accounts{state="live"}'] == 2  # as recorded: the due one until the sweep records it
    assert m['hbdns_accounts{state="neutral"}'] == 1
    assert m["hbdns_sweep_backlog"] == 1 and m["hbdns_sweep_lag_seconds"] > 0
    assert m["hbdns_sweeper_redis_up"] == 1

    assert Sweeper(store.liveness, metrics=metrics).step() == 1
    m = scrape(registry)
    assert m['hbdns_sweeper_neutralized_total{via="sweep"}'] == 1
    assert m["hbdns_sweeper_sweeps_total"] == 1 and m["hbdns_sweeper_sweep_seconds_count"] == 1
    assert abs(m["hbdns_sweeper_last_sweep_timestamp_seconds"] - time.time()) < 60
    assert m["hbdns_sweep_backlog"] == 0 and m["hbdns_sweep_lag_seconds"] == 0
    assert m['hbdns_accounts{state="live"}'] == 1 and m['hbdns_accounts{state="neutral"}'] == 2
    store.liveness.beat(BeatRequest(account_id=due.id, zone=ZONE, expiry_ms=600_000, ipv4="198.51.100.8"))
    assert scrape(registry)['hbdns_accounts{state="live"}'] == 2  # recovered
    store.liveness.beat(BeatRequest(account_id=due.id, zone=ZONE, expiry_ms=600_000, offline=True))
    assert scrape(registry)['hbdns_accounts{state="live"}'] == 1  # the offline beat
    store.remove_account(live.id)  # a removed live account leaves both counts
    m = scrape(registry)
    assert m['hbdns_accounts{state="live"}'] == 0 and m['hbdns_accounts{state="neutral"}'] == 2


def test_accounts_are_not_exported_before_the_count_exists(fake_redis: redis.Redis) -> None:
    store = _store(fake_redis)
    store.add_account(store.new_account(f"a.{ZONE}", "heartbeat-c"))
    fake_redis.delete(*(keys.stats(s) for s in keys.all_shards()))  # a database of the version before the count
    registry = CollectorRegistry()
    registry.register(LivenessCollector(fake_redis))
    m = scrape(registry)
    assert m["hbdns_accounts_counted"] == 0 and not any(k.startswith("hbdns_accounts{") for k in m)
    assert m["hbdns_sweep_backlog"] == 0


def test_sweeper_liveness_counts_report_redis_down() -> None:
    dead = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2)
    registry = CollectorRegistry()
    registry.register(LivenessCollector(dead))
    m = scrape(registry)
    assert m["hbdns_sweeper_redis_up"] == 0 and "hbdns_sweep_backlog" not in m


class Flaky(Transport):
    """E-mail that fails permanently for one recipient and delivers the others."""

    channel = "email"

    def notify(self, message: Message) -> None:
        if message.recipient.startswith("bad"):
            raise TransportError("550 no such user", permanent=True)


def test_notifier_counts_outcomes_delivery_delay_and_reads_the_queue(fake_redis: redis.Redis) -> None:
    now = 2_000_000.0
    settings = config.load({"HBDNS_NOTIFY_BACKOFF": "2"})
    presence = Presence(fake_redis, "n1", ttl=5, clock=lambda: now)
    presence.join()
    registry = CollectorRegistry()
    metrics = NotifierMetrics(registry)
    registry.register(QueueCollector(fake_redis, GROUP))
    d = Dispatcher(fake_redis, {"email": Flaky()}, settings, presence=presence, clock=lambda: now, metrics=metrics)
    try:
        event = f"{int((now - 3) * 1000)}-0"  # recorded 3 s before the send
        base = Message("email", "ok@example.test", "s", "t", 7, f"h.{ZONE}", "ip_changed", event)
        d.send_all([base, replace(base, recipient="bad@example.test")])
        d.send(base)  # again: sent before
    finally:
        d.close()
    m = scrape(registry)
    assert m['hbdns_notifier_messages_total{channel="email",result="sent"}'] == 1
    assert m['hbdns_notifier_messages_total{channel="email",result="dead"}'] == 1
    assert m['hbdns_notifier_messages_total{channel="email",result="duplicate"}'] == 1
    assert m['hbdns_notifier_delivery_delay_seconds_count{channel="email"}'] == 1
    assert m['hbdns_notifier_delivery_delay_seconds_sum{channel="email"}'] == 3.0
    assert m['hbdns_notifier_delivery_delay_seconds_bucket{channel="email",le="2.5"}'] == 0
    assert m['hbdns_notifier_delivery_delay_seconds_bucket{channel="email",le="5.0"}'] == 1
    assert m["hbdns_notifier_dead_letters"] == 1 and m["hbdns_notifier_redis_up"] == 1
    assert m["hbdns_notifier_queue_depth"] == 0 and m["hbdns_notifier_queue_oldest_seconds"] == 0
    assert "hbdns_notifier_stream_lag" not in m  # no stream yet

    # a queued retry: depth and the age of the oldest; the consumer group's backlog
    fake_redis.zadd(keys.notify_queue(), {"j1": time.time() - 30})
    fake_redis.zadd(keys.notify_queued_since(), {"j1": time.time() - 120})
    for shard in (3, 7):  # summed over the shard streams
        fake_redis.xgroup_create(keys.events(shard), GROUP, id="0", mkstream=True)
        fake_redis.xadd(keys.events(shard), {"type": "created"})
    fake_redis.xreadgroup(GROUP, "n1", {keys.events(7): ">"})
    m = scrape(registry)
    assert m["hbdns_notifier_queue_depth"] == 1
    assert 119 <= m["hbdns_notifier_queue_oldest_seconds"] < 180
    assert 29 <= m["hbdns_notifier_queue_overdue_seconds"] < 90
    assert m["hbdns_notifier_stream_pending"] == 1 and m["hbdns_notifier_stream_lag"] == 1


def test_the_sms_counts_are_exported() -> None:
    counters = Counters()
    registry = CollectorRegistry()
    registry.register(CountersCollector(counters))
    assert scrape(registry)["hbdns_notifier_sms_sent_total"] == 0
    for segments in (1, 1, 3):
        counters.inc("sms_sent_total")
        counters.inc("sms_segments_total", segments)
        counters.inc(f"sms_sent_segments_{segments}")
    counters.inc("sms_cut_total")
    m = scrape(registry)
    assert m["hbdns_notifier_sms_sent_total"] == 3 and m["hbdns_notifier_sms_segments_total"] == 5
    assert m['hbdns_notifier_sms_sent_by_segments_total{segments="1"}'] == 2
    assert m['hbdns_notifier_sms_sent_by_segments_total{segments="3"}'] == 1
    assert m["hbdns_notifier_sms_cut_total"] == 1


def test_event_time_is_read_from_the_stream_id() -> None:
    assert event_ms("5/1733000000123-4") == 1733000000123
    assert event_ms("1733000000123-4") == 1733000000123  # an id from before sharding
    assert event_ms("legacy") is None and event_ms("16/1-0") is None and event_ms("x/1-0") is None


def test_update_api_counts_answers_by_code(fake_redis: redis.Redis) -> None:
    store = _store(fake_redis)
    account = store.new_account(f"home.{ZONE}", "setip-c")
    store.add_account(replace(account, pw_hash=hash_password("pw", n=16)))
    registry = CollectorRegistry()
    client = create_app(UpdateService(config.load({}), fake_redis, Purger([], "")), registry=registry).test_client()

    def update(user: str, pw: str, host: str) -> str:
        auth = {"Authorization": "Basic " + base64.b64encode(f"{user}:{pw}".encode()).decode()}
        query = f"/nic/update?hostname={host}&myip=45.0.0.9"
        return client.get(query, headers=auth, environ_base={"REMOTE_ADDR": "45.0.0.9"}).get_data(as_text=True)

    assert update(f"home.{ZONE}", "pw", f"home.{ZONE}").startswith("good")
    assert update(f"home.{ZONE}", "pw", f"home.{ZONE}").startswith("nochg")
    assert update(f"home.{ZONE}", "wrong", f"home.{ZONE}").startswith("badauth")
    m = scrape(registry)
    for code in ("good", "nochg", "badauth"):
        assert m[f'hbdns_update_answers_total{{code="{code}"}}'] == 1, code
    assert m['hbdns_update_requests_total{endpoint="update.update",method="GET",status="200"}'] == 2
    assert m['hbdns_update_requests_total{endpoint="update.update",method="GET",status="401"}'] == 1


def test_the_sweeper_exports_the_events_stream_and_mass_outages_from_redis(fake_redis: redis.Redis) -> None:
    """What the operator is alarmed by (issue 20): a group's lag, events lost to the hard cap, a
    mass outage holding its customers' messages."""
    fake_redis.xadd(keys.events(4), {"type": "neutralized"})
    fake_redis.xgroup_create(keys.events(4), "hbdns-notifier", id="0")
    fake_redis.hset(keys.events_trim(4), mapping={"capped": 7, "unread": 3, "unread:hbdns-notifier": 3})
    fake_redis.hset(keys.events_trim(9), mapping={"capped": 2})  # summed over the shards
    now = int(time.time() * 1000)
    event = MassEvent(scope=SYSTEM, started_ms=now, window_start_ms=now - 15_000, hold_until_ms=now + 60_000,
                      silent=900, of=1000)  # fmt: skip
    fake_redis.hset(keys.mass_events(), SYSTEM, event.to_json())
    registry = CollectorRegistry()
    registry.register(MassCollector(fake_redis))
    value = registry.get_sample_value
    assert value("hbdns_events_stream_length") == 1
    assert value("hbdns_events_capped_total") == 9
    assert value("hbdns_events_dropped_unread_total", {"group": "hbdns-notifier"}) == 3
    assert value("hbdns_mass_outage_active", {"scope": SYSTEM}) == 1
    assert value("hbdns_mass_outage_silent_accounts", {"scope": SYSTEM}) == 900
    fake_redis.hset(keys.mass_events(), SYSTEM, replace(event, hold_until_ms=now - 1).to_json())
    assert value("hbdns_mass_outage_active", {"scope": SYSTEM}) == 0
