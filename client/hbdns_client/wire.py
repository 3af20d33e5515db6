"""The heartbeat wire format (version 1). ``docs/protocol.md`` documents it byte by byte.

Standard library only: the update client imports this module and must install anywhere.

Beat, client -> server, 24 bytes, all integers big-endian::

    0       1   version (1)
    1       1   flags: bit 0 OFFLINE (going offline: neutralize now), bit 1 REPLY (please answer);
                other bits must be 0
    2..5    4   account id (uint32)
    6..13   8   counter (uint64): Unix time in milliseconds, strictly increasing per account
    14..23  10  MAC: HMAC-SHA256(heartbeat key, bytes 0..13), first 10 bytes (80 bits)

Reply, server -> client, only to an authenticated beat with the REPLY flag, 12 or 24 bytes (never
larger than the beat: no amplification)::

    0       1   version (1)
    1       1   status: 0 OK, 1 OFFLINE_OK, 2 CLOCK_SKEW (counter too far from server time)
    2..     4|16 the source address the server saw (IPv4 or IPv6, by length)
    -6..    6   MAC: HMAC-SHA256(key, b"hbdns-reply" + beat bytes 0..13 + reply bytes before MAC)[:6]
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import socket
import struct
from dataclasses import dataclass
from typing import NamedTuple

VERSION = 1
FLAG_OFFLINE = 0x01
FLAG_REPLY = 0x02
KNOWN_FLAGS = FLAG_OFFLINE | FLAG_REPLY

STATUS_OK = 0
STATUS_OFFLINE_OK = 1
STATUS_CLOCK_SKEW = 2
STATUS_NAMES = {STATUS_OK: "ok", STATUS_OFFLINE_OK: "offline-ok", STATUS_CLOCK_SKEW: "clock-skew"}

_HEADER = struct.Struct(">BBIQ")
HEADER_LEN = _HEADER.size  # 14
MAC_LEN = 10
BEAT_LEN = HEADER_LEN + MAC_LEN  # 24
REPLY_MAC_LEN = 6
_REPLY_LABEL = b"hbdns-reply"
KEY_LEN = 32
MAX_ACCOUNT_ID = 2**32 - 1
MAX_COUNTER = 2**64 - 1


class WireError(ValueError):
    """A packet that is not a well-formed beat or reply. ``reason`` is a short metric label."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(detail or reason)
        self.reason = reason


class Beat(NamedTuple):
    """A parsed beat. A NamedTuple (not a frozen dataclass) because the listener makes one per
    datagram and a tuple is several times cheaper to build."""

    version: int
    flags: int
    account_id: int
    counter: int
    mac: bytes
    header: bytes  # bytes 0..13, what the MAC covers

    @property
    def offline(self) -> bool:
        return bool(self.flags & FLAG_OFFLINE)

    @property
    def wants_reply(self) -> bool:
        return bool(self.flags & FLAG_REPLY)


@dataclass(frozen=True)
class Reply:
    status: int
    address: str


_SHA256 = "sha256"  # by name: hmac.digest then takes OpenSSL's one-shot path directly
_IPAD = bytes(x ^ 0x36 for x in range(256))
_OPAD = bytes(x ^ 0x5C for x in range(256))


class MacKey:
    """HMAC-SHA256 (RFC 2104) with the key's inner and outer hash states computed once.

    A MAC then costs two hash-state copies instead of a key schedule: ~0.6 us instead of ~1.5 us for
    ``hmac.digest`` with OpenSSL 3 (measured). The listener keeps one per cached account; the
    output is exactly ``hmac.digest(key, data, "sha256")`` (a property test checks).
    """

    __slots__ = ("_inner", "_outer")

    def __init__(self, key: bytes) -> None:
        if len(key) > 64:
            key = hashlib.sha256(key).digest()
        padded = key.ljust(64, b"\0")
        self._inner = hashlib.sha256(padded.translate(_IPAD))
        self._outer = hashlib.sha256(padded.translate(_OPAD))

    def __repr__(self) -> str:
        return "MacKey(...)"  # never the key

    def digest(self, data: bytes) -> bytes:
        inner = self._inner.copy()
        inner.update(data)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()


Key = bytes | MacKey


def _mac(key: Key, data: bytes, length: int) -> bytes:
    if isinstance(key, MacKey):
        return key.digest(data)[:length]
    return hmac.digest(key, data, _SHA256)[:length]  # one-shot: ~40% cheaper than hmac.new


def encode_beat(account_id: int, counter: int, key: bytes, flags: int = 0) -> bytes:
    if not 0 <= account_id <= MAX_ACCOUNT_ID:
        raise ValueError("account id out of range")
    if not 0 <= counter <= MAX_COUNTER:
        raise ValueError("counter out of range")
    if flags & ~KNOWN_FLAGS:
        raise ValueError("unknown flags")
    header = _HEADER.pack(VERSION, flags, account_id, counter)
    return header + _mac(key, header, MAC_LEN)


def parse_beat(data: bytes) -> Beat:
    """Split a datagram into fields, checking shape only (the MAC needs the account's key)."""
    if len(data) < BEAT_LEN:
        raise WireError("short", f"{len(data)} bytes, need {BEAT_LEN}")
    if len(data) > BEAT_LEN:
        raise WireError("long", f"{len(data)} bytes, need {BEAT_LEN}")
    version, flags, account_id, counter = _HEADER.unpack_from(data)
    if version != VERSION:
        raise WireError("version", f"version {version}")
    if flags & ~KNOWN_FLAGS:
        raise WireError("flags", f"unknown flags {flags:#04x}")
    if type(data) is not bytes:  # e.g. a memoryview: the fields must not share its buffer
        data = bytes(data)
    return Beat(version, flags, account_id, counter, data[HEADER_LEN:], data[:HEADER_LEN])


def verify_beat(beat: Beat, key: Key) -> bool:
    """Constant-time MAC check."""
    return hmac.compare_digest(_mac(key, beat.header, MAC_LEN), beat.mac)


_REPLY_HEAD = {s: bytes((VERSION, s)) for s in STATUS_NAMES}


def encode_reply(beat: Beat, status: int, address: str, key: Key) -> bytes:
    packed = socket.inet_pton(socket.AF_INET6, address) if ":" in address else socket.inet_aton(address)
    body = (_REPLY_HEAD.get(status) or struct.pack(">BB", VERSION, status)) + packed
    return body + _mac(key, _REPLY_LABEL + beat.header + body, REPLY_MAC_LEN)


def parse_reply(data: bytes, beat_bytes: bytes, key: bytes) -> Reply:
    """Check a reply against the beat it answers; raise WireError if it is not authentic."""
    if len(data) not in (2 + 4 + REPLY_MAC_LEN, 2 + 16 + REPLY_MAC_LEN):
        raise WireError("length", f"reply of {len(data)} bytes")
    body, mac = data[:-REPLY_MAC_LEN], data[-REPLY_MAC_LEN:]
    expected = _mac(key, _REPLY_LABEL + beat_bytes[:HEADER_LEN] + body, REPLY_MAC_LEN)
    if not hmac.compare_digest(expected, mac):
        raise WireError("mac", "reply MAC does not match")
    if body[0] != VERSION:
        raise WireError("version", f"reply version {body[0]}")
    return Reply(body[1], str(ipaddress.ip_address(bytes(body[2:]))))
