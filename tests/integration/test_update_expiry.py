"""Expiry plans ("Ablaufzeit"): an update-only account goes neutral when its plan's expiry passes without
an update, with no sweeper running (the backend answers from the exact ``alive`` key), and recovers on
the next update. Plans are shortened to seconds through ``HBDNS_PLANS``."""

from __future__ import annotations

import base64
import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from hbdns import config, keys
from hbdns.model import Account, Zone
from hbdns.store import Store
from tests.support.pdns import PdnsServer
from tests.support.servers import wait_for
from tests.support.update_api import UpdateApiServer

ZONE = "dyn.example.net"
NEUTRAL = "192.0.2.1"
PW = "expiry-pw"
EXPIRY_S = 3
PLANS = json.dumps(
    {"setip-c": {"interval": EXPIRY_S, "misses": 1}, "business-c": {"interval": EXPIRY_S + 1, "misses": 1}}
)


def _update(api: UpdateApiServer, host: str, myip: str) -> tuple[int, str]:
    req = urllib.request.Request(f"{api.url}/nic/update?hostname={host}&myip={myip}")
    req.add_header("Authorization", "Basic " + base64.b64encode(f"{host}:{PW}".encode()).decode())
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


@pytest.fixture
def stack(
    redis_url: str, real_redis: redis.Redis, pdns_factory: Callable[..., PdnsServer], tmp_path: Path
) -> Iterator[tuple[Store, list[Account], PdnsServer, UpdateApiServer]]:
    store = Store(real_redis, config.load({"HBDNS_PLANS": PLANS}))
    store.add_zone(Zone(apex=ZONE, ns=("ns1.example.net",), hostmaster="hm.example.net", neutral_ipv4=NEUTRAL))
    accounts = [
        store.add_account(store.new_account(f"setip.{ZONE}", "setip-c", password=PW)),
        store.add_account(store.new_account(f"business.{ZONE}", "business-c", password=PW)),
    ]
    pdns = pdns_factory(transport="http")
    api = UpdateApiServer(tmp_path / "api", redis_url, env={"HBDNS_PLANS": PLANS, **pdns.writer_env}).start()
    yield store, accounts, pdns, api
    api.stop()


@pytest.mark.pdns
def test_expiry_plan_neutralizes_without_update_and_recovers_on_the_next(
    stack: tuple[Store, list[Account], PdnsServer, UpdateApiServer], real_redis: redis.Redis
) -> None:
    store, accounts, pdns, api = stack
    for i, account in enumerate(accounts):
        assert _update(api, account.fqdn, f"203.0.114.{20 + i}") == (200, f"good 203.0.114.{20 + i}\n")
    updated = time.monotonic()
    for i, account in enumerate(accounts):
        plan_ms = store.plans[account.plan].expiry_ms
        assert 0 < real_redis.pttl(keys.alive(account.id)) <= plan_ms  # the plan's expiry, not a default
        pdns.wait_answer(account.fqdn, "A", {f"203.0.114.{20 + i}"}, timeout=EXPIRY_S - 0.5)

    # no update: the alive key expires exactly at the plan's expiry and pdns answers neutral
    for account in accounts:

        def expired(key: str = keys.alive(account.id)) -> bool:
            return not real_redis.exists(key)

        wait_for(expired, 15, what=f"{account.fqdn} to expire")
        pdns.wait_answer(account.fqdn, "A", {NEUTRAL})
    assert time.monotonic() - updated >= EXPIRY_S - 0.2

    # the next update brings it back: good (the answer changed), recorded as neutralized + recovered
    for i, account in enumerate(accounts):
        assert _update(api, account.fqdn, f"203.0.114.{20 + i}") == (200, f"good 203.0.114.{20 + i}\n")
        pdns.wait_answer(account.fqdn, "A", {f"203.0.114.{20 + i}"}, timeout=EXPIRY_S - 0.5)
        log = [e["type"] for e in reversed(store.account_log(account.id))]
        assert log[-4:] == ["recovered", "ip_changed", "neutralized", "recovered"]
        assert store.account_log(account.id)[1]["reason"] == "missed"
        assert store.status(account).state.state == "live"
