"""hbdns-client never gives up (issue 21): the client as a subprocess, the real listener and Redis on loopback.

- boot without network: 90 s with nothing listening at the server's address, and (in parallel) with a
  server name that does not resolve, then the listener appears: live within one interval;
- a clock an hour fast, and separately an hour slow at boot, then corrected: live within one window,
  and no captured packet of those runs, replayed, is accepted or answered;
- 20 restarts in a row (SIGKILL, the clock stepping back each time): live throughout, no replay;
- SIGTERM while the server is unreachable: exits within 3 s, the OFFLINE beat sent.

The client's wall clock is set through its test hook (``HBDNS_CLIENT_TEST_CLOCK_FILE``). A name that
does not resolve without any DNS traffic: the client runs in a mount namespace of its own whose
/etc/resolv.conf points at a loopback address where nothing answers, and whose /etc/hosts the test
writes the name into when "the network comes up". Nothing outside loopback is contacted.
"""

from __future__ import annotations

import os
import re
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hbdns_client import wire
from hbdns_client.clock import TEST_CLOCK_ENV
from hbdns_client.config import write_client_config

from hbdns.model import Account
from hbdns.store import Store
from tests.support.listener import ZONE, Listener, free_udp_port, snapshot
from tests.support.servers import Process, RedisServer, wait_for

CLIENT = str(Path(sys.executable).parent / "hbdns-client")
WINDOW = 15.0  # heartbeat-c: 3 missed beats x 5 s
HOUR = 3600


def client_env(tmp_path: Path, clock_offset: Path | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HBDNS_")}
    env["STATE_DIRECTORY"] = str(tmp_path / "state")
    if clock_offset is not None:
        env[TEST_CLOCK_ENV] = str(clock_offset)
    return env


def config(tmp_path: Path, name: str, server: str, account: Account, interval: float) -> Path:
    path = tmp_path / f"{name}.conf"
    write_client_config(path, server, account.id, account.hb_key, interval)
    return path


def second_account(store: Store, name: str) -> Account:
    return store.add_account(store.new_account(f"{name}.{ZONE}", "heartbeat-c"))


def live(store: Store, account: Account) -> bool:
    return store.status(account).live


def counter(store: Store, account: Account) -> int:
    return int(store.status(account).state.counter or 0)


def counter_above(store: Store, account: Account, last: int) -> Callable[[], bool]:
    return lambda: counter(store, account) > last


# --- boot without network --------------------------------------------------------------------------


def _can_unshare() -> bool:
    try:
        return subprocess.run(["unshare", "-m", "true"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.mark.skipif(not _can_unshare(), reason="needs a private mount namespace (unshare -m) for its own /etc/hosts")
@pytest.mark.long_wait
def test_boot_without_network_for_90_s_then_live_within_one_interval(
    tmp_path: Path, redis_server: RedisServer, store: Store, account: Account
) -> None:
    interval = 2.0
    port = free_udp_port()  # nothing listens here for 90 s
    named = second_account(store, "named")
    name = "hb.hbdns-boot.invalid"
    hosts, resolv = tmp_path / "hosts", tmp_path / "resolv.conf"
    hosts.write_text("127.0.0.1 localhost\n")
    resolv.write_text("nameserver 127.0.0.254\noptions timeout:1 attempts:1\n")  # nothing answers there
    env = client_env(tmp_path)
    by_address = Process(
        [CLIENT, "run", "--config", str(config(tmp_path, "a", f"127.0.0.1:{port}", account, interval))],
        tmp_path / "by-address.log", env=env,
    )  # fmt: skip
    in_namespace = f'mount --bind {hosts} /etc/hosts && mount --bind {resolv} /etc/resolv.conf && exec "$0" "$@"'
    by_name = Process(
        ["unshare", "-m", "sh", "-c", in_namespace, CLIENT, "run", "--source", "127.0.0.1",
         "--config", str(config(tmp_path, "n", f"{name}:{port}", named, interval))],
        tmp_path / "by-name.log", env=env,
    )  # fmt: skip
    listener = Listener(tmp_path, redis_server.url, port=port)
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:  # the line is still syncing: both keep trying, neither exits
            assert by_address.alive(), by_address.log_text()
            assert by_name.alive(), by_name.log_text()
            time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
        assert not live(store, account) and not live(store, named)
        listener.start()  # the network is up: the server answers, the name resolves
        with hosts.open("a") as f:
            f.write(f"127.0.0.1 {name}\n")
        up = time.monotonic()
        margin = 4.0  # process start-up and scheduling on a loaded 2-core machine
        wait_for(lambda: live(store, account), interval + margin, what="the client by address live")
        wait_for(lambda: live(store, named), interval + margin, what="the client by name live")
        took = time.monotonic() - up
        assert by_address.alive() and by_name.alive()
    finally:
        by_address.stop()
        by_name.stop()
        listener.stop()
    address_log, name_log = by_address.log_text(), by_name.log_text()
    # each state logged once, not once per beat (about 45 beats went unanswered)
    assert address_log.count("a wrong key or account id looks exactly like an unreachable server") == 1, address_log
    assert name_log.count(f"cannot resolve {name}") == 1, name_log
    assert address_log.count("heartbeats accepted by") == name_log.count("heartbeats accepted by") == 1
    assert took <= interval + margin


# --- clocks ----------------------------------------------------------------------------------------


class CapturingRelay:
    """A UDP relay on 127.0.0.1 in front of the listener that keeps every datagram clients sent."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream = ("127.0.0.1", upstream_port)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.captured: list[bytes] = []
        self._up: dict[tuple[str, int], socket.socket] = {}  # client address -> its upstream socket
        self._stop = False
        self._thread = threading.Thread(target=self._relay, daemon=True)
        self._thread.start()

    def _relay(self) -> None:
        while not self._stop:
            ups = {s: addr for addr, s in self._up.items()}
            ready, _, _ = select.select([self.sock, *ups], [], [], 0.05)
            for s in ready:
                data, addr = s.recvfrom(64)
                if s is self.sock:
                    self.captured.append(data)
                    if addr not in self._up:
                        self._up[addr] = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                    self._up[addr].sendto(data, self.upstream)
                else:
                    self.sock.sendto(data, ups[s])

    def close(self) -> None:
        self._stop = True
        self._thread.join(2)
        for s in [self.sock, *self._up.values()]:
            s.close()


@pytest.fixture
def relay(listener: Listener) -> Iterator[CapturingRelay]:
    r = CapturingRelay(listener.port)
    yield r
    r.close()


def run_client(tmp_path: Path, name: str, conf: Path, offset: Path) -> Process:
    return Process([CLIENT, "run", "--config", str(conf)], tmp_path / f"{name}.log", env=client_env(tmp_path, offset))


def test_wrong_clocks_recover_within_one_window_and_captured_packets_stay_worthless(
    tmp_path: Path, listener: Listener, relay: CapturingRelay, store: Store, account: Account
) -> None:
    fast, slow = tmp_path / "fast-offset", tmp_path / "slow-offset"
    server = f"127.0.0.1:{relay.port}"
    stale_before = listener.count("stale")

    # an hour fast: the first beat is stale, its CLOCK_SKEW answer carries the server's clock, the
    # next beat follows it and is accepted; NTP then corrects the clock: nothing changes
    fast.write_text(str(HOUR))
    proc = run_client(tmp_path, "fast", config(tmp_path, "fast", server, account, 1.0), fast)
    try:
        wait_for(lambda: live(store, account), WINDOW, what="live while an hour fast")
        wait_for(lambda: re.search(r"clock is off by \+3(599\.9|600\.\d) s", proc.log_text()), 10, what="clock logged")
        assert abs(counter(store, account) - time.time() * 1000) < 60_000  # the server's clock, not ours
        fast.write_text("0")  # corrected
        before = counter(store, account)
        wait_for(lambda: counter(store, account) > before + 1000, WINDOW, what="still accepted after the fix")
    finally:
        proc.stop()
    # the first beat was refused as stale (and answered with the server's clock), then no more: under
    # load an answer may come after the client stopped waiting, and the next beat tries once more
    assert 1 <= listener.count("stale") - stale_before <= 3

    # restarted with the corrected clock: the state file keeps its counters above the last ones
    proc = run_client(tmp_path, "fast-again", config(tmp_path, "fast", server, account, 0.5), fast)
    try:
        wait_for(lambda: live(store, account), WINDOW, what="live after restart")
    finally:
        proc.stop()

    # separately: another machine (no state file yet), an hour slow at boot, a fresh account
    other = second_account(store, "slow")
    slow.write_text(str(-HOUR))
    slow_env = client_env(tmp_path / "slow-machine", slow)
    proc = Process(
        [CLIENT, "run", "--config", str(config(tmp_path, "slow", server, other, 0.5))], tmp_path / "slow.log",
        env=slow_env,
    )  # fmt: skip
    try:
        wait_for(lambda: live(store, other), WINDOW, what="live while an hour slow")
        slow.write_text("0")
        before = counter(store, other)
        wait_for(lambda: counter(store, other) > before + 1000, WINDOW, what="still accepted after the fix")
    finally:
        proc.stop()
    assert re.search(r"clock is off by -3(599\.9|600\.\d) s \(ours is behind\)", (tmp_path / "slow.log").read_text())

    # an hour slow on a machine that lost its state file, for an account that beat a minute ago: its
    # counters are below the last accepted one, i.e. replays, which get no answer (by design); once
    # the clock is corrected it is live again within one window
    slow.write_text(str(-HOUR))
    lost = client_env(tmp_path / "lost-state", slow)
    proc = Process([CLIENT, "run", "--config", str(config(tmp_path, "lost", server, account, 0.5))],
                   tmp_path / "lost.log", env=lost)  # fmt: skip
    replays = listener.count("replay")
    try:
        wait_for(lambda: listener.count("replay") >= replays + 3, WINDOW, what="replays while slow")
        slow.write_text("0")
        corrected = time.monotonic()
        before = counter(store, account)
        wait_for(lambda: counter(store, account) > before and live(store, account), WINDOW, what="live after fix")
        assert time.monotonic() - corrected < WINDOW
    finally:
        proc.stop()

    # every packet the clients sent, replayed from another address: nothing accepted, nothing answered
    time.sleep(0.2)  # the relay has forwarded the last datagrams
    assert len(relay.captured) >= 10
    states = (snapshot(store.r, account.id, ZONE), snapshot(store.r, other.id, ZONE))
    accepted = listener.count("accepted") + listener.count("offline")
    judged = listener.count("replay") + listener.count("stale")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as replayer:
        replayer.bind(("127.0.0.9", 0))
        replayer.setblocking(False)
        for packet in relay.captured:
            replayer.sendto(packet, ("127.0.0.1", listener.port))
            time.sleep(0.03)  # within the per-source limit (50/s): every copy reaches the beat script
        assert not select.select([replayer], [], [], 1.0)[0]  # no answer to any of them
    expected = judged + len(relay.captured)
    wait_for(lambda: listener.count("replay") + listener.count("stale") == expected, 10, what="all judged")
    assert listener.count("accepted") + listener.count("offline") == accepted
    assert (snapshot(store.r, account.id, ZONE), snapshot(store.r, other.id, ZONE)) == states
    assert all(wire.parse_beat(p).account_id in (account.id, other.id) for p in relay.captured)


# --- restarts ----------------------------------------------------------------------------------------


def test_restart_storm_keeps_the_account_live_and_never_replays(
    tmp_path: Path, listener: Listener, store: Store, account: Account
) -> None:
    """20 crash-restarts in a row, each with the clock a second further behind (an RTC-less board)."""
    conf = config(tmp_path, "storm", f"127.0.0.1:{listener.port}", account, 0.2)
    offset = tmp_path / "offset"
    replays, stales = listener.count("replay"), listener.count("stale")
    last = 0
    for restart in range(20):
        offset.write_text(str(-restart))
        proc = run_client(tmp_path, f"storm-{restart}", conf, offset)
        try:
            wait_for(counter_above(store, account, last), 20, what=f"restart {restart} accepted")
            last = counter(store, account)
            assert live(store, account)
        finally:
            proc.kill()  # a crash or a power cut: no offline beat
    assert live(store, account)
    assert (listener.count("replay"), listener.count("stale")) == (replays, stales)


# --- stopping ----------------------------------------------------------------------------------------


def test_sigterm_while_unreachable_exits_within_3_s_with_the_offline_beat_sent(
    tmp_path: Path, store: Store, account: Account
) -> None:
    blackhole = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # receives, never answers
    blackhole.bind(("127.0.0.1", 0))
    closed = free_udp_port()  # and nothing at all listens here
    to_blackhole = config(tmp_path, "s", f"127.0.0.1:{blackhole.getsockname()[1]}", account, 0.5)
    silent = Process([CLIENT, "run", "--config", str(to_blackhole)], tmp_path / "silent.log", env=client_env(tmp_path))
    nobody = Process(
        [CLIENT, "run", "--config", str(config(tmp_path, "c", f"127.0.0.1:{closed}", account, 0.5))],
        tmp_path / "closed.log", env=client_env(tmp_path / "other"),
    )  # fmt: skip
    try:
        blackhole.settimeout(15)
        blackhole.recv(64)  # it beats
        wait_for(lambda: "looks exactly like an unreachable server" in nobody.log_text(), 15, what="never answered")
        blackhole.setblocking(False)
        while True:  # drop what came so far: the next OFFLINE beat is the one SIGTERM causes
            try:
                blackhole.recv(64)
            except BlockingIOError:
                break
        stopped = time.monotonic()
        silent.signal(signal.SIGTERM)
        nobody.signal(signal.SIGTERM)
        assert silent.proc.wait(3) == 0 and nobody.proc.wait(3) == 0
        assert time.monotonic() - stopped < 3
        offline = []
        blackhole.settimeout(0.5)
        while True:
            try:
                beat = wire.parse_beat(blackhole.recv(64))
            except TimeoutError:
                break
            assert wire.verify_beat(beat, account.hb_key)
            offline.append(beat.offline)
        assert offline and offline[-1] and all(offline[-2:])  # the OFFLINE beat, tried twice in its budget
    finally:
        silent.stop()
        nobody.stop()
        blackhole.close()
    for proc in (silent, nobody):
        assert "offline heartbeat sent but not answered" in proc.log_text(), proc.log_text()
