"""Postfix's socketmap protocol (socketmap_table(5)): netstrings, no I/O.

A request is one netstring ``<name> <key>``; the reply is one netstring ``OK <value>``,
``NOTFOUND ``, ``TEMP <reason>``, ``TIMEOUT <reason>`` or ``PERM <reason>``. Postfix queries only
whole keys here (no parent domains, no ``user@`` or ``domain`` parts of an address), keeps the
connection open and sends the next request on it.
"""

from __future__ import annotations

from typing import NamedTuple

MAX_REQUEST = 10_000  # a name, a space and an address fit many times over
MAX_REPLY = 100_000  # Postfix's limit


class ProtocolError(ValueError):
    """The peer sent something that is not a netstring request: close the connection."""


class Request(NamedTuple):
    name: str
    key: str


def encode(payload: str) -> bytes:
    data = payload.encode("utf-8")
    if len(data) > MAX_REPLY:
        raise ValueError("socketmap reply too long")
    return b"%d:%s," % (len(data), data)


def ok(value: str) -> bytes:
    if not value or "\n" in value or "\r" in value:
        raise ValueError("a socketmap value is one non-empty line")
    return encode("OK " + value)


def notfound() -> bytes:
    return encode("NOTFOUND ")


def temp(reason: str) -> bytes:
    return encode("TEMP " + " ".join(reason.split()))


def perm(reason: str) -> bytes:
    return encode("PERM " + " ".join(reason.split()))


class NetstringReader:
    """Feed bytes as they arrive; :meth:`requests` yields each complete request."""

    def __init__(self, limit: int = MAX_REQUEST) -> None:
        self.limit = limit
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[Request]:
        self._buf += data
        out: list[Request] = []
        while True:
            colon = self._buf.find(b":")
            if colon < 0:
                if len(self._buf) > 10 or (self._buf and not self._buf.isdigit()):
                    raise ProtocolError("bad netstring length")
                return out
            digits = bytes(self._buf[:colon])
            if not digits.isdigit() or len(digits) > 10 or (len(digits) > 1 and digits[0:1] == b"0"):
                raise ProtocolError("bad netstring length")
            size = int(digits)
            if size > self.limit:
                raise ProtocolError("request too long")
            end = colon + 1 + size
            if len(self._buf) < end + 1:
                return out
            if self._buf[end : end + 1] != b",":
                raise ProtocolError("netstring without its comma")
            payload = bytes(self._buf[colon + 1 : end])
            del self._buf[: end + 1]
            out.append(parse_request(payload))

    @property
    def pending(self) -> int:
        return len(self._buf)


def parse_request(payload: bytes) -> Request:
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        raise ProtocolError("request is not UTF-8") from None
    name, sep, key = text.partition(" ")
    if not sep or not name or not key:
        raise ProtocolError("request is not '<name> <key>'")
    return Request(name, key)
