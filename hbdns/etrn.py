"""What asking a backup MX to flush means, without any I/O: targets, replies, results, counters.

A backup MX queues a customer's mail while the customer is offline and retries on its own schedule
(Postfix: 5 min, backing off to ~67 min). When the customer is back, hbdns asks it to deliver at
once: SMTP ``ETRN <domain>`` (RFC 1985; Postfix, Exim and Sendmail answer it) to each configured
host, or ``postqueue -s <domain>`` for a Postfix on the same machine. :mod:`hbdns.mta_flush` does
the talking; this module parses the settings, classifies replies and counts outcomes.

ETRN replies (RFC 1985 and what Postfix sends):

- ``250`` (Postfix "Queuing started"), ``251`` (nothing queued), ``252``/``253`` (delivery
  started): done. A flush is idempotent, so a repeated one (a second flush after caching resolvers
  expired, a redelivered event) costs one more queue scan and nothing else.
- ``458`` "Unable to queue messages": the MX's flush service failed; try again.
- ``459`` "<domain>: service unavailable" (Postfix) / "Node not allowed": this MX does not
  fast-flush the name (not in ``fast_flush_domains``, i.e. not a relay domain there). Retrying
  cannot help: it is a configuration gap, reported as ``not_eligible``.
- other ``4xx`` (``421`` greeting, too many connections): transient; retried.
- ``5xx`` (``554`` refused by ``smtpd_etrn_restrictions``, ``500``/``502`` no ETRN): permanent,
  ``refused``.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from hbdns import validate

SMTP_PORT = 25
POSTQUEUE = "postqueue"
MAX_DETAIL = 200  # characters of a reply or error kept in a result (results go to the event log)


class Outcome(StrEnum):
    FLUSHED = "flushed"
    NOT_ELIGIBLE = "not_eligible"
    REFUSED = "refused"
    FAILED = "failed"  # transient errors until the attempts ran out (or the flusher was stopped)


@dataclass(frozen=True)
class FlushTarget:
    """One backup MX: ``kind`` "smtp" (``host``/``port``) or "postqueue" (``config_dir``, may be "")."""

    kind: str
    host: str = ""
    port: int = SMTP_PORT
    config_dir: str = ""

    def __str__(self) -> str:
        if self.kind == POSTQUEUE:
            return f"{POSTQUEUE}:{self.config_dir}" if self.config_dir else POSTQUEUE
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def parse_target(spec: str) -> FlushTarget:
    """``host``, ``host:port``, ``[v6addr]``, ``[v6addr]:port``, ``postqueue`` or
    ``postqueue:/config/dir``; raise ValueError with the reason."""
    text = spec.strip()
    if text == POSTQUEUE or text.startswith(POSTQUEUE + ":"):
        config_dir = text[len(POSTQUEUE) + 1 :]
        if config_dir and not config_dir.startswith("/"):
            raise ValueError(f"{text!r}: the postqueue config directory must be an absolute path")
        return FlushTarget(kind=POSTQUEUE, config_dir=config_dir)
    port = SMTP_PORT
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise ValueError(f"{text!r}: expected [address] or [address]:port")
        host = validate.ipv6(host)
        port_text = rest[1:]
    else:
        if text.count(":") > 1:
            raise ValueError(f"{text!r}: write an IPv6 address in brackets, [address]:port")
        host, _, port_text = text.partition(":")
        host = validate.hostname(host)
    if port_text or text.endswith(":"):
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise ValueError(f"{text!r}: bad port")
        port = int(port_text)
    return FlushTarget(kind="smtp", host=host, port=port)


def parse_targets(specs: tuple[str, ...]) -> tuple[FlushTarget, ...]:
    targets = tuple(parse_target(s) for s in specs)
    if len(set(targets)) != len(targets):
        raise ValueError("a backup MX is listed twice")
    return targets


def classify(code: int) -> Outcome | None:
    """The outcome an ETRN reply code means, or None when the attempt should be repeated."""
    if 200 <= code < 300:
        return Outcome.FLUSHED
    if code == 459:
        return Outcome.NOT_ELIGIBLE
    if 400 <= code < 500 or code <= 0:  # 0: no reply at all (connection failed or dropped)
        return None
    return Outcome.REFUSED


def classify_postqueue(returncode: int, stderr: str) -> Outcome | None:
    """``postqueue -s`` exit status and message -> outcome, None for "try again"."""
    if returncode == 0:
        return Outcome.FLUSHED
    text = stderr.lower()
    if "not configured for destination" in text or "not eligible" in text:
        return Outcome.NOT_ELIGIBLE
    if "permission denied" in text or "not authorized" in text or "usage:" in text:
        return Outcome.REFUSED
    return None  # mail system down, flush service unreachable, timeout: transient


def short(text: str) -> str:
    one_line = " ".join(text.split())
    return one_line if len(one_line) <= MAX_DETAIL else one_line[: MAX_DETAIL - 3] + "..."


@dataclass(frozen=True)
class FlushResult:
    """What one backup MX did with one domain. ``code`` is the last reply code (0: none, e.g. a
    connection error; for postqueue its exit status), ``detail`` the last reply or error text."""

    domain: str
    target: str
    outcome: Outcome
    code: int
    detail: str
    attempts: int
    seconds: float

    @property
    def ok(self) -> bool:
        return self.outcome is Outcome.FLUSHED

    def to_dict(self) -> dict[str, Any]:
        return {
            "domain": self.domain,
            "target": self.target,
            "outcome": str(self.outcome),
            "code": self.code,
            "detail": self.detail,
            "attempts": self.attempts,
            "ms": round(self.seconds * 1000, 1),
        }


class FlushCounters:
    """Counts per target: flush requests by outcome and attempts (thread-safe), for metrics."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._results: Counter[tuple[str, str]] = Counter()
        self._attempts: Counter[str] = Counter()

    def add(self, result: FlushResult) -> None:
        with self._lock:
            self._results[(result.target, str(result.outcome))] += 1
            self._attempts[result.target] += result.attempts

    def results(self) -> dict[tuple[str, str], int]:
        with self._lock:
            return dict(self._results)

    def attempts(self) -> dict[str, int]:
        with self._lock:
            return dict(self._attempts)

    def prometheus(self, prefix: str = "hbdns_mta_flush") -> str:
        """Counter lines in the Prometheus text format."""
        lines = [f"# TYPE {prefix}_total counter"]
        for (target, outcome), n in sorted(self.results().items()):
            lines.append(f'{prefix}_total{{target="{target}",outcome="{outcome}"}} {n}')
        lines.append(f"# TYPE {prefix}_attempts_total counter")
        for target, n in sorted(self.attempts().items()):
            lines.append(f'{prefix}_attempts_total{{target="{target}"}} {n}')
        return "\n".join(lines) + "\n"
