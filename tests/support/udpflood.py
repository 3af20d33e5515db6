"""UDP load at C speed for tests and benchmarks: sendmmsg(2) through ctypes, and a junk flood generator.

:class:`Sendmmsg` sends many pre-built datagrams per system call, so a generator's own CPU (which
shares the machine's cores with the listener and Redis) is mostly the kernel's per-packet work.

``python -m tests.support.udpflood --port P --source 127.0.0.50 --rate 10000 ...`` is the junk flood
of issue 14, spoofed from a customer's address on loopback (its sockets are bound to that address,
so the listener sees the customer's source): an even mix of 1-byte datagrams, beats of the wrong
version, beats with the customer's account id and a forged MAC, beats of unknown account ids
(random ids above the id sequence, and ``--deleted`` ones below it) and replays of the customer's
own captured beats, which the test writes to its stdin (hex, one a line) as it sends them. It paces
itself to ``--rate`` datagrams/s for ``--seconds``, counts any datagram that comes back (the
listener must answer none of them) and prints one JSON line: sent, replies, seconds, cpu.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import sys
import time
from collections.abc import Sequence
from typing import Any

from hbdns_client import wire


class Sendmmsg:
    """Linux sendmmsg(2) through ctypes, on connected sockets. Test and bench only."""

    CHUNK = 32

    def __init__(self) -> None:
        import ctypes

        class IoVec(ctypes.Structure):
            _fields_ = [("iov_base", ctypes.c_void_p), ("iov_len", ctypes.c_size_t)]

        class MsgHdr(ctypes.Structure):
            _fields_ = [
                ("msg_name", ctypes.c_void_p),
                ("msg_namelen", ctypes.c_uint32),
                ("msg_iov", ctypes.POINTER(IoVec)),
                ("msg_iovlen", ctypes.c_size_t),
                ("msg_control", ctypes.c_void_p),
                ("msg_controllen", ctypes.c_size_t),
                ("msg_flags", ctypes.c_int),
            ]

        class MMsgHdr(ctypes.Structure):
            _fields_ = [("msg_hdr", MsgHdr), ("msg_len", ctypes.c_uint)]

        self.ctypes, self.IoVec, self.MMsgHdr = ctypes, IoVec, MMsgHdr
        self.libc = ctypes.CDLL(None, use_errno=True)
        self.libc.sendmmsg.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int]

    def prepare(self, packets: Sequence[bytes]) -> Any:
        """Messages for ``packets`` (any lengths; one buffer, kept alive by the returned tuple)."""
        ct = self.ctypes
        buf = ct.create_string_buffer(b"".join(packets))
        iovs = (self.IoVec * len(packets))()
        msgs = (self.MMsgHdr * len(packets))()
        base, offset = ct.addressof(buf), 0
        for i, p in enumerate(packets):
            iovs[i].iov_base = base + offset
            iovs[i].iov_len = len(p)
            offset += len(p)
            msgs[i].msg_hdr.msg_iov = ct.pointer(iovs[i])
            msgs[i].msg_hdr.msg_iovlen = 1
        return (msgs, len(packets), buf, iovs)

    def send(self, fd: int, prepared: Any) -> int:
        msgs, count = prepared[0], prepared[1]
        base, size = self.ctypes.addressof(msgs), self.ctypes.sizeof(self.MMsgHdr)
        sent = 0
        while sent < count:
            n = self.libc.sendmmsg(fd, base + sent * size, count - sent, 0)
            if n < 0:
                err = self.ctypes.get_errno()
                if err in (11, 105):  # EAGAIN, ENOBUFS: the local queue is full for a moment
                    time.sleep(0.0005)
                    continue
                raise OSError(err, "sendmmsg failed")
            sent += n
        return sent


KINDS = ("one_byte", "version", "forged_mac", "unknown_id", "replay")
STATIC = KINDS[:-1]  # pre-built once; replays are the customer's beats as they come


def junk(kind: str, rng: random.Random, account_id: int, now_ms: int, deleted: Sequence[int]) -> bytes:
    """One junk datagram of a ``STATIC`` kind (see the module docstring)."""
    if kind == "one_byte":
        return bytes([rng.randrange(256)])
    if kind == "version":
        return bytes([2]) + rng.randbytes(23)
    if kind == "forged_mac":
        counter = now_ms + rng.randrange(-60_000, 60_000)
        return wire.encode_beat(account_id, counter, bytes(32))[:14] + rng.randbytes(10)
    aid = rng.choice(deleted) if deleted and rng.random() < 0.5 else rng.randrange(10**7, 2**32)
    return wire.encode_beat(aid, now_ms, bytes(32))[:14] + rng.randbytes(10)


def _drain_replies(socks: Sequence[socket.socket]) -> int:
    n = 0
    for s in socks:
        try:
            while s.recv(64):
                n += 1
        except (BlockingIOError, ConnectionRefusedError):
            pass
    return n


def flood_main(args: argparse.Namespace) -> int:
    rng = random.Random(args.seed)
    deleted = [int(x) for x in args.deleted.split(",") if x]
    mmsg = Sendmmsg()
    socks = []
    for _ in range(args.sockets):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((args.source, 0))
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
        s.connect((args.dest, args.port))
        s.setblocking(False)
        socks.append(s)
    # a chunk: `per` datagrams of each static kind, interleaved, then `per` replays
    per = 16
    now_ms = time.time_ns() // 1_000_000
    ring = [
        mmsg.prepare(
            [junk(STATIC[i % len(STATIC)], rng, args.account, now_ms, deleted) for i in range(per * len(STATIC))]
        )
        for _ in range(64)
    ]
    fd_in = sys.stdin.fileno()
    os.set_blocking(fd_in, False)
    captured: list[bytes] = []
    pending, replays, stdin_open = b"", None, True
    print("ready", flush=True)
    t0, cpu0 = time.monotonic(), os.times()
    sent = replies = k = 0
    while True:
        elapsed = time.monotonic() - t0
        if elapsed >= args.seconds:
            break
        if stdin_open:  # captured beats from the test, one hex line each
            try:
                data = os.read(fd_in, 65536)
            except BlockingIOError:
                data = None
            if data == b"":
                stdin_open = False
            elif data:
                lines = (pending + data).split(b"\n")
                pending = lines.pop()
                captured.extend(bytes.fromhex(line.decode()) for line in lines if line.strip())
                recent = captured[-per:]
                replays = mmsg.prepare([recent[i % len(recent)] if i % 2 else captured[-1] for i in range(per)])
        chunk = per * (len(STATIC) + 1)
        due = int(elapsed * args.rate) - sent
        if due < chunk:
            time.sleep(min(0.002, (chunk - due) / args.rate))
            continue
        fd = socks[k % len(socks)].fileno()
        sent += mmsg.send(fd, ring[k % len(ring)])
        if replays is not None:
            sent += mmsg.send(fd, replays)
        k += 1
        replies += _drain_replies(socks)  # the listener must answer none of these
    time.sleep(0.5)  # a late answer still counts
    replies += _drain_replies(socks)
    t = os.times()
    out = {
        "sent": sent,
        "replies": replies,
        "seconds": round(time.monotonic() - t0, 3),
        "cpu": round(t.user + t.system - cpu0.user - cpu0.system, 3),
        "captured": len(captured),
    }
    print(json.dumps(out), flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.support.udpflood")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--dest", default="127.0.0.1")
    parser.add_argument("--source", required=True, help="the customer's address: the flood's sockets bind to it")
    parser.add_argument("--account", type=int, required=True, help="the customer's account id (forged MACs)")
    parser.add_argument("--deleted", default="", help="comma list of unknown ids below the id sequence")
    parser.add_argument("--rate", type=float, default=10_000.0)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--sockets", type=int, default=4)
    parser.add_argument("--seed", type=int, default=14)
    return flood_main(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
