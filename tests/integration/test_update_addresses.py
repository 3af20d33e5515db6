"""Which addresses the real update API process publishes: every non-public class is ``badip`` and
writes nothing (Redis compared whole), until ``hbdns zone set --allow-private-addresses``; a zone
stored before the option existed reads as public-only (no migration needed)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import redis

from admin.cli.main import main as cli
from hbdns import keys, validate
from hbdns.model import Account, Zone
from hbdns.passwords import hash_password
from hbdns.store import Store
from tests.support.update_api import UpdateApiServer, redis_snapshot, update
from tests.unit.test_address_class import NON_PUBLIC
from update_api.parsing import NEVER_PUBLISHED

ZONE = "lab.example.net"
HOST = f"home.{ZONE}"
PW = "lab-password"
SOURCE = "127.0.0.7"
# what a query string can carry (a scoped address is the client's own interface: tested in unit tests)
ADDRESSES = [(a, c) for a, c in NON_PUBLIC if "%" not in a]


@pytest.fixture
def lab(store: Store, redis_url: str, tmp_path: Path) -> Iterator[tuple[Account, UpdateApiServer]]:
    store.add_zone(Zone(apex=ZONE, ns=("ns1.example.net",), hostmaster="hm.example.net", neutral_ipv4="192.0.2.1"))
    account = store.new_account(HOST, "business-c")
    account = store.add_account(replace(account, pw_hash=hash_password(PW, n=16)))  # cheap: 120 logins
    with UpdateApiServer(tmp_path / "api", redis_url, env={"HBDNS_UPDATE_ACCOUNT_BURST": "1000"}) as api:
        yield account, api


def _send(api: UpdateApiServer, addr: str) -> tuple[int, str]:
    return update(api, {"hostname": HOST, "myip": addr}, (HOST, PW), source=SOURCE)


def test_every_non_public_class_is_badip_and_writes_nothing(
    lab: tuple[Account, UpdateApiServer], real_redis: redis.Redis
) -> None:
    _, api = lab
    assert _send(api, "203.0.114.70") == (200, "good 203.0.114.70\n")
    before = redis_snapshot(real_redis)
    answers = {addr: _send(api, addr) for addr, _ in ADDRESSES}
    answers["(source)"] = update(api, {"hostname": HOST}, (HOST, PW), source=SOURCE)  # loopback source, no myip
    assert {a: v for a, v in answers.items() if v != (400, "badip\n")} == {}
    assert redis_snapshot(real_redis) == before
    assert "not a public address" in api.log_text() and "is documentation" in api.log_text()


def test_the_zone_option_set_from_the_cli_admits_them(
    lab: tuple[Account, UpdateApiServer], real_redis: redis.Redis, capsys: pytest.CaptureFixture[str]
) -> None:
    account, api = lab
    assert cli(["zone", "set", ZONE, "--allow-private-addresses"], redis_client=real_redis) == 0
    assert "allow_private=True" in capsys.readouterr().out
    for addr, cls in ADDRESSES:
        family, shown = validate.ip_any(addr)
        if cls in NEVER_PUBLISHED:
            assert _send(api, addr) == (400, "badip\n"), addr
        else:
            assert _send(api, addr) == (200, f"good {shown}\n"), addr
            assert real_redis.hget(keys.account(account.id), "ipv4" if family == 4 else "ipv6") == shown
    assert update(api, {"hostname": HOST}, (HOST, PW), source=SOURCE) == (200, f"good {SOURCE}\n")
    assert cli(["zone", "set", ZONE, "--no-allow-private-addresses"], redis_client=real_redis) == 0
    assert _send(api, "10.0.0.9") == (400, "badip\n")


def test_a_zone_stored_before_the_option_existed_is_public_only(
    lab: tuple[Account, UpdateApiServer], real_redis: redis.Redis, capsys: pytest.CaptureFixture[str]
) -> None:
    _, api = lab
    real_redis.hdel(keys.zone(ZONE), "allow_private")  # as the code before this change wrote it
    assert _send(api, "10.0.0.9") == (400, "badip\n")
    assert _send(api, "203.0.114.71") == (200, "good 203.0.114.71\n")
    assert cli(["--json", "zone", "show", ZONE], redis_client=real_redis) == 0
    assert '"allow_private": false' in capsys.readouterr().out


def test_zone_add_takes_the_option_and_set_refuses_nonsense(
    store: Store, real_redis: redis.Redis, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli(["zone", "add", ZONE, "--allow-private-addresses"], redis_client=real_redis) == 0
    assert cli(["zone", "add", "other.example.net"], redis_client=real_redis) == 0
    assert [z.allow_private for z in store.list_zones()] == [True, False]  # lab first, other second
    capsys.readouterr()
    before = redis_snapshot(real_redis)
    assert cli(["zone", "set", ZONE], redis_client=real_redis) == 2
    assert "nothing to change" in capsys.readouterr().err
    assert cli(["zone", "set", "nosuch.example.net", "--allow-private-addresses"], redis_client=real_redis) == 2
    assert "no zone" in capsys.readouterr().err
    assert redis_snapshot(real_redis) == before
