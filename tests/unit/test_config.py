from __future__ import annotations

import re
from pathlib import Path

import pytest

from hbdns import config
from hbdns.plans import DEFAULT_PLANS

ROOT = Path(__file__).resolve().parents[2]


def test_defaults_work_without_environment() -> None:
    s = config.load({})
    assert s.redis_url.startswith("redis://127.0.0.1")
    assert s.backend_host == "127.0.0.1"  # the backend is private by default


def test_typed_values() -> None:
    s = config.load({"HBDNS_BACKEND_PORT": "9000", "HBDNS_PDNS_API_URLS": "http://a:1, http://b:2"})
    assert s.backend_port == 9000
    assert s.pdns_api_urls == ("http://a:1", "http://b:2")


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("HBDNS_BACKEND_PORT", "eighty"),
        ("HBDNS_BACKEND_PORT", "70000"),
        ("HBDNS_SWEEP_INTERVAL", "0"),
        ("HBDNS_SWEEPER_ROLES", "sweeper,hints"),
        ("HBDNS_SWEEPER_ROLES", " , "),
        ("HBDNS_SMTP_SECURITY", "ssl3"),
        ("HBDNS_DEFAULT_NEUTRAL_IPV4", "300.1.1.1"),
        ("HBDNS_UPDATE_TRUSTED_PROXIES", "10.0.0.0/99"),
        ("HBDNS_PLANS", "[1, 2]"),
        ("HBDNS_PLANS", '{"heartbeat-c": {"interval": "fast"}}'),
        ("HBDNS_PLANS", '{"heartbeat-c": {"colour": 1}}'),
    ],
)
def test_bad_value_names_the_variable(name: str, value: str) -> None:
    with pytest.raises(config.ConfigError, match=name):
        config.load({name: value})


def test_unknown_variable_is_refused_but_client_variables_pass() -> None:
    with pytest.raises(config.ConfigError, match="HBDNS_REDIS_ULR"):
        config.load({"HBDNS_REDIS_ULR": "redis://x"})
    config.load({"HBDNS_CLIENT_SERVER": "example.net:8999"})


def test_sweeper_roles_are_a_set_of_known_loops() -> None:
    assert config.load({}).sweeper_roles == ("sweep", "hints")
    assert config.load({"HBDNS_SWEEPER_ROLES": " Hints, hints "}).sweeper_roles == ("hints",)


def test_a_removed_setting_is_ignored_not_refused() -> None:
    # an env file shared by every service must not stop the backend over the notifier's old roles line
    s = config.load({"HBDNS_NOTIFIER_ROLES": "sweeper,hints,consumer"})
    assert s == config.load({})
    assert "hbdns-sweeper" in config.REMOVED["HBDNS_NOTIFIER_ROLES"]


def test_secret_values_are_not_echoed() -> None:
    with pytest.raises(config.ConfigError) as err:
        config.load({"HBDNS_SMTP_PASSWORD": "hunter2", "HBDNS_SMTP_PORT": "x"})
    assert "hunter2" not in str(err.value)
    assert config.is_secret("smtp_password") and config.is_secret("pdns_api_key")


def test_plan_overrides_merge_over_the_seed_table() -> None:
    s = config.load(
        {"HBDNS_PLANS": '{"setip-c": {"interval": 2}, "x": {"kind": "expiry", "interval": 1, "misses": 1, "ttl": 5}}'}
    )
    table = s.plan_table()
    assert table["setip-c"].interval == 2 and table["setip-c"].misses == 1
    assert table["x"].expiry_ms == 1000
    assert table["heartbeat-c"] == DEFAULT_PLANS["heartbeat-c"]


def test_seed_figures() -> None:
    p = DEFAULT_PLANS
    assert [p[f"heartbeat-{x}"].interval for x in "abc"] == [45, 15, 5]
    assert all(p[f"heartbeat-{x}"].misses == 3 for x in "abc")
    assert p["heartbeat-c"].expiry_ms == 15_500  # 3 missed beats + 0.5 s grace
    # neutral through a caching resolver within the seed's 20 s: window + grace + pdns cache + TTL
    assert p["heartbeat-c"].expiry_ms / 1000 + 1 + p["heartbeat-c"].ttl <= 20
    assert [p[f"setip-{x}"].interval for x in "abc"] == [900, 600, 300]
    assert [p[f"business-{x}"].interval for x in "abc"] == [5400, 3600, 1800]
    assert [p[f"private-{x}"].interval for x in "ab"] == [21600, 10800]
    assert 86400 / p["heartbeat-c"].interval == 17280


def test_env_example_lists_every_setting_with_a_comment() -> None:
    text = (ROOT / "deploy" / ".env.example").read_text()
    listed = dict(re.findall(r"^(HBDNS_[A-Z0-9_]+)=(.*)$", text, re.M))
    for name, default in config.describe():
        assert name in listed, f"{name} missing from deploy/.env.example"
        assert listed[name] == default, f"{name}: .env.example says {listed[name]!r}, code {default!r}"
    assert set(listed) == {n for n, _ in config.describe()}
    # every entry sits under a comment line
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("HBDNS_"):
            j = i - 1
            while j >= 0 and lines[j].startswith("HBDNS_"):
                j -= 1
            assert j >= 0 and lines[j].startswith("#"), f"{line} has no comment"


def test_service_settings_exits_2_naming_the_bad_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("HBDNS_BACKEND_PORT", "99999")
    with pytest.raises(SystemExit) as exc:
        config.service_settings("hbdns-backend")
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("hbdns-backend: ") and "HBDNS_BACKEND_PORT" in err and err.count("\n") == 1
