"""The one place that talks to backup MXes: ask each to deliver a domain's queued mail now.

``MtaFlusher.flush(domains)`` sends ``ETRN <domain>`` to every ``HBDNS_BACKUP_MX_FLUSH`` host over
SMTP (several domains share one session, at most :data:`BATCH` per session: Postfix counts ETRN as a
junk command and slows a client down after 100), or runs ``postqueue [-c DIR] -s <domain>`` for a
``postqueue`` target (a Postfix on this machine; any local user may flush while Postfix's
``authorized_flush_users`` is its default ``static:anyone``). Targets are asked in parallel, each
domain is retried on transient failures with capped exponential backoff
(``backoff x 2^(n-1)``, at most ``backoff_max``), and the outcome of every (domain, target) pair is a
:class:`~hbdns.etrn.FlushResult` counted in :attr:`MtaFlusher.counters`. Reply meanings:
:mod:`hbdns.etrn`.

Callers (phase 2: the recovery consumer, the admin CLI) decide *when*; this module only makes one
flush request reliable. A flush is idempotent, so callers may repeat it freely (for example once
more after the record TTL, for senders behind caching resolvers).
"""

from __future__ import annotations

import logging
import shutil
import smtplib
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor

from hbdns import validate
from hbdns.config import Settings
from hbdns.etrn import (
    POSTQUEUE,
    FlushCounters,
    FlushResult,
    FlushTarget,
    Outcome,
    classify,
    classify_postqueue,
    parse_targets,
    short,
)

log = logging.getLogger("hbdns.mta_flush")

BATCH = 50  # ETRN commands per SMTP session

Reply = tuple[int, str]


class MtaFlusher:
    def __init__(
        self,
        targets: Sequence[FlushTarget],
        *,
        timeout: float = 10.0,
        attempts: int = 5,
        backoff: float = 1.0,
        backoff_max: float = 30.0,
        helo: str = "",
        source_address: str = "",
        stop: threading.Event | None = None,
        postqueue: str = "",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if attempts < 1:
            raise ValueError("attempts must be >= 1")
        self.targets = tuple(targets)
        self.timeout = timeout
        self.attempts = attempts
        self.backoff = backoff
        self.backoff_max = backoff_max
        self.helo = validate.hostname(helo) if helo else socket.getfqdn()
        self.source_address = source_address
        self.stop = stop or threading.Event()  # set it to end waits between attempts at once
        self._postqueue = postqueue
        self._clock = clock
        self.counters = FlushCounters()

    # --- API ------------------------------------------------------------------------------------

    def flush(self, domains: Iterable[str]) -> list[FlushResult]:
        """Flush every domain at every target; one result per (domain, target)."""
        names = list(dict.fromkeys(validate.hostname(d) for d in domains))
        if not names or not self.targets:
            return []
        if len(self.targets) == 1:
            return self.flush_target(self.targets[0], names)
        with ThreadPoolExecutor(len(self.targets), thread_name_prefix="mta-flush") as pool:
            per_target = list(pool.map(lambda t: self.flush_target(t, names), self.targets))
        return [r for results in per_target for r in results]

    def flush_target(self, target: FlushTarget, domains: Sequence[str]) -> list[FlushResult]:
        start = self._clock()
        pending = list(domains)
        last: dict[str, Reply] = {}
        tries: dict[str, int] = dict.fromkeys(pending, 0)
        done: dict[str, FlushResult] = {}
        for attempt in range(1, self.attempts + 1):
            if attempt > 1 and self.stop.wait(self.delay(attempt - 1)):
                break
            for i in range(0, len(pending), BATCH):
                chunk = pending[i : i + BATCH]
                replies = self._ask(target, chunk)
                for domain in chunk:
                    code, text = replies.get(domain, (0, "no reply"))
                    tries[domain] += 1
                    last[domain] = (code, text)
                    outcome = classify_postqueue(code, text) if target.kind == POSTQUEUE else classify(code)
                    if outcome is not None:
                        done[domain] = self._result(domain, target, outcome, code, text, tries[domain], start)
            pending = [d for d in pending if d not in done]
            if not pending or self.stop.is_set():
                break
        for domain in pending:
            code, text = last.get(domain, (0, "stopped before the first attempt"))
            done[domain] = self._result(domain, target, Outcome.FAILED, code, text, tries[domain], start)
        return [done[d] for d in domains]

    def delay(self, failures: int) -> float:
        """Seconds to wait after ``failures`` failed attempts: doubling from ``backoff``, capped."""
        return float(min(self.backoff * 2 ** (failures - 1), self.backoff_max))

    # --- internals ------------------------------------------------------------------------------

    def _result(
        self, domain: str, target: FlushTarget, outcome: Outcome, code: int, text: str, attempts: int, start: float
    ) -> FlushResult:
        result = FlushResult(
            domain=domain,
            target=str(target),
            outcome=outcome,
            code=code,
            detail=short(text),
            attempts=attempts,
            seconds=self._clock() - start,
        )
        self.counters.add(result)
        level = logging.INFO if result.ok else logging.WARNING
        log.log(level, "backup MX flush", extra=result.to_dict())
        return result

    def _ask(self, target: FlushTarget, domains: Sequence[str]) -> dict[str, Reply]:
        if target.kind == POSTQUEUE:
            return {d: self._postqueue_one(target, d) for d in domains}
        return self._etrn_session(target, domains)

    def _etrn_session(self, target: FlushTarget, domains: Sequence[str]) -> dict[str, Reply]:
        """One SMTP session: greeting, EHLO (HELO if refused), one ETRN per domain, QUIT."""
        out: dict[str, Reply] = {}
        smtp = smtplib.SMTP(
            timeout=self.timeout,
            local_hostname=self.helo,
            source_address=(self.source_address, 0) if self.source_address else None,
        )
        try:
            code, msg = smtp.connect(target.host, target.port)
            if code != 220:
                return dict.fromkeys(domains, (code, _text(msg)))
            smtp.ehlo_or_helo_if_needed()
            for domain in domains:
                code, msg = smtp.docmd("ETRN", domain)
                out[domain] = (code, _text(msg))
                if code == 421:  # the server is closing the session
                    break
            try:
                smtp.quit()
            except (OSError, smtplib.SMTPException):
                pass
        except smtplib.SMTPHeloError as exc:
            return dict.fromkeys(domains, (exc.smtp_code, _text(exc.smtp_error)))
        except (OSError, smtplib.SMTPException) as exc:
            error = (0, f"{type(exc).__name__}: {exc}")
            out.update({d: error for d in domains if d not in out})
        finally:
            smtp.close()
        return out

    def _postqueue_one(self, target: FlushTarget, domain: str) -> Reply:
        binary = self._postqueue or shutil.which("postqueue") or "/usr/sbin/postqueue"
        argv = [binary, *(["-c", target.config_dir] if target.config_dir else []), "-s", domain]
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=self.timeout, check=False)
        except subprocess.TimeoutExpired:
            return (-1, f"postqueue timed out after {self.timeout:g} s")
        except OSError as exc:
            return (-1, f"cannot run postqueue: {exc}")
        if done.returncode == 0:
            return (0, "queue run started")
        return (done.returncode, (done.stderr or done.stdout).strip() or f"exit status {done.returncode}")


def _text(msg: bytes | str) -> str:
    return msg.decode("utf-8", "replace") if isinstance(msg, bytes) else str(msg)


def from_settings(settings: Settings, stop: threading.Event | None = None) -> MtaFlusher:
    """The flusher a service builds in ``main()`` from the ``HBDNS_BACKUP_MX_FLUSH*`` settings."""
    return MtaFlusher(
        parse_targets(settings.backup_mx_flush),
        timeout=settings.backup_mx_flush_timeout,
        attempts=settings.backup_mx_flush_attempts,
        backoff=settings.backup_mx_flush_backoff,
        backoff_max=settings.backup_mx_flush_backoff_max,
        helo=settings.backup_mx_flush_helo,
        source_address=settings.backup_mx_flush_source,
        stop=stop,
    )
