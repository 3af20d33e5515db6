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

from hbdns import keys
from hbdns.liveness import BeatRequest, BeatResult
from hbdns.model import Account, Zone
from hbdns.store import Store
from notifier.consumer import GROUP
from notifier.events import Event
from tests.support.events import entries as stream_entries
from tests.support.events import settled as stream_settled
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


def events(r: redis.Redis, kind: str | None = None, account: int | None = None) -> list[Event]:
    """The transition stream, optionally only one type and one account."""
    out = [Event.from_fields(f"{shard}/{i}", f) for shard, i, f in stream_entries(r)]
    return [e for e in out if (kind is None or e.type == kind) and (account is None or e.account == account)]


def settled(r: redis.Redis) -> bool:
    """Every event read and acknowledged, nothing waiting in the notification queue."""
    return stream_settled(r, GROUP) and r.zcard(keys.notify_queue()) == 0


def spawn(service: str, tmp_path: Path, name: str, env: dict[str, str]) -> Process:
    """``python -m <service>.main`` (``sweeper`` or ``notifier``) with only ``env``'s HBDNS_* settings;
    ``name`` names its log and, for a notifier, its consumer."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("HBDNS_")}
    base.update(env)
    if service == "notifier":
        base["HBDNS_NOTIFY_CONSUMER"] = name
    log = tmp_path / f"{service}-{name}.log"
    return Process([sys.executable, "-m", f"{service}.main"], log, env=base, cwd=str(ROOT))
