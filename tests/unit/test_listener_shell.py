"""The listener's socket shell (heartbeat_listener.server.UdpListener) on a loopback socket, with an
in-memory lookup and a pipelined writer whose results are handed out only when collected."""

from __future__ import annotations

import select
import socket
from collections.abc import Iterator, Sequence

import pytest
from hbdns_client import wire

from hbdns.liveness import OK, REKEY, BeatRequest, BeatResult
from heartbeat_listener.metrics import Metrics
from heartbeat_listener.protocol import AccountInfo, PreAuth, RecentBeats
from heartbeat_listener.server import UdpListener, open_socket

KEY = bytes(range(32))
NOW_MS = 1_700_000_000_000


class RecordingWriter:
    """Tickets are batch numbers; ``collected`` lists which batches were read, in order."""

    def __init__(self) -> None:
        self.submitted: list[list[BeatRequest]] = []
        self.collected: list[int] = []

    def submit(self, reqs: Sequence[BeatRequest]) -> int:
        self.submitted.append(list(reqs))
        return len(self.submitted) - 1

    def collect(self, ticket: int) -> list[BeatResult]:
        self.collected.append(ticket)
        return [OK] * len(self.submitted[ticket])


@pytest.fixture
def server() -> Iterator[socket.socket]:
    sock = open_socket("127.0.0.1", 0)
    yield sock
    sock.close()


def _send(server: socket.socket, counters: Sequence[int], client: socket.socket) -> None:
    for c in counters:
        client.sendto(wire.encode_beat(7, NOW_MS + c, KEY, wire.FLAG_REPLY), server.getsockname())


def _readable(sock: socket.socket) -> bool:
    return bool(select.select([sock], [], [], 2.0)[0])


@pytest.mark.parametrize("depth", [1, 2])
def test_batches_stay_in_flight_up_to_depth_and_finish_when_idle(server: socket.socket, depth: int) -> None:
    writer = RecordingWriter()
    metrics = Metrics()
    listener = UdpListener(
        [server], lambda ids: {i: AccountInfo(KEY, 15000, "dyn.test", "fp") for i in ids}, writer,
        metrics=metrics, batch=2, depth=depth,
    )  # fmt: skip
    client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    client.bind(("127.0.0.1", 0))
    client.settimeout(2.0)
    try:
        steps = 3
        for k in range(steps):  # one full batch waiting per step
            _send(server, [2 * k, 2 * k + 1], client)
            assert _readable(server)
            assert listener.step(1.0) == 2
            # batches received so far: k + 1; the newest ``depth`` stay at Redis, unread
            assert writer.collected == list(range(max(0, k + 1 - depth)))
            assert metrics.packets["accepted"] == 2 * len(writer.collected)
        assert listener.step(0.05) == 0  # nothing waiting: every batch in flight is finished now
        assert writer.collected == list(range(steps))
        assert metrics.packets["accepted"] == 2 * steps
        # replies went out only for collected (accepted) beats, one per beat
        replies = [client.recv(64) for _ in range(2 * steps)]
        assert all(len(r) == 12 for r in replies)
    finally:
        client.close()


class StaleWriter(RecordingWriter):
    """The beat script's verdict for every beat: outside the skew window."""

    def collect(self, ticket: int) -> list[BeatResult]:
        self.collected.append(ticket)
        return [BeatResult("stale", False, "", "", ("h.dyn.test",))] * len(self.submitted[ticket])


def test_stale_beat_gets_one_clock_skew_answer_with_this_hosts_clock(server: socket.socket) -> None:
    """The shell tells CLOCK_SKEW answers its clock and window, and answers a replayed copy no more."""
    writer = StaleWriter()
    listener = UdpListener(
        [server], lambda ids: {i: AccountInfo(KEY, 15000, "dyn.test", "fp") for i in ids}, writer,
        metrics=Metrics(), max_skew_ms=120_000, wall_ms=lambda: NOW_MS,
    )  # fmt: skip
    packet = wire.encode_beat(7, NOW_MS + 3_600_000, KEY, wire.FLAG_REPLY)  # an hour ahead
    first, second = (socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(2))
    try:
        for sock in (first, second):  # the original, then a copy replayed from another source
            sock.bind(("127.0.0.1", 0))
            sock.settimeout(0.5)
            sock.sendto(packet, server.getsockname())
            assert _readable(server)
            listener.step(1.0)
            listener.flush()
        reply = first.recv(64)
        assert wire.parse_reply(reply, packet, KEY) == wire.Reply(
            wire.STATUS_CLOCK_SKEW, server_ms=NOW_MS, window_ms=120_000
        )
        with pytest.raises(TimeoutError):
            second.recv(64)
        assert (
            listener.metrics.packets["stale"] == 2 and listener.metrics.counters["hbdns_heartbeat_replies_total"] == 1
        )
    finally:
        first.close()
        second.close()


def test_what_a_batch_drops_before_the_script_is_counted_once(server: socket.socket) -> None:
    """A batch mixing junk with beats: the junk is counted when the batch starts, and not again
    when the beats' results come back (batches stay in flight up to ``depth``)."""
    writer = RecordingWriter()
    listener = UdpListener(
        [server], lambda ids: {i: AccountInfo(KEY, 15000, "dyn.test", "fp") for i in ids}, writer,
        metrics=Metrics(), depth=2,
    )  # fmt: skip
    client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    client.bind(("127.0.0.1", 0))
    try:
        for k in range(3):
            client.sendto(b"x", server.getsockname())
            _send(server, [k], client)
            assert _readable(server)
            got = 0
            while got < 2:
                got += listener.step(0.5)
        listener.flush()
        assert listener.metrics.packets["short"] == 3 and listener.metrics.packets["accepted"] == 3
    finally:
        client.close()


class RekeyOnceWriter(RecordingWriter):
    """The second batch is refused as 'rekey' (the cached key changed), every other accepted."""

    def collect(self, ticket: int) -> list[BeatResult]:
        self.collected.append(ticket)
        if ticket == 1:
            return [REKEY] * len(self.submitted[ticket])
        return [OK] * len(self.submitted[ticket])


def test_a_beat_refused_as_rekey_is_run_again_and_not_taken_for_its_own_copy(server: socket.socket) -> None:
    writer = RekeyOnceWriter()
    lookups: list[tuple[int, ...]] = []

    def lookup(ids: Sequence[int]) -> dict[int, AccountInfo]:
        lookups.append(tuple(ids))
        return {i: AccountInfo(KEY, 15000, "dyn.test", "fp") for i in ids}

    listener = UdpListener(
        [server], lookup, writer, metrics=Metrics(), recent=RecentBeats(2, 20),
        preauth=PreAuth(lookup_rate=1, lookup_burst=1, unknown_ttl=2),  # one lookup allowed: the requeue needs none
    )  # fmt: skip
    client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    client.bind(("127.0.0.1", 0))
    try:
        for k in range(2):  # the first is looked up and cached; the second is authenticated from the cache
            _send(server, [k], client)
            assert _readable(server)
            listener.step(1.0)
            listener.flush()
        assert [r[0].counter for r in writer.submitted] == [NOW_MS, NOW_MS + 1, NOW_MS + 1]
        assert len(lookups) == 2  # the rerun's fresh lookup did not need the (spent) budget
        assert listener.metrics.packets["accepted"] == 2 and listener.metrics.packets["replay"] == 0
    finally:
        client.close()
