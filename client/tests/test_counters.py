"""Counters never go back (state file, across restarts) and follow the server's clock once it is known."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest

from hbdns_client.clock import TEST_CLOCK_ENV, Clock, ServerClock
from hbdns_client.counters import KEEP, Counters
from hbdns_client.state import StateFile

HOUR_MS = 3_600_000
T0 = 1_800_000_000_000  # Unix ms


class Wall:
    """The wall clock (ns) and the monotonic clock (s), both set by the test."""

    def __init__(self, ms: int = T0) -> None:
        self.ms = ms
        self.mono_s = 1000.0

    def ns(self) -> int:
        return self.ms * 1_000_000

    def mono(self) -> float:
        return self.mono_s

    def tick(self, seconds: float) -> None:
        self.ms += int(seconds * 1000)
        self.mono_s += seconds


def counters(wall: Wall, state: StateFile | None = None) -> Counters:
    return Counters(ServerClock(Clock(wall.ns, wall.mono)), state)


def test_counter_is_the_clock_but_strictly_increasing_when_the_clock_steps_back() -> None:
    wall = Wall()
    c = counters(wall)
    first = c.next()
    wall.ms -= 1000  # the clock steps back
    assert [first, c.next(), c.next()] == [T0, T0 + 1, T0 + 2]
    wall.ms += 2000
    assert c.next() == T0 + 1000


def test_the_state_file_keeps_counters_increasing_across_restarts(tmp_path: Path) -> None:
    wall, path = Wall(), tmp_path / "sub" / "a.state"
    c = counters(wall, StateFile(path, 7))
    sent = [c.next() for _ in range(3)]
    assert json.loads(path.read_text()) == {"format": 1, "account_id": 7, "counter": sent[-1]}
    wall.ms -= HOUR_MS  # the next start: a board without a real-time clock, an hour behind
    again = counters(wall, StateFile(path, 7))
    assert again.next() == sent[-1] + 1


def test_a_one_shot_command_between_two_beats_is_never_overtaken(tmp_path: Path) -> None:
    wall, path = Wall(), tmp_path / "a.state"
    run = counters(wall, StateFile(path, 7))
    run.next()
    send = counters(Wall(T0 + 60_000), StateFile(path, 7))  # another process, its clock a minute later
    sent_by_send = send.next()
    assert run.next() == sent_by_send + 1


def test_a_clock_skew_answer_moves_the_counters_to_the_server_clock_and_lowers_the_floor() -> None:
    wall = Wall(T0 + HOUR_MS)  # an hour fast
    c = counters(wall)
    refused = c.next()
    assert refused == T0 + HOUR_MS
    c.clock.sync(T0, wall.mono(), 300_000)  # the CLOCK_SKEW answer: the server reads T0
    c.refused(refused, T0, 300_000)
    wall.tick(5)
    assert c.next() == T0 + 5000  # not refused + 1: that would stay an hour ahead
    assert c.clock.wall_offset_s() == pytest.approx(3600, abs=0.01)
    wall.ms -= HOUR_MS  # NTP corrects the wall clock: the counters do not jump
    wall.tick(5)
    assert c.next() == T0 + 10_000


def test_a_refused_counter_that_a_dead_process_left_behind_is_capped_at_the_servers_window(tmp_path: Path) -> None:
    """The previous process wrote a counter an hour ahead and died before the CLOCK_SKEW answer came."""
    path = tmp_path / "a.state"
    StateFile(path, 7).write(T0 + HOUR_MS)
    wall = Wall(T0)
    c = counters(wall, StateFile(path, 7))
    c.refused(c.next(), T0, 300_000)  # T0 + HOUR + 1: refused, the server reads T0, window 300 s
    assert c.floor == T0 + 300_000  # nothing above the server's clock + window can have been accepted
    assert json.loads(path.read_text())["counter"] == T0 + 300_000
    c.clock.sync(T0, wall.mono(), 300_000)
    wall.tick(5)
    assert c.next() == T0 + 300_001  # inside the window again, and above anything ever accepted


def test_a_refused_counter_behind_the_clock_only_leaves_the_floor() -> None:
    wall = Wall(T0 - HOUR_MS)
    c = counters(wall)
    accepted = c.next()
    refused = c.next()
    c.refused(refused, T0, 300_000)
    assert c.floor == accepted


def test_only_the_newest_counters_are_tracked_one_by_one() -> None:
    wall = Wall()
    c = counters(wall)
    sent = [c.next() for _ in range(KEEP + 5)]
    for counter in sent[-KEEP:]:
        c.refused(counter)
    assert c.floor == sent[4]  # the older ones folded into the floor: still never reused


def test_state_file_problems_are_logged_once_and_do_not_stop_the_counters(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    bad = tmp_path / "state"
    bad.write_text("{not json")
    state = StateFile(bad, 7)
    assert state.read() == 0 and state.read() == 0
    bad.write_text(json.dumps({"account_id": 8, "counter": 5}))
    assert state.read() == 0
    blocked = StateFile(tmp_path / "file" / "x.state", 7)
    (tmp_path / "file").write_text("a file where the directory should be")
    c = counters(Wall(), blocked)
    assert [c.next(), c.next()] == [T0, T0 + 1]
    messages = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len([m for m in messages if f"cannot read state file {bad} " in m]) == 1
    assert len([m for m in messages if "is for another account" in m]) == 1
    assert len([m for m in messages if f"cannot read state file {blocked.path} " in m]) == 1
    assert len([m for m in messages if f"cannot write state file {blocked.path} " in m]) == 1


def test_test_clock_hook_offsets_the_wall_clock_and_can_change_while_running(tmp_path: Path) -> None:
    offset = tmp_path / "offset"
    clock = Clock.from_env({TEST_CLOCK_ENV: str(offset)})
    assert abs(clock.wall_ms() - Clock().wall_ms()) < 1000  # no file: no offset
    offset.write_text("3600\n")
    assert abs(clock.wall_ms() - Clock().wall_ms() - HOUR_MS) < 1000
    offset.write_text("-3600.5")
    assert abs(clock.wall_ms() - Clock().wall_ms() + HOUR_MS + 500) < 1000
    assert Clock.from_env({}).offset_file == "" and TEST_CLOCK_ENV not in os.environ
