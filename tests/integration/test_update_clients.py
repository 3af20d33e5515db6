"""Stock dyndns2 clients against the real update API process: Debian's ddclient (then pdns answers the
new address) and a plain curl call as routers make it."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from hbdns import keys
from hbdns.model import Account, Zone
from hbdns.store import Store
from tests.support.pdns import PdnsServer
from tests.support.servers import which
from tests.support.update_api import UpdateApiServer

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
    api = update_api(pdns.writer_env)

    # use=web: ddclient scrapes our checkip page (it sees the loopback address) and sends it as myip
    out = _ddclient(api, tmp_path, "web", f"use=web, web={api.url}/nic/checkip")
    assert "Current IP Address: 127.0.0.1" in out
    assert "SUCCESS:  updating home.dyn.example.net: good: IP address set to 127.0.0.1" in out
    assert real_redis.hget(keys.account(account.id), "ipv4") == "127.0.0.1"

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

    code, body = _curl(f"{api.url}/nic/checkip")
    assert code == 200 and "Current IP Address: 127.0.0.1" in body
