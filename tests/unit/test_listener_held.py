"""heartbeat_listener.held: the newest beat per account, bounded in number and age (pure logic)."""

from __future__ import annotations

from hbdns.liveness import BeatRequest
from heartbeat_listener.held import HeldBeats


def beat(account_id: int, ip: str, counter: int) -> BeatRequest:
    return BeatRequest(account_id, "z.test", 15000, ipv4=ip, counter=counter)


def test_bounded_in_number_oldest_first_out() -> None:
    held = HeldBeats(max_size=3)
    held.add(beat(i, ".1", i) for i in range(5))
    assert [q.account_id for q in held.beats()] == [2, 3, 4] and held.dropped == 2


def test_newest_per_account_moves_to_the_end() -> None:
    held = HeldBeats()
    held.add([beat(2, ".1", 1), beat(3, ".1", 1), beat(4, ".1", 1)])
    held.add([beat(3, ".2", 9)])
    assert [(q.account_id, q.ipv4) for q in held.beats()] == [(2, ".1"), (4, ".1"), (3, ".2")]
    held.add([beat(3, ".7", 5)])  # an older beat never replaces a newer one
    assert held.beats()[-1].ipv4 == ".2"


def test_release_forgets_only_what_was_not_replaced_since() -> None:
    held = HeldBeats()
    held.add([beat(1, ".1", 1), beat(2, ".1", 1)])
    covered = held.snapshot()
    held.add([beat(2, ".3", 10)])  # replaced after the snapshot: stays
    assert held.release(covered) == 1 and [q.ipv4 for q in held.beats()] == [".3"]
    assert held.release(covered) == 0


def test_bounded_in_age() -> None:
    clock = [0.0]
    held = HeldBeats(max_age=10.0, clock=lambda: clock[0])
    held.add([beat(1, ".1", 1)])
    clock[0] = 5.0
    held.add([beat(2, ".1", 1)])
    clock[0] = 12.0
    assert [q.account_id for q in held.beats()] == [2] and held.dropped == 1
    clock[0] = 16.0
    assert held.beats() == [] and held.dropped == 2 and not held
