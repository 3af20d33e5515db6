"""What the update API answers: dyndns2 codes, one line per hostname, and their HTTP status.

HTTP status per code is deSEC's where it defines one (401 ``badauth``, 404 ``nohost``, 429
throttled, which dyndns2 calls ``abuse``); 5xx for server trouble (inadyn retries later on 5xx); 200 whenever one
host line succeeded, so a multi-host answer stays parseable line by line.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

STATUS = {
    "good": 200,
    "nochg": 200,
    "badauth": 401,
    "nohost": 404,
    "notfqdn": 400,
    "numhost": 400,
    "badip": 400,
    "badagent": 400,
    "abuse": 429,
    "dnserr": 503,
    "911": 500,
}
OK_CODES = ("good", "nochg")
CHALLENGE = ("WWW-Authenticate", 'Basic realm="hbdns"')


@dataclass(frozen=True)
class Reply:
    """What to send: one line per hostname (or one account/system-level code), status, headers."""

    lines: tuple[str, ...]
    status: int
    headers: tuple[tuple[str, str], ...] = ()

    @classmethod
    def code(cls, code: str, *headers: tuple[str, str]) -> Reply:
        return cls(lines=(code,), status=STATUS[code], headers=headers)

    @classmethod
    def hosts(cls, lines: Iterable[str], *headers: tuple[str, str]) -> Reply:
        lines = tuple(lines)
        codes = [line.split(" ", 1)[0] for line in lines]
        status = 200 if any(c in OK_CODES for c in codes) else STATUS[codes[0]]
        return cls(lines=lines, status=status, headers=headers)

    @property
    def body(self) -> str:
        return "\n".join(self.lines) + "\n"


def retry_after(seconds: float) -> tuple[str, str]:
    """The ``Retry-After`` header for a wait of ``seconds`` (whole seconds, at least 1)."""
    return ("Retry-After", str(max(1, math.ceil(seconds))))
