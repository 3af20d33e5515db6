"""Acceptance: the product as a customer and an operator see it, through the processes ``make run``
starts (redis-server, pdns_server, backend, heartbeat listener, update API, sweeper, notifier;
honcho), with an SMTP sink on loopback. Every bound is asserted; every wait is a condition with a
deadline."""

from __future__ import annotations

import base64
import json
import re
import signal
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.servers import Process, wait_for
from tests.support.stack import METRICS_SETTINGS, Stack

ZONE = "dyn.accept.test"
HOST = f"home.{ZONE}"
BACKUP_MX = "mx-backup.provider.test"
NEUTRAL = "192.0.2.1"
INTERVAL, MISSES = 5, 3  # heartbeat-c
# a plan of its own for the metrics test: an account neutral 0.6 s after its beat
PUBLIC_IP = "45.0.0.9"  # a public unicast address for a dyndns2 update: only ever DNS data, never contacted
FAST_PLAN = {"test-fast": {"kind": "heartbeat", "interval": 0.2, "misses": 3, "ttl": 1}}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    s = Stack(Path(tmp_path_factory.mktemp("stack")), extra_env={"HBDNS_PLANS": json.dumps(FAST_PLAN)})
    try:
        s.start(["zone", "add", ZONE, "--ns", f"ns1.{ZONE}", "--backup-mx", BACKUP_MX])
        yield s
    except BaseException:
        print(s.log()[-6000:])
        raise
    finally:
        s.stop()


def _now() -> float:
    return time.time()


def _last_beat(stack: Stack) -> float:
    out = stack.cli("--json", "account", "show", HOST)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)["last_beat_ms"] / 1000


def test_heartbeat_customer_journey(stack: Stack, tmp_path: Path) -> None:
    conf = tmp_path / "client.conf"
    r = stack.cli(
        "account", "add", HOST, "--plan", "heartbeat-c", "--mx", "--email", "owner@customer.test",
        "--client-config", str(conf), "--server", f"127.0.0.1:{stack.heartbeat_port}",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    live_mx = {f"10 {HOST}.", f"50 {BACKUP_MX}."}
    neutral_mx = live_mx  # kept while neutral: a backup-only set bounces at a stock backup MX
    # Before the first beat the account is neutral: no stranger can get its mail.
    assert stack.answers(HOST, "A") == {NEUTRAL}
    assert stack.answers(HOST, "MX") == neutral_mx

    clients: list[Process] = []

    def start_client(source: str) -> tuple[Process, float]:
        t0 = _now()
        p = stack.client(conf, "run", source=source)
        clients.append(p)
        return p, t0

    try:
        # 1. client on 127.0.0.2: A and MX follow
        c1, _ = start_client("127.0.0.2")
        wait_for(lambda: stack.answers(HOST, "A") == {"127.0.0.2"}, 10, what="A 127.0.0.2")
        assert stack.answers(HOST, "MX") == live_mx

        # 2. the customer's IP changes: the client now beats from 127.0.0.3
        c1.kill()
        c2, t_move = start_client("127.0.0.3")
        wait_for(lambda: stack.answers(HOST, "A") == {"127.0.0.3"}, 10, what="A 127.0.0.3")
        moved = _now() - t_move
        assert moved <= 2.0, f"IP change took {moved:.2f}s to reach pdns"

        # 3. the line drops hard: no offline beat. Neutral within 3 x 5 s + 2 s of the last beat.
        c2.kill()
        last = _last_beat(stack)
        wait_for(lambda: stack.answers(HOST, "A") == {NEUTRAL}, 30, what="neutral A")
        neutral_after = _now() - last
        assert stack.answers(HOST, "MX") == neutral_mx
        assert neutral_after <= INTERVAL * MISSES + 2, f"neutral {neutral_after:.2f}s after the last beat"
        assert neutral_after >= INTERVAL * MISSES - 0.5, "neutralized before 3 beats were missed"
        outage_mails = wait_for(lambda: stack.mails(HOST, "is offline"), 20, what="outage e-mail")
        assert [m.rcpts for m in outage_mails] == [["owner@customer.test"]]

        # 4. the line is back: real address within 2 s, one recovery mail with the outage length
        c3, t_back = start_client("127.0.0.3")
        wait_for(lambda: stack.answers(HOST, "A") == {"127.0.0.3"}, 10, what="A back")
        back = _now() - t_back
        assert back <= 2.0, f"recovery took {back:.2f}s to reach pdns"
        assert stack.answers(HOST, "MX") == live_mx
        recovery = wait_for(lambda: stack.mails(HOST, "back online"), 20, what="recovery e-mail")
        assert len(recovery) == 1
        body = recovery[0].text
        lasted = re.search(r"outage lasted (\d+) s", body)
        assert lasted, body
        expected = t_back - (last + INTERVAL * MISSES)  # neutral from the deadline until the first new beat
        assert abs(int(lasted.group(1)) - expected) <= 2, (lasted.group(0), expected)

        # 5. graceful stop sends the offline beat: neutral within 2 s
        t_stop = _now()
        c3.signal(signal.SIGTERM)
        wait_for(lambda: stack.answers(HOST, "A") == {NEUTRAL}, 10, what="neutral after offline beat")
        assert _now() - t_stop <= 2.0
        wait_for(lambda: not c3.alive(), 10, what="client exit")
        assert c3.proc.returncode == 0

        # exactly one outage mail for the hard drop, one for the graceful stop; one recovery
        wait_for(lambda: len(stack.mails(HOST, "is offline")) >= 2, 20, what="second outage e-mail")
        assert len(stack.mails(HOST, "is offline")) == 2
        assert len(stack.mails(HOST, "back online")) == 1

        # the operator sees the history
        log = stack.cli("--json", "account", "log", HOST)
        kinds = [e["type"] for e in reversed(json.loads(log.stdout))]
        assert kinds == ["created", "recovered", "ip_changed", "ip_changed", "neutralized", "recovered",
                         "neutralized"]  # fmt: skip
    finally:
        for p in clients:
            p.kill()
            p.stop()


def _total(m: dict[str, float], name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels``."""
    want = [f'{k}="{v}"' for k, v in labels.items()]
    return sum(v for k, v in m.items() if k.partition("{")[0] == name and all(w in k.partition("{")[2] for w in want))


def _http(url: str, auth: tuple[str, str] | None = None) -> tuple[int, str]:
    req = urllib.request.Request(url)
    if auth is not None:
        req.add_header("Authorization", "Basic " + base64.b64encode(":".join(auth).encode()).decode())
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:  # loopback
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_every_service_exports_metrics_that_move(stack: Stack, tmp_path: Path) -> None:
    """Issue 17: each service's /metrics answers, and its counters move with what happens."""
    services = ["listener", *METRICS_SETTINGS]
    before = {name: stack.metrics(name) for name in services}
    for name, m in before.items():
        assert _total(m, "process_cpu_seconds_total") > 0 or name == "listener", name  # the process collector

    # a beat (listener), the transitions it and the sweeper record, their e-mails (notifier)
    conf = tmp_path / "fast.conf"
    fast = f"fast.{ZONE}"
    r = stack.cli(
        "account", "add", fast, "--plan", "test-fast", "--email", "fast@customer.test",
        "--client-config", str(conf), "--server", f"127.0.0.1:{stack.heartbeat_port}",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    sender = stack.client(conf, "send", source="127.0.0.4")
    wait_for(lambda: not sender.alive(), 10, what="one beat sent")
    wait_for(lambda: stack.mails(fast, "is offline"), 20, what="the fast account's outage e-mail")
    assert stack.answers(fast, "A") == {NEUTRAL}  # a lookup (neutral now)

    # a dyndns2 update (update API), a status page view, an admin API call without a token
    upd = f"upd.{ZONE}"
    r = stack.cli("account", "add", upd, "--plan", "setip-c", "--password", "upd-password")
    assert r.returncode == 0, r.stderr
    status, body = _http(
        f"http://127.0.0.1:{stack.update_port}/nic/update?hostname={upd}&myip={PUBLIC_IP}", (upd, "upd-password")
    )
    code = body.split(" ", 1)[0].strip()
    assert status == 200 and code == "good", (status, body)
    assert _http(f"http://127.0.0.1:{stack.status_port}/")[0] in (200, 302)
    assert _http(f"http://127.0.0.1:{stack.admin_api_port}/api/v1/zones")[0] == 401
    assert stack.answers(upd, "A") == {PUBLIC_IP}  # a live lookup

    def moved() -> list[str]:
        after = {name: stack.metrics(name) for name in services}
        checks = {
            "listener accepted": ("listener", "hbdns_heartbeat_packets_total", {"result": "accepted"}),
            "backend live lookups": ("backend", "hbdns_backend_lookups_total", {"result": "live"}),
            "backend neutral lookups": ("backend", "hbdns_backend_lookups_total", {"result": "neutral"}),
            "sweeper transitions": ("sweeper", "hbdns_sweeper_neutralized_total", {}),
            "notifier e-mails sent": (
                "notifier",
                "hbdns_notifier_messages_total",
                {"channel": "email", "result": "sent"},
            ),
            "notifier delivery delay": (
                "notifier",
                "hbdns_notifier_delivery_delay_seconds_count",
                {"channel": "email"},
            ),
            "update answers good": ("updates", "hbdns_update_answers_total", {"code": "good"}),
            "update requests 200": ("updates", "hbdns_update_requests_total", {"status": "200"}),
            "status page requests": ("status", "hbdns_status_page_requests_total", {}),
            "admin API 401": ("adminapi", "hbdns_admin_api_requests_total", {"status": "401"}),
        }
        return [
            what
            for what, (svc, name, labels) in checks.items()
            if not _total(after[svc], name, **labels) > _total(before[svc], name, **labels)
        ]

    wait_for(lambda: not moved(), 20, what="every counter moved")
    sweeper = stack.metrics("sweeper")
    assert sweeper["hbdns_sweeper_redis_up"] == 1
    assert sweeper['hbdns_accounts{state="live"}'] >= 1  # the updated account
    assert sweeper['hbdns_accounts{state="neutral"}'] >= 1  # the fast one
    assert sweeper["hbdns_sweep_backlog"] == 0
    notifier = stack.metrics("notifier")
    assert notifier["hbdns_notifier_redis_up"] == 1
    assert notifier["hbdns_notifier_dead_letters"] == 0
