"""Issue 13 end to end on the real hbdns stack, in a private namespace (tests.support.mail_recovery
``recovery``): a customer's outage and recovery with 100 messages through a real backup MX, a
dual-stack customer losing IPv4, and an address change with a stranger on the old address.

Skipped (with the reason) only where namespaces cannot be made. The scenario asserts each step
itself; these tests restate what it measured, so a failure names the broken promise."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import netns

pytestmark = [
    pytest.mark.skipif(netns.unavailable() is not None, reason=f"no namespace: {netns.unavailable()}"),
    pytest.mark.long_wait,
]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    workdir = Path(tmp_path_factory.mktemp("mail-recovery"))
    done = netns.run("tests.support.mail_recovery", ["recovery"], workdir=workdir, timeout=420)
    assert done.returncode == 0, done.explain() + f"\nlogs: {workdir}"
    yield done.result


def test_mail_is_queued_never_bounced_and_delivered_seconds_after_the_first_beat_back(run: dict[str, Any]) -> None:
    rec = run["recovery"]
    assert rec["messages"] == rec["delivered"] == 100
    assert (rec["bounced"], rec["duplicates"], rec["unknown_accepted"]) == (0, 0, 0)
    assert rec["unknown_refused_by_backup"] == rec["unknown_sent"] == 5  # refused during SMTP
    assert rec["first_beat_back_to_queued_delivered_s"]["max"] <= 10
    assert rec["flushes"] == ["again", "recovered"]  # newest first: the flush, then the second one


def test_neutral_within_the_seeds_20_s_even_through_a_caching_resolver(run: dict[str, Any]) -> None:
    assert run["neutral_after_last_beat_s"]["caching resolver"] <= 20


def test_a_dual_stack_customer_loses_only_its_ipv4(run: dict[str, Any]) -> None:
    dual = run["dual_stack"]
    assert dual["aaaa_kept"] and dual["a_neutral_after_last_ipv4_beat_s"] <= 18
    assert dual["delivered_after"] == 3
    assert "lost IPv4" in dual["notification"]


def test_no_mail_for_a_stranger_on_the_old_address_once_dns_moved(run: dict[str, Any]) -> None:
    ac = run["address_change"]
    assert ac["stranger_got_sent_after_dns_changed"] == ac["stranger_got_after_dns_changed"] == 0
    assert ac["exposure_s"] <= 7
