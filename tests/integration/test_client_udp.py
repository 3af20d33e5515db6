"""hbdns-client (the console script) against the real listener and redis-server."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from hbdns_client.config import write_client_config

from hbdns.model import Account
from hbdns.store import Store
from tests.support.listener import Listener
from tests.support.servers import Process, wait_for

CLIENT = str(Path(sys.executable).parent / "hbdns-client")


@pytest.fixture
def conf(tmp_path: Path, listener: Listener, account: Account) -> Path:
    path = tmp_path / "client.conf"
    write_client_config(path, f"127.0.0.1:{listener.port}", account.id, account.hb_key, 0.2)
    return path


@pytest.fixture(autouse=True)
def state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The clients' state files go to the test's directory, never to this machine's /var/lib."""
    monkeypatch.setenv("STATE_DIRECTORY", str(tmp_path / "state"))
    return tmp_path / "state"


def client_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("HBDNS_")}


def run_client(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CLIENT, *argv], capture_output=True, text=True, timeout=60, env=env or client_env(), check=False
    )


def test_send_sets_the_address_and_prints_it(conf: Path, store: Store, account: Account) -> None:
    result = run_client("send", "--config", str(conf), "--source", "127.0.0.2")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok 127.0.0.2"
    assert store.status(account).live and store.status(account).state.ipv4 == "127.0.0.2"

    result = run_client("--config", str(conf), "send", "--offline", "--source", "127.0.0.2")
    assert (result.returncode, result.stdout.strip()) == (0, "offline-ok 127.0.0.2")
    assert not store.status(account).live


def test_send_over_ipv6_and_from_env(listener: Listener, store: Store, account: Account) -> None:
    env = client_env() | {
        "HBDNS_CLIENT_SERVER": f"[::1]:{listener.port}",
        "HBDNS_CLIENT_ACCOUNT_ID": str(account.id),
        "HBDNS_CLIENT_KEY": account.hb_key.hex(),
    }
    result = run_client("send", env=env)
    assert (result.returncode, result.stdout.strip()) == (0, "ok ::1"), result.stderr
    assert store.status(account).state.ipv6 == "::1"


def test_bad_key_is_reported_not_accepted_and_run_keeps_trying(
    tmp_path: Path, listener: Listener, account: Account, store: Store
) -> None:
    bad = tmp_path / "bad.conf"
    write_client_config(bad, f"127.0.0.1:{listener.port}", account.id, bytes(32), 0.1)
    result = run_client("send", "--config", str(bad), "--timeout", "0.3")
    assert result.returncode == 1
    assert "wrong key or account id" in result.stderr
    bad_macs = listener.count("bad_mac")
    proc = Process([CLIENT, "run", "--config", str(bad)], tmp_path / "bad.log", env=client_env())
    try:  # run does not give up: a wrong key looks like an unreachable server, and it says so once
        wait_for(lambda: "a wrong key or account id looks exactly like" in proc.log_text(), 15, what="the hint")
        wait_for(lambda: listener.count("bad_mac") >= bad_macs + 10, 15, what="more beats")
        assert proc.alive() and proc.log_text().count("wrong key") == 1
        proc.signal(signal.SIGTERM)
        assert proc.proc.wait(15) == 0
    finally:
        proc.stop()
    assert not store.status(account).live


def test_run_beats_logs_public_ip_and_goes_offline_on_sigterm(
    conf: Path, tmp_path: Path, store: Store, account: Account
) -> None:
    proc = Process(
        [CLIENT, "run", "--config", str(conf), "--source", "127.0.0.3"], tmp_path / "client.log", env=client_env()
    )
    try:
        wait_for(lambda: store.status(account).live, 15, what="first beat accepted")
        first = store.status(account).state.counter
        wait_for(lambda: store.status(account).state.counter > first, 15, what="more beats (0.2 s interval)")
        assert store.status(account).state.ipv4 == "127.0.0.3"
        wait_for(lambda: "public IPv4 address 127.0.0.3" in proc.log_text(), 10, what="public address logged")
        proc.signal(signal.SIGTERM)
        assert proc.proc.wait(15) == 0, proc.log_text()
    finally:
        proc.stop()
    status = store.status(account)
    assert not status.live and status.state.state == "neutral"
    assert store.account_log(account.id)[0]["reason"] == "offline"
    assert "offline heartbeat accepted" in proc.log_text()


def test_run_on_sigint_too(conf: Path, tmp_path: Path, store: Store, account: Account) -> None:
    proc = Process([CLIENT, "run", "--config", str(conf)], tmp_path / "client.log", env=client_env())
    try:
        wait_for(lambda: store.status(account).live, 15, what="first beat accepted")
        started = time.monotonic()
        proc.signal(signal.SIGINT)
        assert proc.proc.wait(15) == 0
        assert time.monotonic() - started < 10
    finally:
        proc.stop()
    assert not store.status(account).live


def test_send_resolves_the_server_name(listener: Listener, account: Account, store: Store) -> None:
    env = client_env() | {
        "HBDNS_CLIENT_SERVER": f"localhost:{listener.port}",
        "HBDNS_CLIENT_ACCOUNT_ID": str(account.id),
        "HBDNS_CLIENT_KEY": account.hb_key.hex(),
    }
    result = run_client("send", env=env)
    assert result.returncode == 0, result.stderr
    lines = set(result.stdout.split("\n")) - {""}
    assert lines and lines <= {"ok 127.0.0.1", "ok ::1"}
    state = store.status(account).state  # one beat per family the name has: A and AAAA both current
    assert ("ok 127.0.0.1" in lines) == (state.ipv4 == "127.0.0.1")
    assert ("ok ::1" in lines) == (state.ipv6 == "::1")


def test_dual_stack_name_gets_a_beat_per_family(listener: Listener, account: Account, store: Store) -> None:
    """A server name with A and AAAA: every beat goes over both, so both records stay current."""
    import socket

    from hbdns_client.beater import Beater
    from hbdns_client.clock import Clock, ServerClock
    from hbdns_client.config import ClientConfig
    from hbdns_client.counters import Counters
    from hbdns_client.resolve import Resolver

    def fake_getaddrinfo(host: str, port: int, family: int = 0, *args: object) -> list[tuple[Any, ...]]:
        assert host == "hb.dual.test"
        out = [
            (socket.AF_INET6, socket.SOCK_DGRAM, 17, "", ("::1", port, 0, 0)),
            (socket.AF_INET, socket.SOCK_DGRAM, 17, "", ("127.0.0.1", port)),
        ]
        return [x for x in out if family in (0, x[0])]

    def beater(source: str = "") -> Beater:
        cfg = ClientConfig(host="hb.dual.test", port=listener.port, account_id=account.id, key=account.hb_key)
        resolver = Resolver(cfg.host, cfg.port, source, getaddrinfo=fake_getaddrinfo)
        return Beater(cfg, counters, resolver=resolver)

    counters = Counters(ServerClock(Clock()))  # shared: one machine's counters, as its state file would
    b = beater()
    try:
        outcome = b.beat(timeout=5)
    finally:
        b.close()
    assert sorted(r.address for r in outcome.replies) == ["127.0.0.1", "::1"] and outcome.ok
    state = store.status(account).state
    assert (state.ipv4, state.ipv6) == ("127.0.0.1", "::1")
    b = beater(source="::1")  # pinned by the source address: only that family
    try:
        assert [r.address for r in b.beat(timeout=5).replies] == ["::1"]
    finally:
        b.close()
