"""The sweeper and the notifier as the integration tests run them: settings with a fast plan (an
account neutralizes 0.6 s after its last beat), accounts in one zone, beats, the transition stream,
and the real service processes (``python -m sweeper.main``, ``python -m notifier.main``)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import redis

from hbdns import event_streams, keys
from hbdns.liveness import BeatRequest, BeatResult
from hbdns.model import Account, Zone
from hbdns.store import Store
from notifier.consumer import GROUP
from notifier.events import Event
from tests.support.servers import METRICS_OFF, Process
from tests.support.sinks import HttpSink, SmtpSink

ROOT = Path(__file__).resolve().parents[2]
PLANS = json.dumps({"test-fast": {"kind": "heartbeat", "interval": 0.2, "misses": 3, "ttl": 1}})
ZONE = "example.test"
LONG = 600_000  # expiry of a recovery beat: stays live for the rest of the test
PHONE = "+491701234567"


def env_for(redis_url: str, smtp: SmtpSink | None = None, sms: HttpSink | None = None, **extra: str) -> dict[str, str]:
    """``HBDNS_*`` settings for a sweeper or notifier on ``redis_url``, sending to the given sinks."""
    env = {
        **METRICS_OFF,
        "HBDNS_REDIS_URL": redis_url,
        "HBDNS_PLANS": PLANS,
        "HBDNS_SWEEP_INTERVAL": "0.1",
        "HBDNS_NOTIFY_BACKOFF": "0.05",
        "HBDNS_NOTIFY_CLAIM_IDLE": "1",
        "HBDNS_SMTP_TIMEOUT": "20",
        "HBDNS_WEBHOOK_SECRET": "whsec-test",
        "HBDNS_LOG_LEVEL": "info",
        "HBDNS_MASS_SETTLE": "0",  # outage messages at once (tests/integration/test_mass_events.py sets it)
    }
    if smtp is not None:
        env.update(HBDNS_SMTP_HOST="127.0.0.1", HBDNS_SMTP_PORT=str(smtp.port))
    if sms is not None:
        env.update(
            HBDNS_SMS_URL=sms.url + "/sms", HBDNS_SMS_AUTH="basic", HBDNS_SMS_USER="gw", HBDNS_SMS_PASSWORD="gwpw"
        )
    env.update(extra)
    return env


def add_account(store: Store, name: str, **kw: Any) -> Account:
    """``name``.example.test on the fast plan (the zone is made on first use)."""
    if store.get_zone(ZONE) is None:
        store.add_zone(
            Zone(apex=ZONE, ns=("ns1.example.test",), hostmaster="hostmaster.example.test", neutral_ipv4="192.0.2.1")
        )
    return store.add_account(store.new_account(f"{name}.{ZONE}", "test-fast", **kw))


def beat(store: Store, account: Account, expiry_ms: int | None = None, ip: str = "198.51.100.7") -> BeatResult:
    expiry = expiry_ms if expiry_ms is not None else store.plans[account.plan].expiry_ms
    return store.liveness.beat(BeatRequest(account_id=account.id, zone=account.zone, expiry_ms=expiry, ipv4=ip))


def _entry_order(item: tuple[int, str]) -> tuple[int, int, int]:
    ms, _, seq = item[1].partition("-")
    return int(ms), int(seq), item[0]


def events(r: redis.Redis, kind: str | None = None, account: int | None = None) -> list[Event]:
    """The transitions of every shard's stream in the order they were recorded, optionally only
    one type and one account."""
    entries = [(s, str(i), f) for s in keys.all_shards() for i, f in r.xrange(keys.events(s))]
    entries.sort(key=lambda e: _entry_order((e[0], e[1])))
    out = [Event.from_fields(event_streams.event_id(s, i, f), f) for s, i, f in entries]
    return [e for e in out if (kind is None or e.type == kind) and (account is None or e.account == account)]


def pending(r: redis.Redis, group: str = GROUP) -> list[tuple[str, str]]:
    """(event id, consumer) of every entry ``group`` was delivered and has not acknowledged."""
    out = []
    for s in keys.all_shards():
        for p in r.xpending_range(keys.events(s), group, min="-", max="+", count=1000):
            out.append((event_streams.event_id(s, p["message_id"]), str(p["consumer"])))
    return out


def consumers(r: redis.Redis, group: str = GROUP) -> set[str]:
    """The names of ``group``'s consumers on any shard stream."""
    return {str(c["name"]) for s in keys.all_shards() for c in r.xinfo_consumers(keys.events(s), group)}


def settled(r: redis.Redis) -> bool:
    """Every event read and acknowledged (every shard), nothing waiting in the notification queue."""
    g = event_streams.group_totals(r, GROUP)
    return g.shards == keys.SHARDS and g.pending == 0 and g.lag == 0 and r.zcard(keys.notify_queue()) == 0


def spawn(service: str, tmp_path: Path, name: str, env: dict[str, str]) -> Process:
    """``python -m <service>.main`` (``sweeper`` or ``notifier``) with only ``env``'s HBDNS_* settings;
    ``name`` names its log and, for a notifier, its consumer."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("HBDNS_")}
    base.update(env)
    if service == "notifier":
        base["HBDNS_NOTIFY_CONSUMER"] = name
    log = tmp_path / f"{service}-{name}.log"
    return Process([sys.executable, "-m", f"{service}.main"], log, env=base, cwd=str(ROOT))
