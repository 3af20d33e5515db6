"""Issue 14's junk flood against the real listener: a customer beats while junk is spoofed from its address.

Shared by ``tests/integration/test_listener_junk.py`` (30 s, ``make test``) and the "faults" benchmark
(``bench/bench_faults.py``, with and without the flood). The customer (and, optionally, neighbours
sharing its address as behind a CGNAT) beat from a loopback address; the flood generator
(:mod:`tests.support.udpflood`) binds its sockets to the same address, so the listener sees the same
source. Every customer beat asks for a reply; it counts as delivered only when the authenticated OK
reply came back. Everything else is counted from the listener (metrics, /proc) and Redis, not
from what was sent.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hbdns_client import wire

from hbdns import keys
from hbdns.model import Account
from hbdns.store import Store
from tests.support.events import fields as stream_fields
from tests.support.events import marks as stream_marks
from tests.support.listener import ROOT, Listener, beat, now_ms


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (/proc/<pid>/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class FloodFigures:
    seconds: float  # how long the customer beat (the flood ran as long)
    beats: int  # the customer's beats sent
    answered: int  # ... and answered OK (authenticated reply)
    neighbour_beats: int  # beats of the neighbours sharing the address (no reply asked)
    neighbours_behind: int  # neighbours whose stored counter is not their last one sent
    accepted: int  # the listener's accepted count over the run
    neutralized: int  # neutralized events of the customer and its neighbours during the run
    junk_sent: int
    junk_replies: int  # datagrams the listener sent back to the flood (goal 0)
    listener_cpu: float  # CPU seconds the listener used over the run
    kernel_drops: int
    results: dict[str, int] = field(default_factory=dict)  # the listener's packet counts over the run
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def dropped(self) -> int:
        return self.beats - self.answered

    @property
    def cpu_per_s(self) -> float:
        return self.listener_cpu / self.seconds if self.seconds else 0.0


def _packet_counts(m: dict[str, float]) -> dict[str, int]:
    pre = "hbdns_heartbeat_packets_total{"
    return {k.split('"')[1]: int(v) for k, v in m.items() if k.startswith(pre)}


def run(
    listener: Listener,
    store: Store,
    customer: Account,
    source: str,
    *,
    seconds: float,
    interval: float = 1.0,
    flood_rate: float = 10_000.0,
    deleted: tuple[int, ...] = (),
    neighbours: tuple[Account, ...] = (),
) -> FloodFigures:
    """The customer beats every ``interval`` s for ``seconds`` from ``source``, under a junk flood of
    ``flood_rate`` datagrams/s from the same address (0: no flood)."""
    assert listener.process is not None
    pid = listener.process.pid
    last_ids = stream_marks(store.r)
    before = listener.metrics()
    gen = None
    if flood_rate > 0:
        argv = [
            sys.executable, "-m", "tests.support.udpflood", "--port", str(listener.port), "--source", source,
            "--account", str(customer.id), "--deleted", ",".join(map(str, deleted)),
            "--rate", str(flood_rate), "--seconds", str(seconds),
        ]  # fmt: skip
        gen = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=str(ROOT))
        assert gen.stdin is not None and gen.stdout is not None
        if gen.stdout.readline().strip() != "ready":
            raise RuntimeError("flood generator failed to start")
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((source, 0))
    dest = ("127.0.0.1", listener.port)
    cpu0, t0 = cpu_seconds(pid), time.monotonic()
    beats = answered = neighbour_beats = 0
    waiting: list[bytes] = []  # customer beats not answered yet (a late answer still counts)
    last_sent: dict[int, int] = {}
    counter = now_ms()
    try:
        while beats * interval < seconds:
            answered += _answers(sock, waiting, customer.hb_key, until=t0 + beats * interval)
            counter = max(counter + 1, now_ms())
            data = beat(customer.id, customer.hb_key, counter)
            sock.sendto(data, dest)
            waiting.append(data)
            beats += 1
            for n in neighbours:
                sock.sendto(beat(n.id, n.hb_key, counter, flags=0), dest)
                last_sent[n.id] = counter
                neighbour_beats += 1
            if gen is not None and gen.stdin is not None:
                try:
                    gen.stdin.write(data.hex() + "\n")  # captured: the flood replays it from now on
                    gen.stdin.flush()
                except BrokenPipeError:  # the flood is over
                    gen.stdin = None
        answered += _answers(sock, waiting, customer.hb_key, until=t0 + seconds, pace=True)
        seconds_run = time.monotonic() - t0
        answered += _answers(sock, waiting, customer.hb_key, until=time.monotonic() + 3.0, pace=False)
        junk = {"sent": 0, "replies": 0, "cpu": 0.0}
        if gen is not None and gen.stdout is not None:
            if gen.stdin is not None:
                try:
                    gen.stdin.close()
                except BrokenPipeError:
                    pass
            junk = json.loads(gen.stdout.read().strip().splitlines()[-1])
            gen.wait(30)
        _settle(listener, before, beats + neighbour_beats + int(junk["sent"]))
        cpu = cpu_seconds(pid) - cpu0
    finally:
        sock.close()
        if gen is not None and gen.poll() is None:
            gen.kill()
            gen.wait()
    after = listener.metrics()
    results = {k: v - _packet_counts(before).get(k, 0) for k, v in _packet_counts(after).items()}
    ids = {customer.id, *(n.id for n in neighbours)}
    new_events = stream_fields(store.r, since=last_ids)
    neutralized = sum(1 for e in new_events if e.get("type") == "neutralized" and int(e.get("account", -1)) in ids)
    behind = sum(
        1 for n in neighbours if int(store.r.hget(keys.account(n.id), "counter") or 0) != last_sent.get(n.id, -1)
    )
    drops_key = "hbdns_heartbeat_kernel_drops_total"
    drops = int(after.get(drops_key, 0) - before.get(drops_key, 0))
    return FloodFigures(
        seconds=round(seconds_run, 2),
        beats=beats,
        answered=answered,
        neighbour_beats=neighbour_beats,
        neighbours_behind=behind,
        accepted=results.get("accepted", 0),
        neutralized=neutralized,
        junk_sent=int(junk["sent"]),
        junk_replies=int(junk["replies"]),
        listener_cpu=round(cpu, 3),
        kernel_drops=drops,
        results={k: v for k, v in results.items() if v},
        extra={"generator_cpu": junk["cpu"], "listener_metrics": _extra(before, after)},
    )


def _answers(sock: socket.socket, waiting: list[bytes], key: bytes, until: float, pace: bool = True) -> int:
    """Authenticated OK answers to beats in ``waiting`` (removed as answered) that come before ``until``
    (monotonic); anything else is ignored. ``pace``: return at ``until`` even if all were answered."""
    got = 0
    while waiting and (left := until - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            raw = sock.recv(64)
        except TimeoutError:
            break
        for data in waiting:
            try:
                if wire.parse_reply(raw, data, key).status == wire.STATUS_OK:
                    waiting.remove(data)
                    got += 1
                    break
            except wire.WireError:
                continue
    wait = until - time.monotonic()
    if pace and wait > 0:
        time.sleep(wait)
    return got


def _settle(listener: Listener, before: dict[str, float], expected: int, timeout: float = 30.0) -> None:
    """Wait until the listener has counted what was sent (or stopped counting: kernel drops)."""
    total0 = sum(_packet_counts(before).values())
    deadline, last, last_change = time.monotonic() + timeout, -1, time.monotonic()
    while time.monotonic() < deadline:
        got = sum(_packet_counts(listener.metrics()).values()) - total0
        if got >= expected:
            return
        if got != last:
            last, last_change = got, time.monotonic()
        elif time.monotonic() - last_change > 2.0:
            return
        time.sleep(0.05)


def _extra(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    names = (
        "lookups",
        "refreshes",
        "refreshes_refused",
        "negative_hits",
        "above_ceiling",
        "over_budget",
        "id_ceiling_reads",
        "known_replays",
        "known_stale",
    )
    out = {}
    for n in names:
        k = f"hbdns_heartbeat_{n}_total"
        out[n] = after.get(k, 0.0) - before.get(k, 0.0)
    return out
