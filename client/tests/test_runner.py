"""The ``run`` loop's step function: it never gives up, asks for replies sparingly, logs each change once."""

from __future__ import annotations

import logging

import pytest

from hbdns_client import wire
from hbdns_client.beater import Outcome, Sent
from hbdns_client.config import DEFAULT_REPLY_EVERY, ClientConfig
from hbdns_client.resolve import NameNotResolved
from hbdns_client.runner import Runner


class FakeServerClock:
    def __init__(self) -> None:
        self.offset: float | None = None

    def wall_offset_s(self) -> float | None:
        return self.offset


class ScriptedBeater:
    """Stands in for Beater: each beat takes the next scripted outcome (or exception).

    A beat that does not ask for a reply gets no answer and takes no outcome from the script;
    ``asks`` records which beats asked.
    """

    def __init__(self, script: list[Outcome | Exception], reply_every: float = DEFAULT_REPLY_EVERY) -> None:
        self.cfg = ClientConfig(host="hb.example", port=8999, account_id=1, key=bytes(32), reply_every=reply_every)
        self.script = script
        self.asks: list[bool] = []
        self.refresh_due = False
        self.wake = None
        self.server_clock = FakeServerClock()

    def beat(self, *, offline: bool = False, timeout: float = 2.0, reply: bool = True) -> Outcome:
        self.asks.append(reply)
        if not reply:
            return Outcome(sent=(Sent(4, "192.0.2.1:8999", 1),))
        step = self.script.pop(0)
        if isinstance(step, Exception):
            raise step
        return step


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def ok(address: str = "198.51.100.1", status: int = wire.STATUS_OK) -> Outcome:
    return Outcome(sent=(Sent(4, "192.0.2.1:8999", 1, wire.Reply(status, address)),))


SILENCE = Outcome(sent=(Sent(4, "192.0.2.1:8999", 1),))
REFUSED = Outcome(sent=(Sent(4, "192.0.2.1:8999", 1, refused=True),))
SKEW = Outcome(sent=(Sent(4, "192.0.2.1:8999", 1, wire.Reply(wire.STATUS_CLOCK_SKEW, "", 1, 300_000)),))


def run(runner: Runner, clock: FakeClock, times: list[float]) -> list[float]:
    """Beat once at each of ``times`` (seconds); the delays the runner asked for."""
    delays = []
    for t in times:
        clock.now = t
        delays.append(runner.step())
    return delays


def messages(caplog: pytest.LogCaptureFixture, text: str) -> int:
    return sum(text in r.getMessage() for r in caplog.records)


def test_never_answered_keeps_beating_and_says_once_that_a_wrong_key_looks_like_silence(
    caplog: pytest.LogCaptureFixture,
) -> None:
    beater = ScriptedBeater([SILENCE] * 50)
    runner = Runner(beater)  # type: ignore[arg-type]
    delays = [runner.step() for _ in range(50)]
    assert all(4.75 <= d <= 5.0 for d in delays)  # the interval, every time: it never gives up
    assert messages(caplog, "a wrong key or account id looks exactly like an unreachable server") == 1
    assert messages(caplog, "8999") >= 1 and runner.state == "silent"
    assert beater.asks == [True] * 50


def test_keeps_beating_through_outages_and_logs_each_change_once(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    script: list[Outcome | Exception] = [ok(), *[SILENCE] * 10, ok("198.51.100.2"), *[ok("198.51.100.2")] * 3]
    runner = Runner(ScriptedBeater(script, reply_every=0))  # type: ignore[arg-type]
    for _ in range(15):
        runner.step()
    assert messages(caplog, "heartbeats accepted by hb.example:8999 (account 1)") == 1
    assert messages(caplog, "public IPv4 address 198.51.100.1") == 1
    assert messages(caplog, "no answer from hb.example:8999 to the last 3 heartbeats; still beating") == 1
    assert messages(caplog, "heartbeats accepted by hb.example:8999 again (it was silent)") == 1
    assert messages(caplog, "public IPv4 address changed from 198.51.100.1 to 198.51.100.2") == 1


def test_asks_until_answered_then_only_every_reply_every_seconds() -> None:
    beater, clock = ScriptedBeater([SILENCE, ok(), ok(), ok()]), FakeClock()
    runner = Runner(beater, clock=clock)  # type: ignore[arg-type]
    run(runner, clock, [0, 5, 10, 15, 20, 25, 30, 34.9, 35, 40, 64.9, 65])
    # the first beat went unanswered, the second was answered at 5 s: the next ask is due at 35 s
    assert beater.asks == [True, True, False, False, False, False, False, False, True, False, False, True]
    assert beater.script == [] and runner.unanswered == 0


def test_asks_every_beat_after_an_unanswered_ask_and_looks_the_name_up_again(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    beater, clock = ScriptedBeater([ok(), *[SILENCE] * 12, ok("198.51.100.2")]), FakeClock()
    runner = Runner(beater, clock=clock)  # type: ignore[arg-type]
    run(runner, clock, [0, 5, 10, 15, 20, 25])
    assert runner.unanswered == 0  # five beats that did not ask: no answer expected, none missed
    run(runner, clock, [30, 35])
    assert runner.unanswered == 2 and not beater.refresh_due
    run(runner, clock, [40])
    assert beater.refresh_due  # after 3 unanswered asks: the server may have moved
    beater.refresh_due = False
    run(runner, clock, [45, 50, 55])
    assert runner.unanswered == 6 and beater.refresh_due  # and again after 6, 12, ... (a backoff)
    beater.refresh_due = False
    run(runner, clock, [60 + 5 * i for i in range(5)])
    assert runner.unanswered == 11 and not beater.refresh_due
    run(runner, clock, [85, 90])
    assert beater.refresh_due and runner.unanswered == 0
    assert messages(caplog, "public IPv4 address changed from 198.51.100.1 to 198.51.100.2") == 1
    assert beater.asks[:6] == [True, False, False, False, False, False] and all(beater.asks[6:])


def test_reply_every_0_asks_on_every_beat() -> None:
    beater, clock = ScriptedBeater([ok()] * 4, reply_every=0), FakeClock()
    runner = Runner(beater, clock=clock)  # type: ignore[arg-type]
    run(runner, clock, [0, 0, 5, 5])
    assert beater.asks == [True] * 4


def test_name_that_does_not_resolve_is_retried_with_a_bounded_backoff_and_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    fails: list[Outcome | Exception] = [NameNotResolved("cannot resolve hb.example: Name or service not known")] * 8
    beater = ScriptedBeater([*fails, ok()])
    runner = Runner(beater)  # type: ignore[arg-type]
    delays = [runner.step() for _ in range(8)]
    # 1, 2, 4 s, then the interval (5 s): up to 5% early, never later
    assert [round(d) for d in delays] == [1, 2, 4, 5, 5, 5, 5, 5]
    assert all(d <= cap for d, cap in zip(delays, [1, 2, 4, 5, 5, 5, 5, 5]))
    assert messages(caplog, "cannot resolve hb.example: Name or service not known; the network may not") == 1
    runner.step()
    assert runner.state == "answered" and messages(caplog, "heartbeats accepted by hb.example:8999") == 1
    assert runner.failures == 0


def test_network_unreachable_and_refused_port_are_states_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    unreachable: list[Outcome | Exception] = [OSError(101, "Network is unreachable")] * 4
    beater = ScriptedBeater([*unreachable, REFUSED, REFUSED, REFUSED, ok()], reply_every=0)
    runner = Runner(beater)  # type: ignore[arg-type]
    for _ in range(8):
        runner.step()
    assert messages(caplog, "cannot send heartbeats to hb.example:8999: Network is unreachable") == 1
    assert messages(caplog, "refuses heartbeats (ICMP port unreachable)") == 1
    assert runner.state == "answered"


def test_clock_skew_is_logged_with_the_offset_and_the_next_beat_goes_out_at_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    beater = ScriptedBeater([SKEW, ok(), SKEW, SKEW, ok()], reply_every=0)
    beater.server_clock.offset = 3600.25
    runner = Runner(beater)  # type: ignore[arg-type]
    assert runner.step() == 0.0  # the counters follow the server now: beat again right away
    assert runner.step() > 4  # accepted: back to the interval
    assert messages(caplog, "says this machine's clock is off by +3600.2 s (ours is ahead)") == 1
    assert runner.step() == 0.0
    assert runner.step() > 4  # a second skew in a row: no loop of immediate beats
    runner.step()
    assert messages(caplog, "clock is off by") == 2 and runner.state == "answered"  # two episodes, one line each


def test_a_name_lookup_that_fails_while_old_addresses_work_is_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    failing = Outcome(sent=ok().sent, resolve_error="cannot resolve hb.example: Temporary failure")
    beater = ScriptedBeater([failing, failing, failing, ok()], reply_every=0)
    runner = Runner(beater)  # type: ignore[arg-type]
    for _ in range(4):
        runner.step()
    assert messages(caplog, "Temporary failure; beating to the last known addresses") == 1
    assert messages(caplog, "the name hb.example resolves again") == 1


def test_jitter_is_early_never_late() -> None:
    runner = Runner(ScriptedBeater([]))  # type: ignore[arg-type]
    delays = [runner.delay() for _ in range(200)]
    assert all(4.75 <= d <= 5.0 for d in delays) and len(set(delays)) > 1
