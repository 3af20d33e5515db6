"""Beats on loopback sockets: answers matched, CLOCK_SKEW followed, families in turn, lookups bounded."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from fakes import KEY, FakeServer, accept

from hbdns_client import wire
from hbdns_client.beater import Beater, Outcome, Sent
from hbdns_client.clock import Clock, ServerClock
from hbdns_client.config import ClientConfig
from hbdns_client.counters import Counters
from hbdns_client.resolve import NameNotResolved, Resolver
from hbdns_client.stopping import Stopper

HOUR_MS = 3_600_000


def beater_for(
    port: int, host: str = "127.0.0.1", interval: float = 5.0, clock: Clock | None = None, **kw: Any
) -> Beater:
    cfg = ClientConfig(host=host, port=port, account_id=7, key=KEY, interval=interval)
    return Beater(cfg, Counters(ServerClock(clock or Clock())), **kw)


def server_clock_rule(server_ms: Callable[[], int], window_ms: int = 300_000) -> Callable[[wire.Beat, str], bytes]:
    """Answer like the listener: OK within the window of ``server_ms()``, else CLOCK_SKEW with the clock."""

    def answer(beat: wire.Beat, source: str) -> bytes:
        now = server_ms()
        if abs(beat.counter - now) > window_ms:
            return wire.encode_clock_skew(beat, now, window_ms, KEY)
        return accept(beat, source)

    return answer


def test_an_accepted_beat_carries_the_public_address_and_its_round_trip(
    fake_server: Callable[..., FakeServer],
) -> None:
    server = fake_server()
    beater = beater_for(server.port)
    try:
        outcome = beater.beat(timeout=2)
    finally:
        beater.close()
    assert outcome.ok and outcome.reply == wire.Reply(wire.STATUS_OK, "127.0.0.1")
    [sent] = outcome.sent
    assert (sent.family, sent.target, sent.refused) == (4, f"127.0.0.1:{server.port}", False)
    assert sent.rtt is not None and 0 <= sent.rtt < 2
    assert server.beats[0].wants_reply and server.beats[0].counter == sent.counter


def test_a_clock_an_hour_fast_follows_the_servers_clock_after_one_clock_skew_answer(
    fake_server: Callable[..., FakeServer],
) -> None:
    real = Clock()
    server = fake_server(server_clock_rule(real.wall_ms))
    fast = Clock(wall_ns=lambda: time.time_ns() + HOUR_MS * 1_000_000)
    beater = beater_for(server.port, clock=fast)
    try:
        first = beater.beat(timeout=2)
        second = beater.beat(timeout=2)
    finally:
        beater.close()
    assert first.clock_skew and not first.ok
    assert first.reply is not None and first.reply.window_ms == 300_000
    assert second.ok  # the counters follow the server's clock now, not the wall clock
    assert abs(server.beats[1].counter - real.wall_ms()) < 5_000
    offset = beater.server_clock.wall_offset_s()
    assert offset is not None and abs(offset - 3600) < 5
    assert beater.counters.floor == server.beats[1].counter  # the refused counter left the floor


def test_an_icmp_refusal_reported_on_the_socket_ends_the_wait_at_once(fake_server: Callable[..., FakeServer]) -> None:
    """Windows reports ICMP port unreachable on the next recv (WSAECONNRESET); Linux only on connected sockets."""
    server = fake_server(lambda beat, source: b"x")  # any datagram: makes the client's socket readable

    class RefusingSocket(socket.socket):
        def recv(self, bufsize: int, flags: int = 0) -> bytes:
            raise ConnectionResetError(10054, "An existing connection was forcibly closed by the remote host")

    beater = beater_for(server.port)
    beater.resolve()
    beater.targets[socket.AF_INET][0].close()
    beater.targets[socket.AF_INET] = (RefusingSocket(socket.AF_INET, socket.SOCK_DGRAM), ("127.0.0.1", server.port))
    started = time.monotonic()
    try:
        outcome = beater.beat(timeout=3)
    finally:
        beater.close()
    assert outcome.refused and outcome.reply is None
    assert time.monotonic() - started < 2  # no need to wait out the timeout


def test_a_source_address_not_configured_here_is_an_error_not_a_crash() -> None:
    cfg = ClientConfig(host="127.0.0.1", port=9, account_id=7, key=KEY, source="192.0.2.55")
    b = Beater(cfg, Counters(ServerClock(Clock())))
    with pytest.raises(OSError):
        b.beat(timeout=0.2)  # bind fails (the address is not on this host): "unreachable", keep trying
    b.close()


def dual_stack(port4: int, port6: int) -> Resolver:
    """A resolver for 'hb.dual.test' with an A and an AAAA address (loopback), in that order."""

    def getaddrinfo(host: str, port: int, family: int = 0, *args: object) -> list[tuple[Any, ...]]:
        assert host == "hb.dual.test"
        return [
            (socket.AF_INET, socket.SOCK_DGRAM, 17, "", ("127.0.0.1", port4)),
            (socket.AF_INET6, socket.SOCK_DGRAM, 17, "", ("::1", port6, 0, 0)),
        ]

    return Resolver("hb.dual.test", 1, getaddrinfo=getaddrinfo)


@pytest.fixture
def receivers() -> Any:
    r4, r6 = socket.socket(socket.AF_INET, socket.SOCK_DGRAM), socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    r4.bind(("127.0.0.1", 0))
    r6.bind(("::1", 0))
    r4.setblocking(False)
    r6.setblocking(False)
    yield r4, r6
    r4.close()
    r6.close()


def test_dual_stack_beat_without_reply_waits_the_gap_between_families(receivers: Any) -> None:
    r4, r6 = receivers
    seen_at_pause: list[tuple[float, bytes]] = []

    class NoWaitBeater(Beater):
        def _pause(self, seconds: float) -> bool:
            seen_at_pause.append((seconds, r4.recv(64)))  # the IPv4 beat is out already...
            with pytest.raises(BlockingIOError):  # ...and the IPv6 one not yet
                r6.recv(64)
            return False

        def _await_reply(self, sock: socket.socket, packet: bytes, deadline: float) -> Any:
            raise AssertionError("a beat that does not ask waits for no reply")

    cfg = ClientConfig(host="hb.dual.test", port=1, account_id=7, key=KEY, interval=2.0)
    resolver = dual_stack(r4.getsockname()[1], r6.getsockname()[1])
    beater = NoWaitBeater(cfg, Counters(ServerClock(Clock())), resolver=resolver)
    try:
        outcome = beater.beat(timeout=5, reply=False)
        beat6 = wire.parse_beat(r6.recv(64))
    finally:
        beater.close()
    assert [s.family for s in outcome.sent] == [4, 6] and outcome.replies == ()
    [(gap, packet4)] = seen_at_pause
    beat4 = wire.parse_beat(packet4)
    assert gap == pytest.approx(0.2)  # min(0.5, interval / 10)
    assert not beat4.wants_reply and not beat6.wants_reply
    assert beat4.counter < beat6.counter
    assert beater_for(1, interval=45.0).family_gap() == 0.5


def test_gap_between_families_is_cut_short_by_a_stop_request(receivers: Any) -> None:
    r4, r6 = receivers
    stopper = Stopper()
    stopper.request()  # what a signal handler does
    cfg = ClientConfig(host="hb.dual.test", port=1, account_id=7, key=KEY, interval=45.0)
    resolver = dual_stack(r4.getsockname()[1], r6.getsockname()[1])
    beater = Beater(cfg, Counters(ServerClock(Clock())), wake=stopper, resolver=resolver)
    try:
        outcome = beater.beat(reply=False)
        assert outcome.interrupted and [s.family for s in outcome.sent] == [4]
        assert r4.recv(64)
        with pytest.raises(BlockingIOError):  # the IPv6 beat was not sent: the client stops at once
            r6.recv(64)
    finally:
        beater.close()
        stopper.close()


def test_lookup_failure_keeps_the_last_known_addresses(fake_server: Callable[..., FakeServer]) -> None:
    server = fake_server()
    answers: list[Any] = [[(socket.AF_INET, socket.SOCK_DGRAM, 17, "", ("127.0.0.1", server.port))]]

    def getaddrinfo(*args: object) -> list[tuple[Any, ...]]:
        step = answers.pop(0) if answers else socket.gaierror(-3, "Temporary failure in name resolution")
        if isinstance(step, Exception):
            raise step
        return step

    cfg = ClientConfig(host="hb.example.test", port=server.port, account_id=7, key=KEY)
    beater = Beater(cfg, Counters(ServerClock(Clock())), resolver=Resolver(cfg.host, cfg.port, getaddrinfo=getaddrinfo))
    try:
        assert beater.beat(timeout=2).ok
        beater.refresh_due = True
        outcome = beater.beat(timeout=2)
    finally:
        beater.close()
    assert outcome.ok and "Temporary failure in name resolution" in outcome.resolve_error
    with pytest.raises(NameNotResolved, match="Temporary failure"):
        Beater(cfg, Counters(ServerClock(Clock())), resolver=Resolver(cfg.host, 1, getaddrinfo=getaddrinfo)).beat()


def test_a_hanging_lookup_is_abandoned_at_its_deadline_and_never_doubled() -> None:
    release = threading.Event()
    calls: list[str] = []

    def getaddrinfo(host: str, *args: object) -> list[tuple[Any, ...]]:
        calls.append(host)
        release.wait(10)  # a resolver that does not answer (the line is still coming up)
        return [(socket.AF_INET, socket.SOCK_DGRAM, 17, "", ("127.0.0.1", 9))]

    resolver = Resolver("hb.slow.test", 9, timeout=0.3, getaddrinfo=getaddrinfo)
    started = time.monotonic()
    with pytest.raises(NameNotResolved, match="no answer from DNS in time"):
        resolver.lookup()
    assert 0.25 < time.monotonic() - started < 2
    with pytest.raises(NameNotResolved, match="still waiting"):
        resolver.lookup()
    assert calls == ["hb.slow.test"]  # one lookup in flight at most
    release.set()
    time.sleep(0.05)
    assert resolver.lookup() == {socket.AF_INET: ("127.0.0.1", 9)}
    stopping_now = time.monotonic()
    release.clear()
    with pytest.raises(NameNotResolved):
        resolver.lookup(stop=lambda: True)  # a stop request ends the wait at once
    assert time.monotonic() - stopping_now < 0.5
    release.set()


def test_unicode_errors_from_bad_names_are_lookup_failures() -> None:
    with pytest.raises(NameNotResolved):
        Resolver("a..b", 9).lookup()  # IDNA refuses an empty label before anything is sent


def test_outcome_prefers_an_accepted_reply() -> None:
    skew = Sent(6, "[::1]:1", 1, wire.Reply(wire.STATUS_CLOCK_SKEW, "", 5, 300_000))
    good = Sent(4, "127.0.0.1:1", 2, wire.Reply(wire.STATUS_OK, "127.0.0.1"))
    assert Outcome(sent=(skew, good)).reply == good.reply and Outcome(sent=(skew, good)).ok
    assert Outcome(sent=(skew,)).clock_skew and not Outcome().ok


def test_a_family_this_host_cannot_use_is_skipped(
    fake_server: Callable[..., FakeServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A name with A and AAAA on a host with IPv6 switched off still beats over IPv4."""
    server = fake_server()

    def getaddrinfo(*args: object) -> list[tuple[Any, ...]]:
        return [
            (socket.AF_INET6, socket.SOCK_DGRAM, 17, "", ("::1", server.port, 0, 0)),
            (socket.AF_INET, socket.SOCK_DGRAM, 17, "", ("127.0.0.1", server.port)),
        ]

    class NoIPv6(socket.socket):
        def __init__(self, family: int = -1, *args: Any) -> None:
            if family == socket.AF_INET6:
                raise OSError(97, "Address family not supported by protocol")
            super().__init__(family, *args)

    cfg = ClientConfig(host="hb.dual.test", port=server.port, account_id=7, key=KEY)
    beater = Beater(cfg, Counters(ServerClock(Clock())), resolver=Resolver(cfg.host, cfg.port, getaddrinfo=getaddrinfo))
    monkeypatch.setattr(socket, "socket", NoIPv6)
    try:
        outcome = beater.beat(timeout=2)
    finally:
        beater.close()
    assert list(beater.targets) == [] and [s.family for s in outcome.sent] == [4] and outcome.ok
