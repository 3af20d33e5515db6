"""hbdns-client without a server: configuration, counter, and the stdlib-only promise."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from hbdns import client, wire

KEY_HEX = bytes(range(32)).hex()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("hb.example.net:9000", ("hb.example.net", 9000)),
        ("hb.example.net", ("hb.example.net", client.DEFAULT_PORT)),
        ("192.0.2.1:53", ("192.0.2.1", 53)),
        ("[2001:db8::1]:8999", ("2001:db8::1", 8999)),
        ("[::1]", ("::1", client.DEFAULT_PORT)),
        ("2001:db8::1", ("2001:db8::1", client.DEFAULT_PORT)),
    ],
)
def test_parse_server(text: str, expected: tuple[str, int]) -> None:
    assert client.parse_server(text) == expected


@pytest.mark.parametrize("text", ["", "host:", "host:x", "host:70000", "[::1:5", "[::1]x"])
def test_parse_server_rejects(text: str) -> None:
    with pytest.raises(client.ConfigError):
        client.parse_server(text)


def test_written_config_reads_back_and_is_private(tmp_path: Path) -> None:
    path = tmp_path / "client.conf"
    client.write_client_config(path, "[::1]:9000", 42, bytes(range(32)), 5)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    cfg = client.load_config(path, env={})
    assert cfg == client.ClientConfig("::1", 9000, 42, bytes(range(32)), 5.0, "")
    assert cfg.server == "[::1]:9000"
    assert KEY_HEX not in repr(cfg)


def test_file_env_options_precedence_and_key_file(tmp_path: Path) -> None:
    (tmp_path / "key").write_text(KEY_HEX.upper() + "\n")
    path = tmp_path / "c.conf"
    path.write_text(
        "# comment\nserver = 'a.example:1'\naccount_id = 1   # trailing comment\nkey_file = key\ninterval = 45\n\n"
    )
    cfg = client.load_config(path, env={})
    assert (cfg.host, cfg.port, cfg.account_id, cfg.key, cfg.interval) == ("a.example", 1, 1, bytes(range(32)), 45)
    env = {"HBDNS_CLIENT_SERVER": "b.example:2", "HBDNS_CLIENT_INTERVAL": "15", "HBDNS_CLIENT_SOURCE": "127.0.0.2"}
    cfg = client.load_config(path, env=env)
    assert (cfg.host, cfg.interval, cfg.source) == ("b.example", 15.0, "127.0.0.2")
    cfg = client.load_config(path, env=env, overrides={"server": "c.example:3", "account_id": "7", "source": None})
    assert (cfg.host, cfg.account_id, cfg.source) == ("c.example", 7, "127.0.0.2")
    only_env = client.load_config(
        None, env={"HBDNS_CLIENT_SERVER": "d:4", "HBDNS_CLIENT_ACCOUNT_ID": "9", "HBDNS_CLIENT_KEY": KEY_HEX}
    )
    assert (only_env.host, only_env.account_id) == ("d", 9)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("server = x:1\naccount_id = 1\n", "missing key"),
        ("server = x:1\nkey = " + KEY_HEX + "\n", "missing account_id"),
        ("server = x:1\naccount_id = 1\nkey = abcd\n", "2 bytes, expected 32"),
        ("server = x:1\naccount_id = 1\nkey = " + "zz" * 32 + "\n", "not hexadecimal"),
        ("server = x:1\naccount_id = one\nkey = " + KEY_HEX + "\n", "not a number"),
        ("server = x:1\naccount_id = 1\nkey_file = nope\n", "cannot read key file"),
        ("server = x:1\nacount_id = 1\n", "unknown setting 'acount_id'"),
        ("just words\n", "expected 'key = value'"),
        ("server = x:1\naccount_id = 1\nkey = " + KEY_HEX + "\ninterval = 0\n", "interval"),
    ],
)
def test_config_errors_say_what_is_wrong(tmp_path: Path, text: str, words: str) -> None:
    path = tmp_path / "c.conf"
    path.write_text(text)
    with pytest.raises(client.ConfigError, match=words):
        client.load_config(path, env={})


def test_counter_is_strictly_increasing_when_the_clock_steps_back(monkeypatch: pytest.MonkeyPatch) -> None:
    beater = client.Beater(client.ClientConfig("127.0.0.1", 1, 1, bytes(32)))
    clock = iter([5_000_000_000_000, 4_000_000_000_000, 4_000_000_000_000, 6_000_000_000_000])
    monkeypatch.setattr(client.time, "time_ns", lambda: next(clock))
    assert [beater.counter() for _ in range(4)] == [5_000_000, 5_000_001, 5_000_002, 6_000_000]


class ScriptedBeater:
    """Stands in for Beater: returns the given outcomes in turn."""

    def __init__(self, outcomes: list[client.Outcome]) -> None:
        self.cfg = client.ClientConfig("hb.example", 8999, 1, bytes(32), 5.0)
        self.outcomes = outcomes
        self.resolved_at = 0.0

    def beat(self, *, offline: bool = False, timeout: float = 2.0) -> client.Outcome:
        return self.outcomes.pop(0)


def ok(address: str = "198.51.100.1", status: int = wire.STATUS_OK) -> client.Outcome:
    return client.Outcome((wire.Reply(status, address),))


def test_run_gives_up_with_exit_2_when_never_answered(caplog: pytest.LogCaptureFixture) -> None:
    runner = client.Runner(ScriptedBeater([client.Outcome()] * 3))  # type: ignore[arg-type]
    assert [runner.step() for _ in range(3)] == [None, None, client.EXIT_REJECTED]
    assert "wrong key or account id" in caplog.text and "8999" in caplog.text


def test_run_keeps_beating_through_outages_once_answered(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO")
    outcomes = [ok(), *[client.Outcome()] * 10, ok("198.51.100.2")]
    runner = client.Runner(ScriptedBeater(outcomes))  # type: ignore[arg-type]
    assert all(runner.step() is None for _ in range(12))
    assert "public IPv4 address 198.51.100.1" in caplog.text
    assert "no answer from hb.example:8999 to the last 3 heartbeats" in caplog.text
    assert "public IPv4 address changed from 198.51.100.1 to 198.51.100.2" in caplog.text


def test_run_stops_on_clock_skew_at_start() -> None:
    skew = ok(status=wire.STATUS_CLOCK_SKEW)
    runner = client.Runner(ScriptedBeater([skew, skew, skew]))  # type: ignore[arg-type]
    assert [runner.step() for _ in range(3)] == [None, None, client.EXIT_CLOCK]


def test_jitter_is_early_never_late() -> None:
    runner = client.Runner(ScriptedBeater([]))  # type: ignore[arg-type]
    delays = [runner.delay() for _ in range(200)]
    assert all(4.75 <= d <= 5.0 for d in delays) and len(set(delays)) > 1


def test_client_needs_only_the_standard_library() -> None:
    code = (
        "import sys\n"
        "before = set(sys.modules)\n"
        "import hbdns.client\n"
        "new = set(sys.modules) - before\n"
        "third = {m.split('.')[0] for m in new} - set(sys.stdlib_module_names) - {'hbdns'}\n"
        "project = {m for m in new if m.startswith('hbdns.')} - {'hbdns.client', 'hbdns.wire'}\n"
        "assert not third and not project, (third, project)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[2], env=os.environ)


def test_config_error_exit_code(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert client.main(["send", "--config", str(tmp_path / "missing.conf")]) == client.EXIT_CONFIG
    assert "cannot read config file" in capsys.readouterr().err


def test_outcome_prefers_an_accepted_reply() -> None:
    skew, good = wire.Reply(wire.STATUS_CLOCK_SKEW, "::1"), wire.Reply(wire.STATUS_OK, "127.0.0.1")
    assert client.Outcome((skew, good)).reply == good and client.Outcome((skew, good)).ok
    assert client.Outcome((skew,)).clock_skew and not client.Outcome().ok
