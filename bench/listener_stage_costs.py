"""What one datagram costs the listener, by kind: the figures behind its pre-authentication design.

Each kind of datagram (junk of each sort, a replay, an authentic beat) is sent over loopback to a
:class:`heartbeat_listener.server.UdpListener` in this process, with everything the listener
process wires (account cache, :class:`~heartbeat_listener.preauth.PreAuth` with an id ceiling,
:class:`~heartbeat_listener.recent.RecentBeats`, the per-source limit), a writer that answers OK at
once and a lookup that answers from memory: so a figure is the listener's own CPU per datagram
(``recvfrom``, screen, authenticate, decide, metrics, logs), without Redis. ``recv`` is the bare
``recvfrom`` loop, for comparison. Median of ``repeats`` runs of ``count`` datagrams, in batches of
256 (a flood fills every batch).

With a Redis URL, :func:`lookup_costs` also times the one pre-authentication step that needs Redis,
an account lookup (``RedisAccounts``: one pipelined HMGET round trip per batch): listener CPU per
id, wall time per round trip, and Redis' own time per HMGET.

Run: ``python -m bench.listener_stage_costs [--redis-url URL]``.
"""

from __future__ import annotations

import argparse
import json
import random
import socket
import statistics
import sys
import time
from typing import Any

from hbdns_client import wire

KEY = bytes(range(32))
CUSTOMER_ID = 7
NOW_MS = 1_700_000_000_000
KINDS = ("recv", "one_byte", "version", "forged_mac", "unknown_id", "unknown_cached", "replay", "beat")


def _datagrams(kind: str, count: int, rng: random.Random, base: int) -> list[bytes]:
    def forge(account_id: int, counter: int) -> bytes:
        return wire.encode_beat(account_id, counter, bytes(32))[:14] + rng.randbytes(10)

    if kind in ("recv", "one_byte"):
        return [bytes([rng.randrange(256)]) for _ in range(count)]
    if kind == "version":
        return [b"\x02" + rng.randbytes(23) for _ in range(count)]
    if kind == "forged_mac":
        return [forge(CUSTOMER_ID, NOW_MS + i) for i in range(count)]
    if kind == "unknown_id":  # above the id sequence
        return [forge(rng.randrange(10**7, 2**32), NOW_MS) for _ in range(count)]
    if kind == "unknown_cached":  # below it, remembered as unknown
        return [forge(99, NOW_MS) for _ in range(count)]
    if kind == "replay":
        return [wire.encode_beat(CUSTOMER_ID, NOW_MS, KEY)] * count
    return [wire.encode_beat(CUSTOMER_ID, base + i, KEY, wire.FLAG_REPLY if i % 6 == 0 else 0) for i in range(count)]


def shell_costs(count: int = 2000, repeats: int = 5) -> dict[str, float]:
    """us of listener CPU per datagram, by kind (see the module docstring)."""
    from hbdns.liveness import OK
    from heartbeat_listener.metrics import Metrics
    from heartbeat_listener.protocol import AccountCache, AccountInfo, IdCeiling, PreAuth, RecentBeats, SourceLimiter
    from heartbeat_listener.server import UdpListener, open_socket

    class Writer:
        def submit(self, reqs: list[object]) -> int:
            return len(reqs)

        def collect(self, n: int) -> list[object]:
            return [OK] * n

    customer = AccountInfo(KEY, 15000, "dyn.test", "fp")
    rng = random.Random(14)
    out: dict[str, list[float]] = {k: [] for k in KINDS}
    for r in range(repeats):
        for kind in KINDS:
            server = open_socket("127.0.0.1", 0)
            cache = AccountCache()
            cache.update({CUSTOMER_ID: customer})
            preauth = PreAuth(lookup_rate=1e9, lookup_burst=10**9, unknown_ttl=3600, ceiling=IdCeiling(lambda: 1000))
            preauth.found(99, "unknown_account", time.monotonic())
            listener = UdpListener(
                [server], lambda ids: {CUSTOMER_ID: customer}, Writer(), metrics=Metrics(),  # type: ignore[arg-type]
                limiter=SourceLimiter(1e9, 10**9), cache=cache, preauth=preauth,
                recent=RecentBeats(1e9, 10**9), wall_ms=lambda: NOW_MS,
            )  # fmt: skip
            client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            client.bind(("127.0.0.2", 0))
            dest = server.getsockname()
            client.sendto(wire.encode_beat(CUSTOMER_ID, NOW_MS, KEY), dest)  # the floor: NOW_MS
            listener.step(1.0)
            listener.flush()
            for data in _datagrams(kind, count, rng, NOW_MS + 1 + r * count):
                client.sendto(data, dest)
            t0, got = time.process_time(), 0
            if kind == "recv":
                while got < count:
                    try:
                        server.recvfrom(64)
                        got += 1
                    except BlockingIOError:
                        time.sleep(0.001)
            else:
                while got < count:
                    got += listener.step(1.0)
                listener.flush()
            out[kind].append((time.process_time() - t0) / count * 1e6)
            client.close()
            server.close()
    return {k: round(statistics.median(v), 2) for k, v in out.items()}


def lookup_costs(redis_url: str, rounds: int = 200) -> dict[str, float]:
    """The account lookup on a real Redis: listener CPU per id, wall per round trip, Redis us per HMGET."""
    from hbdns import config
    from hbdns.connection import connect
    from hbdns.resp import BatchConnection
    from heartbeat_listener.redis_io import RedisAccounts

    r = connect(redis_url)
    accounts = RedisAccounts(BatchConnection(r), config.load({}).plan_table())

    def hmget() -> tuple[int, int]:
        s = r.info("commandstats").get("cmdstat_hmget", {"calls": 0, "usec": 0})
        return int(s["calls"]), int(s["usec"])

    out: dict[str, float] = {}
    for n in (1, 64):
        ids = list(range(10**8, 10**8 + n))
        (c0, u0), t0, w0 = hmget(), time.process_time(), time.perf_counter()
        for _ in range(rounds):
            accounts(ids)
        cpu, wall = time.process_time() - t0, time.perf_counter() - w0
        c1, u1 = hmget()
        out[f"listener_cpu_us_per_id_batch{n}"] = round(cpu / rounds / n * 1e6, 2)
        out[f"wall_us_per_roundtrip_batch{n}"] = round(wall / rounds * 1e6, 1)
        out[f"redis_us_per_hmget_batch{n}"] = round((u1 - u0) / max(1, c1 - c0), 2)
    r.close()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.listener_stage_costs")
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--redis-url", help="also time account lookups on this Redis")
    args = parser.parse_args(argv)
    result: dict[str, Any] = {"us_per_datagram": shell_costs(args.count, args.repeats)}
    if args.redis_url:
        result["lookup"] = lookup_costs(args.redis_url)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
