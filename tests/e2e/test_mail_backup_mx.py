"""Issue 13 at the DNS level with real Postfix, in a private namespace (tests.support.mail_scenarios
``phase1``): today's neutral MX set bounces; the MX set kept with a neutral address defers and
queues, and one ETRN after the customer is back delivers everything, once, within seconds.

Skipped (with the reason) only where namespaces cannot be made. The scenario asserts each step
itself; these tests restate what it measured, so a failure names the broken promise."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import netns

pytestmark = pytest.mark.skipif(netns.unavailable() is not None, reason=f"no namespace: {netns.unavailable()}")


@pytest.fixture(scope="module")
def phase1(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    workdir = Path(tmp_path_factory.mktemp("mail-phase1"))
    run = netns.run("tests.support.mail_scenarios", ["phase1"], workdir=workdir, timeout=240)
    assert run.returncode == 0, run.explain() + f"\nlogs: {workdir}"
    yield run.result


def test_todays_backup_only_mx_set_bounces_on_a_stock_backup(phase1: dict[str, Any]) -> None:
    assert phase1["today_stock"]["backup_log"] == "mail for home.dyn.hbdns.test loops back to myself"
    assert phase1["today_stock"]["bounces"] == 1  # the sender was told 250, then got the bounce


def test_the_deployed_backup_defers_even_todays_mx_set(phase1: dict[str, Any]) -> None:
    assert phase1["today_deploy"] == {"queued": 1, "bounces": 1}  # no new bounce


def test_queued_mail_is_delivered_once_within_seconds_of_the_flush(phase1: dict[str, Any]) -> None:
    assert phase1["queued"] == phase1["delivered"] == 16
    assert phase1["duplicates"] == 0
    assert phase1["flush_result"]["outcome"] == "flushed" and phase1["flush_result"]["code"] == 250
    assert phase1["flush_to_last_delivery_s"] < 10
    assert phase1["postqueue_to_last_delivery_s"] < 10


def test_unknown_users_are_refused_during_smtp_and_nothing_else_bounces(phase1: dict[str, Any]) -> None:
    assert phase1["outage_refused_unknown"] == (
        "550 5.1.1 <nosuchuser@home.dyn.hbdns.test>: Recipient address rejected: User unknown"
    )
    assert phase1["bounces_total"] == 2  # today's bounce, and the sender's own DSN for nosuchuser


def test_etrn_is_for_hbdns_only_and_for_relayed_names(phase1: dict[str, Any]) -> None:
    assert (phase1["stranger_etrn"]["outcome"], phase1["stranger_etrn"]["code"]) == ("refused", 554)
    assert (phase1["not_relayed_etrn"]["outcome"], phase1["not_relayed_etrn"]["code"]) == ("not_eligible", 459)


def test_senders_fall_back_to_the_backup_in_milliseconds(phase1: dict[str, Any]) -> None:
    delays = phase1["sender_delay_s"]
    assert delays["neutral host, 421"] < 2 and delays["neutral address refusing"] < 2, delays
