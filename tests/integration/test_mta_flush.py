"""The flush client (hbdns.mta_flush) against an ETRN-speaking aiosmtpd, the neutral host (a 421
greeter) and a closed port, all on loopback. Backoffs are shortened; their schedule is checked
from the recorded attempt times."""

from __future__ import annotations

import os
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hbdns import validate
from hbdns.etrn import FlushTarget, Outcome
from hbdns.mta_flush import BATCH, MtaFlusher
from tests.support.etrn import EtrnServer
from tests.support.neutral import NeutralHostThread
from tests.support.servers import free_port, wait_for

HOME = "home.dyn.example.test"


@pytest.fixture
def mx() -> Iterator[EtrnServer]:
    server = EtrnServer().start()
    yield server
    server.stop()


def _target(port: int) -> FlushTarget:
    return FlushTarget("smtp", "127.0.0.1", port)


def _flusher(*targets: FlushTarget, **kw: object) -> MtaFlusher:
    opts: dict[str, object] = {"timeout": 5.0, "attempts": 4, "backoff": 0.05, "backoff_max": 0.2, "helo": "hbdns.test"}
    opts.update(kw)
    return MtaFlusher(targets, **opts)  # type: ignore[arg-type]


def test_etrn_flushes_each_domain_in_one_session(mx: EtrnServer) -> None:
    flusher = _flusher(_target(mx.port))
    results = flusher.flush([HOME, "Alias.dyn.example.test.", HOME])
    assert [(r.domain, r.outcome, r.code, r.attempts) for r in results] == [
        (HOME, Outcome.FLUSHED, 250, 1),
        ("alias.dyn.example.test", Outcome.FLUSHED, 250, 1),
    ]
    assert mx.domains() == [HOME, "alias.dyn.example.test"]
    assert mx.sessions == 1
    assert results[0].detail == "Queuing started"
    assert flusher.counters.results() == {(f"127.0.0.1:{mx.port}", "flushed"): 2}


def test_transient_replies_are_retried_with_capped_backoff(mx: EtrnServer) -> None:
    mx.replies[HOME] = ["458 Unable to queue messages", "421 busy, closing", "458 Unable to queue messages"]
    flusher = _flusher(_target(mx.port), attempts=5)
    (result,) = flusher.flush([HOME])
    assert (result.outcome, result.code, result.attempts) == (Outcome.FLUSHED, 250, 4)
    gaps = [b.at - a.at for a, b in zip(mx.received, mx.received[1:], strict=False)]
    assert [round(flusher.delay(n), 2) for n in (1, 2, 3, 4)] == [0.05, 0.1, 0.2, 0.2]
    for gap, want in zip(gaps, (0.05, 0.1, 0.2), strict=True):
        assert want - 0.01 <= gap < want + 1.0, gaps


def test_459_and_5xx_are_final_and_not_retried(mx: EtrnServer) -> None:
    mx.replies["other.test"] = ["459 4.3.0 <other.test>: service unavailable"]
    mx.replies["refused.test"] = ["554 5.7.1 <127.0.0.1>: Client host rejected: Access denied"]
    results = _flusher(_target(mx.port)).flush(["other.test", "refused.test", HOME])
    assert [(r.outcome, r.attempts) for r in results] == [
        (Outcome.NOT_ELIGIBLE, 1),
        (Outcome.REFUSED, 1),
        (Outcome.FLUSHED, 1),
    ]
    assert "service unavailable" in results[0].detail
    assert mx.domains() == ["other.test", "refused.test", HOME]


def test_a_server_without_etrn_is_refused_at_once() -> None:
    from tests.support.sinks import SmtpSink

    sink = SmtpSink().start()  # plain aiosmtpd: "500 Error: command "ETRN" not recognized"
    try:
        (result,) = _flusher(_target(sink.port)).flush([HOME])
    finally:
        sink.stop()
    assert (result.outcome, result.code, result.attempts) == (Outcome.REFUSED, 500, 1)


def test_closed_port_fails_after_every_attempt() -> None:
    port = free_port()
    flusher = _flusher(_target(port), attempts=3)
    t0 = time.monotonic()
    (result,) = flusher.flush([HOME])
    took = time.monotonic() - t0
    assert (result.outcome, result.code, result.attempts) == (Outcome.FAILED, 0, 3)
    assert "ConnectionRefusedError" in result.detail
    assert 0.15 <= took < 5, took  # waited 0.05 + 0.1 between the three attempts
    assert flusher.counters.attempts() == {f"127.0.0.1:{port}": 3}


def test_421_greeting_is_transient() -> None:
    """The neutral host greets with 421 and closes: a flush aimed at it is retried, then failed."""
    neutral = NeutralHostThread(timeout=2).start()
    try:
        (result,) = _flusher(_target(neutral.host.port_of("smtp")), attempts=2).flush([HOME])
    finally:
        neutral.stop()
    assert (result.outcome, result.code, result.attempts) == (Outcome.FAILED, 421, 2)
    assert "neutral.test is offline" in result.detail


def test_stop_ends_the_backoff_wait_at_once() -> None:
    stop = threading.Event()
    flusher = _flusher(_target(free_port()), attempts=5, backoff=30, backoff_max=30, stop=stop)
    threading.Timer(0.3, stop.set).start()
    t0 = time.monotonic()
    (result,) = flusher.flush([HOME])
    assert time.monotonic() - t0 < 5
    assert (result.outcome, result.attempts) == (Outcome.FAILED, 1)


def test_targets_are_asked_in_parallel_and_each_gets_a_result(mx: EtrnServer) -> None:
    dead = free_port()
    flusher = _flusher(_target(mx.port), _target(dead), attempts=3, backoff=0.3, backoff_max=0.3)
    t0 = time.monotonic()
    results = flusher.flush([HOME])
    good = next(r for r in results if r.target == f"127.0.0.1:{mx.port}")
    bad = next(r for r in results if r.target == f"127.0.0.1:{dead}")
    assert good.outcome is Outcome.FLUSHED and good.seconds < 0.3  # not held up by the dead target
    assert bad.outcome is Outcome.FAILED and bad.attempts == 3
    assert time.monotonic() - t0 < 5


def test_many_domains_are_split_into_sessions(mx: EtrnServer) -> None:
    names = [f"h{i}.dyn.example.test" for i in range(BATCH + 5)]
    results = _flusher(_target(mx.port)).flush(names)
    assert all(r.ok for r in results) and len(results) == len(names)
    assert mx.sessions == 2
    assert sorted(mx.domains()) == sorted(names)


def test_repeated_flushes_are_harmless(mx: EtrnServer) -> None:
    flusher = _flusher(_target(mx.port))
    assert all(r.ok for r in flusher.flush([HOME]) + flusher.flush([HOME]))
    assert mx.domains() == [HOME, HOME]


@pytest.mark.parametrize("bad", ["home.test\r\nQUIT", "", "a b.test", "x" * 300])
def test_bad_domains_are_refused_before_anything_is_sent(mx: EtrnServer, bad: str) -> None:
    with pytest.raises(validate.ValidationError):
        _flusher(_target(mx.port)).flush([HOME, bad])
    assert mx.sessions == 0


def test_postqueue_target_runs_postqueue_per_domain(tmp_path: Path) -> None:
    """A stand-in ``postqueue`` (real Postfix: tests/integration/test_backup_mx_postfix.py)."""
    calls = tmp_path / "calls"
    script = tmp_path / "postqueue"
    script.write_text(
        "#!/bin/sh\n"
        f'echo "$@" >> {calls}\n'
        'case "$*" in *nothere*) echo \'postqueue: fatal: Flush service is not configured for destination "x"\' >&2;'
        " exit 69;; esac\nexit 0\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    flusher = _flusher(FlushTarget("postqueue", config_dir="/etc/postfix-b"), postqueue=str(script))
    results = flusher.flush([HOME, "nothere.test"])
    assert [(r.outcome, r.attempts, r.target) for r in results] == [
        (Outcome.FLUSHED, 1, "postqueue:/etc/postfix-b"),
        (Outcome.NOT_ELIGIBLE, 1, "postqueue:/etc/postfix-b"),
    ]
    assert calls.read_text().split("\n")[:2] == [f"-c /etc/postfix-b -s {HOME}", "-c /etc/postfix-b -s nothere.test"]


def test_source_address_is_used(mx: EtrnServer) -> None:
    if not os.path.exists("/proc/net/if_inet6"):
        pytest.skip("no IPv6")
    _flusher(_target(mx.port), source_address="127.0.0.2").flush([HOME])
    wait_for(lambda: mx.received, 5, what="ETRN")
    assert mx.received[0].peer == "127.0.0.2"


def test_settings_build_the_flusher(mx: EtrnServer) -> None:
    from hbdns import config
    from hbdns.mta_flush import from_settings

    settings = config.load(
        {
            "HBDNS_BACKUP_MX_FLUSH": f"127.0.0.1:{mx.port}, postqueue:/etc/postfix-b",
            "HBDNS_BACKUP_MX_FLUSH_ATTEMPTS": "2",
            "HBDNS_BACKUP_MX_FLUSH_HELO": "hbdns.example.net",
        }
    )
    flusher = from_settings(settings)
    assert [str(t) for t in flusher.targets] == [f"127.0.0.1:{mx.port}", "postqueue:/etc/postfix-b"]
    assert (flusher.attempts, flusher.helo, flusher.delay(10)) == (2, "hbdns.example.net", 30.0)
