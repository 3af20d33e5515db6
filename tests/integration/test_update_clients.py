"""Stock dyndns2 clients against the real update API process: Debian's ddclient (then pdns answers the
new address), Debian's inadyn on a checkip that refuses to report a loopback source, and a plain curl
call as routers make it. Addresses: see :mod:`tests.support.update_api`."""

from __future__ import annotations

import http.client
import http.server
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from hbdns import config, keys
from hbdns.model import Account, Zone
from hbdns.store import Store
from tests.support.pdns import PdnsServer
from tests.support.servers import Process, RedisServer, wait_for, which
from tests.support.update_api import REPO, UpdateApiServer, redis_snapshot

ZONE = "dyn.example.net"
HOST = f"home.{ZONE}"
PW = "pw-Ünïcode 1234"
NEUTRAL = "192.0.2.1"


def _account(store: Store, plan: str = "business-c") -> Account:
    store.add_zone(Zone(apex=ZONE, ns=("ns1.example.net",), hostmaster="hm.example.net", neutral_ipv4=NEUTRAL))
    return store.add_account(store.new_account(HOST, plan, password=PW))


@pytest.fixture
def update_api(redis_url: str, tmp_path: Path) -> Iterator[Callable[..., UpdateApiServer]]:
    started: list[UpdateApiServer] = []

    def start(env: dict[str, str] | None = None) -> UpdateApiServer:
        server = UpdateApiServer(tmp_path / f"api{len(started)}", redis_url, env=env).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


class _Proxy:
    """A reverse proxy on loopback that tells the update API (which trusts it) that the client is
    ``client``, as a TLS-terminating proxy in front of it does."""

    def __init__(self, upstream: int, client: str) -> None:
        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                conn = http.client.HTTPConnection("127.0.0.1", upstream, timeout=10)
                conn.request("GET", self.path, headers={"X-Forwarded-For": client, "Host": "update.test"})
                resp = conn.getresponse()
                body = resp.read()
                self.send_response(resp.status)
                self.send_header("Content-Type", resp.getheader("Content-Type", "text/plain"))
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                conn.close()

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> _Proxy:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def _ddclient(api: UpdateApiServer, tmp_path: Path, name: str, use: str, *flags: str) -> str:
    conf = tmp_path / f"{name}.conf"
    conf.write_text(
        "\n".join(
            [
                "daemon=0",
                "min-interval=0",
                "ssl=no",
                "protocol=dyndns2",
                use,
                f"server=127.0.0.1:{api.port}",
                f"login={HOST}",
                f"password='{PW}'",
                HOST,
                "",
            ]
        )
    )
    conf.chmod(0o600)
    argv = [which("ddclient"), "-foreground", "-file", str(conf), "-cache", str(tmp_path / f"{name}.cache")]
    argv += ["-daemon=0", "-verbose", "-noquiet", *flags]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    return out


@pytest.mark.pdns
def test_ddclient_updates_the_account_and_pdns_answers_it(
    store: Store,
    real_redis: redis.Redis,
    pdns_factory: Callable[..., PdnsServer],
    update_api: Callable[..., UpdateApiServer],
    tmp_path: Path,
) -> None:
    account = _account(store)
    pdns = pdns_factory(transport="http")
    pdns.wait_answer(HOST, "A", {NEUTRAL})
    api = update_api({**pdns.writer_env, "HBDNS_UPDATE_TRUSTED_PROXIES": "127.0.0.1/32"})

    # use=web straight at checkip from loopback (a proxy missing from the trusted list looks the
    # same): checkip answers 503 with no address in it, and ddclient updates nothing
    before = redis_snapshot(real_redis)
    out = _ddclient(api, tmp_path, "web0", f"use=web, web={api.url}/nic/checkip")
    assert "found neither IPv4 nor IPv6 address" in out and "SUCCESS" not in out
    assert "badip" in out  # its update then names no address: the loopback source is refused too
    assert redis_snapshot(real_redis) == before
    assert "not a public address" in api.log_text()  # the operator learns why

    # use=web through a trusted reverse proxy: ddclient scrapes the client's public address
    with _Proxy(api.port, client="203.0.114.6") as proxy:
        out = _ddclient(api, tmp_path, "web", f"use=web, web=http://127.0.0.1:{proxy.port}/nic/checkip")
    assert "Current IP Address: 203.0.114.6" in out, out
    assert "SUCCESS:  updating home.dyn.example.net: good: IP address set to 203.0.114.6" in out
    assert real_redis.hget(keys.account(account.id), "ipv4") == "203.0.114.6"

    # use=ip: the address as the operator configures it; pdns then answers it
    out = _ddclient(api, tmp_path, "ip", "use=ip, ip=203.0.114.7")
    assert "good: IP address set to 203.0.114.7" in out
    assert real_redis.hget(keys.account(account.id), "ipv4") == "203.0.114.7"
    pdns.wait_answer(HOST, "A", {"203.0.114.7"})

    # a forced resend of the same address is nochg, and still refreshes the expiry plan's liveness
    real_redis.pexpire(keys.alive(account.id), 2000)
    out = _ddclient(api, tmp_path, "ip", "use=ip, ip=203.0.114.7", "-force")
    assert "nochg" in out and "FAILED" not in out
    assert real_redis.pttl(keys.alive(account.id)) > 1_700_000  # business-c: 30 minutes
    assert "ddclient/3" in api.log_text()  # the update was logged, with the client's agent...
    assert PW not in api.log_text()  # ...and never its password


def test_ddclient_reports_a_wrong_password(
    store: Store, real_redis: redis.Redis, update_api: Callable[..., UpdateApiServer], tmp_path: Path
) -> None:
    account = _account(store)
    api = update_api()
    conf = tmp_path / "bad.conf"
    conf.write_text(
        f"daemon=0\nssl=no\nprotocol=dyndns2\nuse=ip, ip=203.0.114.8\nserver=127.0.0.1:{api.port}\n"
        f"login={HOST}\npassword='wrong'\n{HOST}\n"
    )
    conf.chmod(0o600)
    proc = subprocess.run(
        [which("ddclient"), "-foreground", "-file", str(conf), "-cache", str(tmp_path / "bad.cache"), "-daemon=0"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "authorization failed" in proc.stdout + proc.stderr
    assert not real_redis.hgetall(keys.account(account.id)).get("ipv4")  # no address yet


def _curl(*args: str) -> tuple[int, str]:
    curl = shutil.which("curl") or which("curl")
    proc = subprocess.run(
        [curl, "-s", "-o", "-", "-w", "\n%{http_code}", *args], capture_output=True, text=True, timeout=30
    )
    body, _, code = proc.stdout.rpartition("\n")
    return int(code), body


def test_router_style_curl_calls(
    store: Store, real_redis: redis.Redis, update_api: Callable[..., UpdateApiServer]
) -> None:
    account = _account(store)
    api = update_api()
    # FRITZ!Box: update URL .../nic/update?hostname=<domain>&myip=<ipaddr>,<ip6addr> with user/password
    code, body = _curl(
        "-u",
        f"{HOST}:{PW}",
        "-A",
        "Fritz!Box DDNS/1.0.1",
        f"{api.url}/nic/update?hostname={HOST}&myip=203.0.114.9,2001:db9::9",
    )
    assert (code, body) == (200, "good 203.0.114.9,2001:db9::9\n")
    state = real_redis.hgetall(keys.account(account.id))
    assert (state["ipv4"], state["ipv6"], state["state"]) == ("203.0.114.9", "2001:db9::9", "live")

    # routers that cannot do Basic auth put the credentials in the query (and send no agent at all)
    code, body = _curl(
        "-H",
        "User-Agent:",
        "--get",
        "--data-urlencode",
        f"hostname={HOST}",
        "--data-urlencode",
        "myip=2001:db9::9,203.0.114.10",
        "--data-urlencode",
        f"username={account.id}",
        "--data-urlencode",
        f"password={PW}",
        f"{api.url}/nic/update",
    )
    assert (code, body) == (200, "good 203.0.114.10,2001:db9::9\n")

    code, body = _curl("-u", f"{HOST}:nope", f"{api.url}/v3/update?hostname={HOST}&myip=203.0.114.11")
    assert (code, body) == (401, "badauth\n")
    assert real_redis.hget(keys.account(account.id), "ipv4") == "203.0.114.10"

    code, body = _curl(f"{api.url}/nic/checkip")  # from loopback: no address reported
    assert code == 503 and "Current IP Address: unknown" in body and "127.0.0.1" not in body


def test_inadyn_publishes_nothing_when_checkip_sees_no_public_address(tmp_path: Path) -> None:
    """Debian's inadyn 2.10 in a network namespace of its own (nothing but loopback), with the update
    API beside it and Redis reached through a unix socket: checkip from loopback answers 503, inadyn
    calls that "Check IP server response not OK" and falls back to its built-in server (which it
    cannot resolve here). Its forced update then names no address, the source rule answers badip,
    and nothing is written."""
    redis_server = RedisServer(tmp_path / "redis", unix_socket=True).start()
    netns = Process(["unshare", "--net", "sh", "-c", "ip link set lo up && exec sleep 600"], tmp_path / "netns.log")
    api_process: Process | None = None
    try:
        store = Store(redis.Redis.from_url(redis_server.url, decode_responses=True), config.load({}))
        _account(store)
        enter = ["nsenter", f"--net=/proc/{netns.pid}/ns/net"]
        wait_for(lambda: "UP" in _run([*enter, "ip", "link", "show", "lo"]), 10, what="loopback up in the netns")
        api = UpdateApiServer(tmp_path / "api", redis_server.unix_url)
        api_process = Process(
            [*enter, sys.executable, "-m", "update_api.main"], tmp_path / "api.log", env=api.env(), cwd=str(REPO)
        )
        wait_for(lambda: "update API listening" in api_process.log_text(), 30, what="the update API in the netns")
        before = redis_snapshot(store.r)
        conf = tmp_path / "inadyn.conf"
        conf.write_text(
            f"""period = 60
custom hbdns {{
    ssl            = false
    checkip-ssl    = false
    username       = {HOST}
    password       = "{PW}"
    checkip-server = 127.0.0.1:{api.port}
    checkip-path   = /nic/checkip
    ddns-server    = 127.0.0.1:{api.port}
    ddns-path      = "/nic/update?hostname=%h&myip=%i"
    ddns-response  = {{ good, nochg }}
    hostname       = {HOST}
}}
"""
        )
        conf.chmod(0o600)
        argv = [*enter, which("inadyn"), "-1", "-n", "-l", "debug", "-f", str(conf), "-P", str(tmp_path / "pid")]
        proc = subprocess.run(
            [*argv, "--cache-dir", str(tmp_path / "cache")], capture_output=True, text=True, timeout=60
        )
        out = proc.stdout + proc.stderr
        assert "503" in out and "Check IP server response not OK" in out, out
        assert "Current IP#" not in out  # no address was taken from the page
        assert "badip" in out  # the forced update without an address: the source rule refused it
        assert redis_snapshot(store.r) == before
        assert "not a public address" in api_process.log_text()
    finally:
        if api_process is not None:
            api_process.stop()
        netns.stop()
        redis_server.stop()


def _run(argv: list[str]) -> str:
    return subprocess.run(argv, capture_output=True, text=True, timeout=10).stdout
