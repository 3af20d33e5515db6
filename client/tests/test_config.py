"""The client's configuration: file, environment, options; every error is a clear ConfigError."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from fakes import KEY, KEY_HEX

from hbdns_client import config
from hbdns_client.config import ClientConfig, ConfigError, load_config


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("hb.example.net:9000", ("hb.example.net", 9000)),
        ("hb.example.net", ("hb.example.net", config.DEFAULT_PORT)),
        ("192.0.2.1:53", ("192.0.2.1", 53)),
        ("[2001:db8::1]:8999", ("2001:db8::1", 8999)),
        ("[::1]", ("::1", config.DEFAULT_PORT)),
        ("2001:db8::1", ("2001:db8::1", config.DEFAULT_PORT)),
    ],
)
def test_parse_server(text: str, expected: tuple[str, int]) -> None:
    assert config.parse_server(text) == expected


@pytest.mark.parametrize("text", ["", "host:", "host:x", "host:70000", "[::1:5", "[::1]x"])
def test_parse_server_rejects(text: str) -> None:
    with pytest.raises(ConfigError):
        config.parse_server(text)


@pytest.mark.skipif(os.name == "nt", reason="POSIX file modes")
def test_written_config_reads_back_and_is_private(tmp_path: Path) -> None:
    path = tmp_path / "client.conf"
    config.write_client_config(path, "[::1]:9000", 42, KEY, 5)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    cfg = load_config(path, env={"STATE_DIRECTORY": str(tmp_path)})
    assert cfg == ClientConfig(
        host="::1", port=9000, account_id=42, key=KEY, interval=5.0, state_file=str(tmp_path / "account-42.state")
    )
    assert cfg.server == "[::1]:9000"
    assert KEY_HEX not in repr(cfg)


def test_file_env_options_precedence_and_key_file(tmp_path: Path) -> None:
    (tmp_path / "key").write_text(KEY_HEX.upper() + "\n")
    path = tmp_path / "c.conf"
    path.write_text(
        "# comment\nserver = 'a.example:1'\naccount_id = 1   # trailing comment\nkey_file = key\ninterval = 45\n\n"
    )
    cfg = load_config(path, env={})
    assert (cfg.host, cfg.port, cfg.account_id, cfg.key, cfg.interval) == ("a.example", 1, 1, KEY, 45)
    env = {"HBDNS_CLIENT_SERVER": "b.example:2", "HBDNS_CLIENT_INTERVAL": "15", "HBDNS_CLIENT_SOURCE": "127.0.0.2"}
    cfg = load_config(path, env=env)
    assert (cfg.host, cfg.interval, cfg.source) == ("b.example", 15.0, "127.0.0.2")
    cfg = load_config(path, env=env, overrides={"server": "c.example:3", "account_id": "7", "source": None})
    assert (cfg.host, cfg.account_id, cfg.source) == ("c.example", 7, "127.0.0.2")
    only_env = load_config(
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
    with pytest.raises(ConfigError, match=words):
        load_config(path, env={})


def test_reply_every_state_file_and_log_file_from_file_env_and_option(tmp_path: Path) -> None:
    path = tmp_path / "c.conf"
    path.write_text(f"server = x:1\naccount_id = 1\nkey = {KEY_HEX}\n")
    assert load_config(path, env={}).reply_every == config.DEFAULT_REPLY_EVERY == 30
    path.write_text(f"server = x:1\naccount_id = 1\nkey = {KEY_HEX}\nreply_every = 60\nstate_file = s/one\n")
    cfg = load_config(path, env={})
    assert cfg.reply_every == 60 and cfg.state_file == str(tmp_path / "s" / "one")  # relative to the file
    env = {"HBDNS_CLIENT_REPLY_EVERY": "0", "HBDNS_CLIENT_LOG_FILE": "/var/log/c.log"}
    assert (load_config(path, env=env).reply_every, load_config(path, env=env).log_file) == (0, "/var/log/c.log")
    cfg = load_config(path, env=env, overrides={"reply_every": "12.5", "state_file": "/x/y.state"})
    assert (cfg.reply_every, cfg.state_file) == (12.5, "/x/y.state")


def test_default_state_file_systemd_state_directory_first(tmp_path: Path) -> None:
    base = {"HBDNS_CLIENT_SERVER": "x:1", "HBDNS_CLIENT_ACCOUNT_ID": "7", "HBDNS_CLIENT_KEY": KEY_HEX}
    cfg = load_config(None, env={**base, "STATE_DIRECTORY": f"{tmp_path}/a:{tmp_path}/b"})
    assert cfg.state_file == str(tmp_path / "a" / "account-7.state")


def test_default_state_dir_on_posix(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(config.os, "geteuid", lambda: 0, raising=False)
    assert config.default_state_dir({}, "posix") == Path("/var/lib/hbdns-client")  # what the systemd unit uses
    monkeypatch.setattr(config.os, "geteuid", lambda: 1000, raising=False)
    home = {"HOME": str(tmp_path)}
    assert config.default_state_dir(home, "posix") == tmp_path / ".local" / "state" / "hbdns-client"
    assert config.default_state_dir({"XDG_STATE_HOME": "/s", "HOME": "/h"}, "posix") == Path("/s/hbdns-client")


def test_default_state_dir_on_windows() -> None:
    """The os.name == "nt" branch: %ProgramData%, shared by the scheduled task and an administrator's check."""
    assert str(config.default_state_dir({"ProgramData": "D:\\PD"}, "nt")) == "D:\\PD\\hbdns-client"
    assert str(config.default_state_dir({"STATE_DIRECTORY": "/x"}, "nt")) == "C:\\ProgramData\\hbdns-client"
