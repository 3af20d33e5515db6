"""hbdns-client without a server: configuration, counter, and the stdlib-only promise."""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hbdns_client import client, wire

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
        ("server = x:1\naccount_id = 1\nkey = " + KEY_HEX + "\nreply_every = -1\n", "reply_every -1.0 out of range"),
        ("server = x:1\naccount_id = 1\nkey = " + KEY_HEX + "\nreply_every = soon\n", "reply_every 'soon' is not a"),
        ("server = x:1\naccount_id = 1\nkey = " + KEY_HEX + "\nreply_every = inf\n", "reply_every inf out of range"),
        ("server = x:1\naccount_id = 1\nkey = " + KEY_HEX + "\nreply_every = nan\n", "reply_every nan out of range"),
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


def test_reply_every_from_file_env_and_option(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "c.conf"
    path.write_text(f"server = x:1\naccount_id = 1\nkey = {KEY_HEX}\n")
    assert client.load_config(path, env={}).reply_every == client.DEFAULT_REPLY_EVERY == 30
    path.write_text(f"server = x:1\naccount_id = 1\nkey = {KEY_HEX}\nreply_every = 60\n")
    assert client.load_config(path, env={}).reply_every == 60
    env = {"HBDNS_CLIENT_REPLY_EVERY": "0"}
    assert client.load_config(path, env=env).reply_every == 0
    assert client.load_config(path, env=env, overrides={"reply_every": "12.5"}).reply_every == 12.5
    monkeypatch.delenv("HBDNS_CLIENT_REPLY_EVERY", raising=False)
    started: list[client.ClientConfig] = []

    def fake_run(cfg: client.ClientConfig) -> int:
        started.append(cfg)
        return client.EXIT_OK

    monkeypatch.setattr(client, "cmd_run", fake_run)
    assert client.main(["run", "--config", str(path), "--reply-every", "7"]) == client.EXIT_OK
    assert started[0].reply_every == 7


def test_bad_reply_every_option_is_a_config_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "c.conf"
    path.write_text(f"server = x:1\naccount_id = 1\nkey = {KEY_HEX}\n")
    assert client.main(["run", "--config", str(path), "--reply-every", "-5"]) == client.EXIT_CONFIG
    assert "reply_every -5.0 out of range" in capsys.readouterr().err


class ScriptedBeater:
    """Stands in for Beater: answers the beats that ask with the given outcomes in turn.

    A beat that does not ask gets no answer and takes no outcome; ``asks`` records which beats
    asked, and the beats numbered in ``fail`` (from 0) raise OSError as if they could not be sent.
    """

    def __init__(
        self,
        outcomes: list[client.Outcome],
        reply_every: float = client.DEFAULT_REPLY_EVERY,
        fail: frozenset[int] = frozenset(),
    ) -> None:
        self.cfg = client.ClientConfig("hb.example", 8999, 1, bytes(32), 5.0, reply_every=reply_every)
        self.outcomes = outcomes
        self.fail = fail
        self.resolved_at = 0.0
        self.asks: list[bool] = []

    def beat(self, *, offline: bool = False, timeout: float = 2.0, reply: bool = True) -> client.Outcome:
        self.asks.append(reply)
        if len(self.asks) - 1 in self.fail:
            raise OSError("network is unreachable")
        return self.outcomes.pop(0) if reply else client.Outcome()


class FakeClock:
    """The monotonic clock, set by the test."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def steps(runner: client.Runner, clock: FakeClock, times: list[float]) -> list[int | None]:
    """Beat once at each of ``times`` (seconds)."""
    results = []
    for t in times:
        clock.now = t
        results.append(runner.step())
    return results


def ok(address: str = "198.51.100.1", status: int = wire.STATUS_OK) -> client.Outcome:
    return client.Outcome((wire.Reply(status, address),))


def test_run_gives_up_with_exit_2_when_never_answered(caplog: pytest.LogCaptureFixture) -> None:
    beater = ScriptedBeater([client.Outcome()] * 3)
    runner = client.Runner(beater)  # type: ignore[arg-type]
    assert [runner.step() for _ in range(3)] == [None, None, client.EXIT_REJECTED]
    assert "wrong key or account id" in caplog.text and "8999" in caplog.text
    assert beater.asks == [True] * 3


def test_run_keeps_beating_through_outages_once_answered(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO")
    outcomes = [ok(), *[client.Outcome()] * 10, ok("198.51.100.2")]
    runner = client.Runner(ScriptedBeater(outcomes, reply_every=0))  # type: ignore[arg-type]
    assert all(runner.step() is None for _ in range(12))
    assert "public IPv4 address 198.51.100.1" in caplog.text
    assert "no answer from hb.example:8999 to the last 3 heartbeats" in caplog.text
    assert "public IPv4 address changed from 198.51.100.1 to 198.51.100.2" in caplog.text


def test_run_stops_on_clock_skew_at_start() -> None:
    skew = ok(status=wire.STATUS_CLOCK_SKEW)
    runner = client.Runner(ScriptedBeater([skew, skew, skew]))  # type: ignore[arg-type]
    assert [runner.step() for _ in range(3)] == [None, None, client.EXIT_CLOCK]


def test_run_asks_until_answered_then_only_every_reply_every_seconds() -> None:
    beater, clock = ScriptedBeater([client.Outcome(), ok(), ok(), ok()]), FakeClock()
    runner = client.Runner(beater, clock=clock)  # type: ignore[arg-type]
    times = [0, 5, 10, 15, 20, 25, 30, 34.9, 35, 40, 64.9, 65]
    assert steps(runner, clock, times) == [None] * len(times)
    # the first beat went unanswered, the second was answered at 5 s: the next ask is due at 35 s
    assert beater.asks == [True, True, False, False, False, False, False, False, True, False, False, True]
    assert beater.outcomes == [] and runner.unanswered == 0


def test_run_asks_every_beat_after_an_unanswered_ask(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO")
    silence = client.Outcome()
    beater, clock = ScriptedBeater([ok(), silence, silence, silence, ok("198.51.100.2")]), FakeClock()
    runner = client.Runner(beater, clock=clock)  # type: ignore[arg-type]
    steps(runner, clock, [0, 5, 10, 15, 20, 25])
    assert runner.unanswered == 0  # five beats that did not ask: no answer expected, none missed
    steps(runner, clock, [30, 35])
    assert runner.unanswered == 2 and "no answer" not in caplog.text
    steps(runner, clock, [40])
    assert "no answer from hb.example:8999 to the last 3 heartbeats; still beating" in caplog.text
    assert beater.resolved_at == -1e18  # looks the name up again before the next beat
    steps(runner, clock, [45, 50, 55])
    assert "answers again after 3 unanswered heartbeats" in caplog.text
    assert "public IPv4 address changed from 198.51.100.1 to 198.51.100.2" in caplog.text
    assert beater.asks == [True, *[False] * 5, True, True, True, True, False, False]


def test_run_with_reply_every_0_asks_on_every_beat() -> None:
    beater, clock = ScriptedBeater([ok()] * 4, reply_every=0), FakeClock()
    runner = client.Runner(beater, clock=clock)  # type: ignore[arg-type]
    steps(runner, clock, [0, 0, 5, 5])
    assert beater.asks == [True] * 4


def test_a_beat_that_cannot_be_sent_makes_the_next_beats_ask(caplog: pytest.LogCaptureFixture) -> None:
    beater, clock = ScriptedBeater([ok(), ok()], fail=frozenset({1})), FakeClock()
    runner = client.Runner(beater, clock=clock)  # type: ignore[arg-type]
    steps(runner, clock, [0, 5])
    assert runner.unanswered == 1 and "cannot send heartbeat: network is unreachable" in caplog.text
    steps(runner, clock, [10, 15])
    assert beater.asks == [True, False, True, False] and runner.unanswered == 0


def dual_stack(monkeypatch: pytest.MonkeyPatch) -> tuple[socket.socket, socket.socket]:
    """Two loopback receivers, IPv4 and IPv6, that the name 'hb.dual.test' resolves to (in that order)."""
    r4, r6 = socket.socket(socket.AF_INET, socket.SOCK_DGRAM), socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    r4.bind(("127.0.0.1", 0))
    r6.bind(("::1", 0))
    r4.setblocking(False)
    r6.setblocking(False)
    port4, port6 = r4.getsockname()[1], r6.getsockname()[1]

    def fake_getaddrinfo(host: str, port: int, family: int = 0, *args: object) -> list[tuple[Any, ...]]:
        assert host == "hb.dual.test"
        return [
            (socket.AF_INET, socket.SOCK_DGRAM, 17, "", ("127.0.0.1", port4)),
            (socket.AF_INET6, socket.SOCK_DGRAM, 17, "", ("::1", port6, 0, 0)),
        ]

    monkeypatch.setattr(client.socket, "getaddrinfo", fake_getaddrinfo)
    return r4, r6


def test_dual_stack_beat_without_reply_waits_the_gap_between_families(monkeypatch: pytest.MonkeyPatch) -> None:
    r4, r6 = dual_stack(monkeypatch)
    seen_at_pause: list[tuple[float, bytes]] = []

    class NoWaitBeater(client.Beater):
        def _pause(self, seconds: float) -> bool:
            seen_at_pause.append((seconds, r4.recv(64)))  # the IPv4 beat is out already...
            with pytest.raises(BlockingIOError):  # ...and the IPv6 one not yet
                r6.recv(64)
            return False

        def _await_reply(self, sock: socket.socket, packet: bytes, deadline: float) -> tuple[wire.Reply | None, bool]:
            raise AssertionError("a beat that does not ask waits for no reply")

    beater = NoWaitBeater(client.ClientConfig("hb.dual.test", 1, 7, bytes(32), 2.0))
    try:
        with r4, r6:
            outcome = beater.beat(timeout=5, reply=False)
            beat6 = wire.parse_beat(r6.recv(64))
    finally:
        beater.close()
    assert outcome == client.Outcome()
    [(gap, packet4)] = seen_at_pause
    beat4 = wire.parse_beat(packet4)
    assert gap == pytest.approx(0.2)  # min(0.5, interval / 10)
    assert not beat4.wants_reply and not beat6.wants_reply
    assert beat4.counter < beat6.counter
    assert client.Beater(client.ClientConfig("h", 1, 1, bytes(32), 45.0)).family_gap() == 0.5


def test_gap_between_families_is_cut_short_by_a_signal(monkeypatch: pytest.MonkeyPatch) -> None:
    r4, r6 = dual_stack(monkeypatch)
    rfd, wfd = os.pipe()
    os.write(wfd, b"\x0f")  # what signal.set_wakeup_fd writes when SIGTERM comes
    beater = client.Beater(client.ClientConfig("hb.dual.test", 1, 7, bytes(32), 45.0), wakeup_fd=rfd)
    try:
        with r4, r6:
            assert beater.beat(reply=False) == client.Outcome(interrupted=True)
            assert r4.recv(64)
            with pytest.raises(BlockingIOError):  # the IPv6 beat was not sent: the client stops at once
                r6.recv(64)
    finally:
        beater.close()
        os.close(rfd)
        os.close(wfd)


def test_jitter_is_early_never_late() -> None:
    runner = client.Runner(ScriptedBeater([]))  # type: ignore[arg-type]
    delays = [runner.delay() for _ in range(200)]
    assert all(4.75 <= d <= 5.0 for d in delays) and len(set(delays)) > 1


def test_client_needs_only_the_standard_library() -> None:
    code = (
        "import sys\n"
        "before = set(sys.modules)\n"
        "import hbdns_client.client\n"
        "new = set(sys.modules) - before\n"
        "third = {m.split('.')[0] for m in new} - set(sys.stdlib_module_names) - {'hbdns_client'}\n"
        "project = {m for m in new if m.split('.')[0] == 'hbdns'}\n"
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
