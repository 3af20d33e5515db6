"""The commands and their exit codes: send and check against a loopback stand-in, the offline beat, options."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest
from fakes import KEY, KEY_HEX, FakeServer

from hbdns_client import cli, wire
from hbdns_client.clock import TEST_CLOCK_ENV
from hbdns_client.config import ClientConfig


def conf(tmp_path: Path, port: int, host: str = "127.0.0.1", state: str = "state") -> list[str]:
    path = tmp_path / "client.conf"
    path.write_text(f"server = {host}:{port}\naccount_id = 7\nkey = {KEY_HEX}\nstate_file = {state}\n")
    return ["--config", str(path)]


def skew_always(beat: wire.Beat, source: str) -> bytes:
    return wire.encode_clock_skew(beat, 1_000, 300_000, KEY)  # a server whose clock no beat ever matches


def skew_unless_near_now(beat: wire.Beat, source: str) -> bytes:
    now = time.time_ns() // 1_000_000
    if abs(beat.counter - now) > 300_000:
        return wire.encode_clock_skew(beat, now, 300_000, KEY)
    return wire.encode_reply(beat, wire.STATUS_OK, source, KEY)


def test_help_and_bad_options(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(["--help"])
    assert info.value.code == 0 and "run" in capsys.readouterr().out
    with pytest.raises(SystemExit) as info:
        cli.main(["run", "--no-such-option"])
    assert info.value.code == cli.EXIT_CONFIG == 78  # a bad option is a configuration error: not retried
    with pytest.raises(SystemExit) as info:
        cli.main(["frobnicate"])
    assert info.value.code == 78


def test_config_errors_exit_78(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["send", "--config", str(tmp_path / "missing.conf")]) == cli.EXIT_CONFIG
    assert "cannot read config file" in capsys.readouterr().err
    args = conf(tmp_path, 9)
    assert cli.main(["run", *args, "--reply-every", "-5"]) == cli.EXIT_CONFIG
    assert "reply_every -5.0 out of range" in capsys.readouterr().err
    assert cli.main(["run", *args, "--log-file", str(tmp_path / "no" / "such" / "dir.log")]) == cli.EXIT_CONFIG
    assert "log_file" in capsys.readouterr().err


def test_options_reach_the_run_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    started: list[ClientConfig] = []

    def fake_run(cfg: ClientConfig) -> int:
        started.append(cfg)
        return cli.EXIT_OK

    monkeypatch.setattr(cli, "cmd_run", fake_run)
    log = tmp_path / "client.log"
    assert cli.main(["run", *conf(tmp_path, 9), "--reply-every", "7", "--log-file", str(log)]) == cli.EXIT_OK
    assert started[0].reply_every == 7 and started[0].state_file == str(tmp_path / "state")
    cli.log.info("into the file")
    assert "hbdns-client INFO into the file" in log.read_text()
    cli.setup_logging("", False)


def test_send_prints_the_address_and_exits_0(
    tmp_path: Path, fake_server: Callable[..., FakeServer], capsys: pytest.CaptureFixture[str]
) -> None:
    server = fake_server()
    assert cli.main(["send", *conf(tmp_path, server.port)]) == cli.EXIT_OK
    assert capsys.readouterr().out == "ok 127.0.0.1\n"
    assert cli.main(["send", "--offline", *conf(tmp_path, server.port)]) == cli.EXIT_OK
    assert capsys.readouterr().out == "offline-ok 127.0.0.1\n"
    assert server.beats[-1].offline and server.beats[-1].counter > server.beats[0].counter


def test_send_with_a_clock_an_hour_fast_follows_the_server_and_says_so(
    tmp_path: Path,
    fake_server: Callable[..., FakeServer],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    offset = tmp_path / "offset"
    offset.write_text("3600")
    monkeypatch.setenv(TEST_CLOCK_ENV, str(offset))
    server = fake_server(skew_unless_near_now)
    assert cli.main(["send", *conf(tmp_path, server.port)]) == cli.EXIT_OK
    out = capsys.readouterr()
    assert out.out == "ok 127.0.0.1\n"
    assert "clock is 3600" in out.err and "ahead of the server's" in out.err and "fix NTP" in out.err
    assert len(server.beats) == 2


def test_send_exit_codes_for_silence_and_for_a_clock_no_answer_fixes(
    tmp_path: Path, fake_server: Callable[..., FakeServer], capsys: pytest.CaptureFixture[str]
) -> None:
    silent = fake_server(lambda beat, source: None)
    assert cli.main(["send", *conf(tmp_path, silent.port), "--timeout", "0.2", "--tries", "2"]) == cli.EXIT_NO_ANSWER
    assert "a wrong key or account id looks exactly like an unreachable server" in capsys.readouterr().err
    assert len(silent.beats) == 2
    skewed = fake_server(skew_always)
    assert cli.main(["send", *conf(tmp_path, skewed.port), "--timeout", "0.5"]) == cli.EXIT_CLOCK
    assert capsys.readouterr().out == "clock-skew\n"


def test_check_reports_lookup_answer_and_clock(
    tmp_path: Path,
    fake_server: Callable[..., FakeServer],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server = fake_server(skew_unless_near_now)
    # a name, pinned to IPv4 by the source address (the stand-in listens on 127.0.0.1 only)
    assert cli.main(["check", *conf(tmp_path, server.port, host="localhost"), "--source", "127.0.0.1"]) == cli.EXIT_OK
    out = capsys.readouterr().out
    assert "lookup: localhost -> 127.0.0.1 (IPv4)\n" in out
    assert f"IPv4 127.0.0.1:{server.port}: ok, public address 127.0.0.1, answered in" in out
    assert "clock: within the server's window" in out and out.rstrip().endswith("result: ok")

    offset = tmp_path / "offset"
    offset.write_text("-7200")
    monkeypatch.setenv(TEST_CLOCK_ENV, str(offset))
    # a machine of its own (the first check's state file would keep the counter right)
    assert cli.main(["check", *conf(tmp_path, server.port, state="other")]) == cli.EXIT_CLOCK
    out = capsys.readouterr().out
    assert "clock: this machine's clock is 7200" in out and "behind the server's" in out and "+-300 s" in out
    assert f"IPv4 127.0.0.1:{server.port}: ok" in out and out.rstrip().endswith("result: clock off")


def test_check_without_answer_or_without_an_address(
    tmp_path: Path, fake_server: Callable[..., FakeServer], capsys: pytest.CaptureFixture[str]
) -> None:
    silent = fake_server(lambda beat, source: None)
    assert cli.main(["check", *conf(tmp_path, silent.port), "--timeout", "0.2"]) == cli.EXIT_NO_ANSWER
    out = capsys.readouterr().out
    assert "no authenticated answer in 0.2 s" in out and "hint: " in out and "result: no answer" in out
    assert cli.main(["check", *conf(tmp_path, 9, host="a..b")]) == cli.EXIT_NO_ANSWER  # IDNA refuses it locally
    assert "lookup: cannot resolve a..b" in capsys.readouterr().out


def test_offline_beat_when_stopping_is_bounded_in_time(
    tmp_path: Path, fake_server: Callable[..., FakeServer], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO")
    cfg = ClientConfig(host="127.0.0.1", port=fake_server().port, account_id=7, key=KEY, state_file=str(tmp_path / "s"))
    beater = cli.make_beater(cfg)
    assert cli.go_offline(beater) and "offline heartbeat accepted" in caplog.text
    beater.close()

    silent = fake_server(lambda beat, source: None)
    cfg = ClientConfig(host="127.0.0.1", port=silent.port, account_id=7, key=KEY, state_file=str(tmp_path / "s"))
    beater = cli.make_beater(cfg)
    started = time.monotonic()
    assert not cli.go_offline(beater, budget=1.0)
    assert time.monotonic() - started < 1.8
    assert [b.offline for b in silent.beats] == [True, True]  # a second try within the budget
    assert "offline heartbeat sent but not answered" in caplog.text
    beater.close()

    cfg = ClientConfig(host="a..b", port=9, account_id=7, key=KEY, state_file=str(tmp_path / "s"))
    beater = cli.make_beater(cfg)
    assert not cli.go_offline(beater, budget=1.0)
    assert "cannot send the offline heartbeat" in caplog.text
