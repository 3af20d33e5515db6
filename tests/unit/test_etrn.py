"""Flush targets, reply meanings and counters (hbdns.etrn): pure, no sockets."""

from __future__ import annotations

import pytest

from hbdns import config
from hbdns.etrn import (
    FlushCounters,
    FlushResult,
    FlushTarget,
    Outcome,
    classify,
    classify_postqueue,
    parse_target,
    parse_targets,
)


@pytest.mark.parametrize(
    ("spec", "target"),
    [
        ("mx-backup.example.net", FlushTarget("smtp", "mx-backup.example.net", 25)),
        ("MX-Backup.Example.NET:2525", FlushTarget("smtp", "mx-backup.example.net", 2525)),
        ("127.0.0.1:25", FlushTarget("smtp", "127.0.0.1", 25)),
        ("[fd00::25]", FlushTarget("smtp", "fd00::25", 25)),
        ("[FD00::25]:2525", FlushTarget("smtp", "fd00::25", 2525)),
        ("postqueue", FlushTarget("postqueue")),
        ("postqueue:/etc/postfix-backup", FlushTarget("postqueue", config_dir="/etc/postfix-backup")),
    ],
)
def test_targets_parse_and_print_back(spec: str, target: FlushTarget) -> None:
    assert parse_target(spec) == target
    assert parse_target(str(target)) == target


@pytest.mark.parametrize(
    "spec",
    ["", "fd00::25", "[fd00::25", "[fd00::25]x", "host:", "host:0", "host:99999", "host:x", "a b", "postqueue:rel"],
)
def test_bad_targets_are_refused_with_a_reason(spec: str) -> None:
    with pytest.raises(ValueError, match=r"\S"):
        parse_target(spec)


def test_targets_listed_twice_are_refused() -> None:
    with pytest.raises(ValueError, match="twice"):
        parse_targets(("mx.example.net", "MX.example.net:25"))


def test_settings_validate_the_target_list() -> None:
    s = config.load({"HBDNS_BACKUP_MX_FLUSH": "mx1.example.net, [fd00::25]:2525 ,postqueue"})
    assert s.backup_mx_flush == ("mx1.example.net:25", "[fd00::25]:2525", "postqueue")
    with pytest.raises(config.ConfigError, match="HBDNS_BACKUP_MX_FLUSH"):
        config.load({"HBDNS_BACKUP_MX_FLUSH": "fd00::25"})


@pytest.mark.parametrize(
    ("code", "outcome"),
    [
        (250, Outcome.FLUSHED),
        (251, Outcome.FLUSHED),
        (252, Outcome.FLUSHED),
        (253, Outcome.FLUSHED),
        (458, None),
        (421, None),
        (0, None),
        (459, Outcome.NOT_ELIGIBLE),
        (554, Outcome.REFUSED),
        (500, Outcome.REFUSED),
        (502, Outcome.REFUSED),
    ],
)
def test_reply_codes(code: int, outcome: Outcome | None) -> None:
    assert classify(code) is outcome


def test_postqueue_messages() -> None:
    assert classify_postqueue(0, "") is Outcome.FLUSHED
    not_configured = 'postqueue: fatal: Flush service is not configured for destination "x.test"'
    assert classify_postqueue(69, not_configured) is Outcome.NOT_ELIGIBLE
    assert classify_postqueue(69, "postqueue: fatal: Connect to the Postfix flush service: No such file") is None
    assert classify_postqueue(69, "postqueue: fatal: User x(1000) is not authorized to flush") is Outcome.REFUSED


def test_counters_count_outcomes_and_attempts_per_target() -> None:
    counters = FlushCounters()
    for outcome, attempts in ((Outcome.FLUSHED, 1), (Outcome.FLUSHED, 3), (Outcome.FAILED, 5)):
        counters.add(FlushResult("h.test", "mx:25", outcome, 250, "", attempts, 0.0))
    assert counters.results() == {("mx:25", "flushed"): 2, ("mx:25", "failed"): 1}
    assert counters.attempts() == {"mx:25": 9}
    text = counters.prometheus()
    assert 'hbdns_mta_flush_total{target="mx:25",outcome="flushed"} 2' in text
    assert 'hbdns_mta_flush_attempts_total{target="mx:25"} 9' in text


def test_result_detail_is_one_bounded_line() -> None:
    from hbdns.etrn import short

    assert short("a\r\nb   c") == "a b c"
    assert len(short("x" * 1000)) == 200
