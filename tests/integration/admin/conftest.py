"""Fixtures of the admin API tests: the app on the test's Redis, and a small world of two zones,
an account in each and a token of every kind."""

from __future__ import annotations

from typing import Any

import pytest
import redis

from hbdns.config import Settings
from hbdns.model import Zone
from hbdns.store import Store
from hbdns.tokens import Scope
from tests.support.admin_api import OTHER, ZONE, ApiClient


@pytest.fixture
def api(real_redis: redis.Redis, settings: Settings) -> ApiClient:
    return ApiClient(real_redis, settings)


@pytest.fixture
def world(api: ApiClient, store: Store) -> dict[str, Any]:
    """Two zones with one account each, and a token of every kind."""
    for apex in (ZONE, OTHER):
        store.add_zone(Zone(apex, ("ns1.example.net",), "hostmaster.example.net", "192.0.2.1"))
    home = store.add_account(store.new_account(f"home.{ZONE}", "heartbeat-c", password="home-password"))
    away = store.add_account(store.new_account(f"away.{OTHER}", "heartbeat-c", password="away-password"))
    return {
        "home": home,
        "away": away,
        "admin": api.token(Scope("admin")),
        "zone": api.token(Scope("zone", zone=ZONE)),
        "other_zone": api.token(Scope("zone", zone=OTHER)),
        "account": api.token(Scope("account", zone=ZONE, fqdn=home.fqdn, account_id=home.id)),
    }
