"""Accounts made through the real ``hbdns-admin-api`` process beat and answer in a real pdns like
accounts made with the CLI, and both purge pdns' caches when they change an answer: this pdns
caches for 60 s, so an answer that changes within a few seconds was purged."""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from admin.cli.main import main as cli
from hbdns.store import Store
from hbdns.tokens import Scope, Tokens
from tests.support.admin_api import AdminApiProcess
from tests.support.listener import Listener, beat, now_ms, send
from tests.support.pdns import PdnsServer
from tests.support.servers import RedisServer

pytestmark = pytest.mark.pdns

ZONE = "prov.example.net"
LONG_CACHES = {"cache-ttl": 60, "query-cache-ttl": 60, "negquery-cache-ttl": 60}


@pytest.fixture
def pdns(
    request: pytest.FixtureRequest, real_redis: redis.Redis, pdns_factory: Callable[..., PdnsServer],
    monkeypatch: pytest.MonkeyPatch,
) -> PdnsServer:  # fmt: skip
    """pdns with 60 s caches (``@pytest.mark.short_caches``: the shipped 1 s ones, for the listener,
    which this module does not point at pdns to purge)."""
    assert cli(["zone", "add", ZONE, "--ns", f"ns1.{ZONE}"], redis_client=real_redis) == 0
    short = request.node.get_closest_marker("short_caches") is not None
    server = pdns_factory("http", extra=None if short else LONG_CACHES)
    for name, value in server.writer_env.items():  # the CLI purges this pdns too
        monkeypatch.setenv(name, value)
    return server


@pytest.fixture
def admin_api(redis_server: RedisServer, pdns: PdnsServer, tmp_path: Path) -> Iterator[AdminApiProcess]:
    api = AdminApiProcess(tmp_path / "api", redis_server.url, env=pdns.writer_env).start()
    yield api
    api.stop()


@pytest.mark.short_caches
def test_api_account_beats_and_answers_like_a_cli_account(
    real_redis: redis.Redis, store: Store, pdns: PdnsServer, admin_api: AdminApiProcess, listener: Listener,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    token = Tokens(real_redis).add(Scope("zone", zone=ZONE))[1]
    status, made = admin_api.request(
        "POST", "/accounts", token, {"fqdn": f"api.{ZONE}", "plan": "heartbeat-c", "mx": True}
    )
    assert status == 201, made
    assert cli(["account", "add", f"cli.{ZONE}", "--plan", "heartbeat-c", "--mx"], redis_client=real_redis) == 0
    via_cli = store.resolve(f"cli.{ZONE}")
    keys = {
        f"api.{ZONE}": (made["id"], bytes.fromhex(made["heartbeat_key"])),
        f"cli.{ZONE}": (via_cli.id, via_cli.hb_key),
    }
    for name, (account_id, key) in keys.items():
        pdns.wait_answer(name, "A", {"192.0.2.1"})  # neutral before its first beat
        send(beat(account_id, key, now_ms()), listener.port)
        pdns.wait_answer(name, "A", {"127.0.0.1"}, timeout=10)
        pdns.wait_answer(name, "MX", {f"10 {name}."}, timeout=10)
    status, state = admin_api.request("GET", f"/accounts/api.{ZONE}/state", token)
    assert status == 200 and state["live"] is True and state["ipv4"] == "127.0.0.1"


@pytest.mark.parametrize("surface", ["api", "cli"])
def test_changes_purge_pdns_from_either_surface(
    real_redis: redis.Redis, pdns: PdnsServer, admin_api: AdminApiProcess, surface: str
) -> None:
    token = Tokens(real_redis).add(Scope("admin"))[1]
    name = f"{surface}.{ZONE}"

    def run(method: str, path: str, body: dict[str, object] | None, argv: list[str]) -> None:
        if surface == "api":
            status, answer = admin_api.request(method, path, token, body)
            assert 200 <= status < 300, answer
        else:
            assert cli(argv, redis_client=real_redis) == 0

    assert pdns.query(name, "A").rcode() == 3  # NXDOMAIN, now in pdns' negative cache for 60 s
    run("POST", "/accounts", {"fqdn": name, "plan": "heartbeat-c"}, ["account", "add", name, "--plan", "heartbeat-c"])
    pdns.wait_answer(name, "A", {"192.0.2.1"}, timeout=10)
    run(
        "PATCH",
        f"/accounts/{name}",
        {"neutral_ipv4": "192.0.2.77"},
        ["account", "set", name, "--neutral-ipv4", "192.0.2.77"],
    )
    pdns.wait_answer(name, "A", {"192.0.2.77"}, timeout=10)
    assert pdns.query(f"www.{name}", "A").rcode() == 3
    run("PATCH", f"/accounts/{name}", {"aliases": [f"www.{name}"]}, ["account", "set", name, "--alias", f"www.{name}"])
    pdns.wait_answer(f"www.{name}", "A", {"192.0.2.77"}, timeout=10)
    run("DELETE", f"/accounts/{name}", None, ["account", "remove", name])
    pdns.wait_answer(name, "A", set(), timeout=10)
    assert pdns.query(name, "A").rcode() == 3


def test_the_process_stops_cleanly_on_sigterm_and_logs_no_secrets(
    real_redis: redis.Redis, admin_api: AdminApiProcess
) -> None:
    token = Tokens(real_redis).add(Scope("admin"))[1]
    status, made = admin_api.request("POST", "/accounts", token, {"fqdn": f"s.{ZONE}", "plan": "heartbeat-c"})
    assert status == 201
    assert admin_api.process is not None
    admin_api.process.signal(signal.SIGTERM)
    assert admin_api.process.proc.wait(10) == 0
    log = admin_api.log_text()
    assert "admin API listening" in log and "admin API stopped" in log and "account created" in log
    for secret in (token.split("_", 2)[2], made["heartbeat_key"], made["update_password"]):
        assert secret not in log
