"""ACME DNS-01 end to end: certificates from a real ACME server (Debian's pebble, validating through
the test pdns) for an account's names, with Debian's lego setting the challenge values through the
update API: lego's httpreq provider, and the acme-dns protocol spoken by pyacmedns from a lego exec
hook (Debian builds lego without its acme-dns provider). Credentials come from the CLI, as an
operator makes them."""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dns.rcode
import pytest
import redis

from admin.cli.main import main as cli
from hbdns import config, keys
from hbdns.connection import connect
from hbdns.model import Zone
from hbdns.store import Store
from tests.support.acme import Pebble, acme_dns_hook, lego
from tests.support.pdns import PdnsServer, answer_texts, started_pdns, stop_all
from tests.support.servers import RedisServer, wait_for
from tests.support.update_api import UpdateApiServer, redis_snapshot

ZONE = "dyn.acme.test"
HOME = f"home.{ZONE}"
OTHER = f"other.{ZONE}"
VALUE_TTL = 20  # seconds a value lives: the acme-dns test waits for it to go


@dataclass
class World:
    r: redis.Redis
    pdns: PdnsServer
    api: UpdateApiServer
    pebble: Pebble
    env: dict[str, str]

    def credentials(self, name: str) -> dict[str, Any]:
        """``hbdns account acme-credentials NAME --json``, as the operator runs it."""
        out = io.StringIO()
        with contextlib.redirect_stdout(out), _environ(self.env):
            assert cli(["--json", "account", "acme-credentials", name], redis_client=self.r) == 0
        issued: dict[str, Any] = json.loads(out.getvalue())
        return issued

    def txt(self, name: str) -> set[str]:
        """The challenge values pdns answers for ``name`` now (raises on SERVFAIL)."""
        qname = f"_acme-challenge.{name}"
        msg = self.pdns.query(qname, "TXT")
        assert msg.rcode() in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN)
        return answer_texts(msg, qname, "TXT")


@contextlib.contextmanager
def _environ(env: dict[str, str]) -> Iterator[None]:
    import os

    old = dict(os.environ)
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(old)


@pytest.fixture(scope="module")
def world(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    work = Path(tmp_path_factory.mktemp("acme"))
    r = connect(redis_server.url)
    r.flushall()
    store = Store(r, config.load({}))
    store.add_zone(Zone(ZONE, (f"ns1.{ZONE}",), f"hostmaster.{ZONE}", "192.0.2.1"))
    for name in (HOME, OTHER):
        store.add_account(store.new_account(name, "setip-a", wildcard=True))
    pdns = started_pdns(work / "pdns", redis_server.url)
    api = pebble = None
    try:
        api = UpdateApiServer(
            work / "api", redis_server.url, {**pdns.writer_env, "HBDNS_ACME_VALUE_TTL": str(VALUE_TTL)}
        )
        api.start()
        pebble = Pebble(work / "pebble", pdns.port).start()
        env = {"HBDNS_REDIS_URL": redis_server.url, "HBDNS_UPDATE_PORT": str(api.port), **pdns.writer_env}
        yield World(r, pdns, api, pebble, env)
    finally:
        for proc in (pebble, api):
            if proc is not None:
                proc.stop()
        stop_all(pdns)
        r.close()


def _httpreq_env(issued: dict[str, Any]) -> dict[str, str]:
    h = issued["httpreq"]
    return {
        "HTTPREQ_ENDPOINT": h["endpoint"],
        "HTTPREQ_USERNAME": h["username"],
        "HTTPREQ_PASSWORD": h["password"],
        "HTTPREQ_POLLING_INTERVAL": "1",
        "HTTPREQ_PROPAGATION_TIMEOUT": "30",
    }


def _acme_dns_env(world: World, tmp_path: Path, storage: dict[str, Any]) -> dict[str, str]:
    path = tmp_path / "acmedns.json"
    path.write_text(json.dumps(storage))
    server_url = next(iter(storage.values()))["server_url"]
    return {
        "EXEC_PATH": str(acme_dns_hook(tmp_path, server_url, path)),
        "EXEC_POLLING_INTERVAL": "1",
        "EXEC_PROPAGATION_TIMEOUT": "30",
        "EXEC_SEQUENCE_INTERVAL": "1",
    }


def test_httpreq_certificates_for_the_name_and_name_plus_wildcard(world: World, tmp_path: Path) -> None:
    env = _httpreq_env(world.credentials(HOME))
    one = lego(tmp_path / "one", world.pebble, [HOME], "httpreq", env, resolver_port=world.pdns.port)
    assert one.returncode == 0, one.output[-3000:]
    assert one.sans() == {HOME}
    # name + *.name: lego presents both values before pebble validates either (two at once)
    both = lego(tmp_path / "both", world.pebble, [HOME, f"*.{HOME}"], "httpreq", env, resolver_port=world.pdns.port)
    assert both.returncode == 0, both.output[-3000:]
    assert both.sans() == {HOME, f"*.{HOME}"}
    # lego's cleanup removed them: pdns answers none, nothing is left in Redis
    assert world.txt(HOME) == set()
    assert world.r.zcard(keys.acme_txt(HOME)) == 0


def test_acme_dns_certificate_for_name_plus_wildcard_and_the_values_expire(world: World, tmp_path: Path) -> None:
    issued = world.credentials(HOME)
    run = lego(
        tmp_path,
        world.pebble,
        [HOME, f"*.{HOME}"],
        "exec",
        _acme_dns_env(world, tmp_path, issued["acme_dns"]),
        resolver_port=world.pdns.port,
    )
    assert run.returncode == 0, run.output[-3000:]
    assert run.sans() == {HOME, f"*.{HOME}"}
    # acme-dns clients never clean up: both values stay (the two newest) until they expire
    assert len(world.txt(HOME)) == 2
    wait_for(lambda: world.txt(HOME) == set(), VALUE_TTL + 10, interval=0.5, what="challenge values expired")
    wait_for(lambda: not world.r.exists(keys.acme_txt(HOME)), 5, what="challenge key gone from Redis")


def _data(r: redis.Redis) -> dict[str, Any]:
    """Everything but the rate limiters' buckets: those expire on their own (one of an earlier
    request can vanish mid-test) and a refused login is meant to charge them."""
    return {k: v for k, v in redis_snapshot(r).items() if not k.startswith(keys.ratelimit("", "")[:-1])}


def test_another_accounts_credentials_are_refused_and_write_nothing(world: World, tmp_path: Path) -> None:
    other = world.credentials(OTHER)
    home = world.credentials(HOME)
    before = _data(world.r)
    # httpreq: OTHER's credentials asked to set HOME's challenge
    run = lego(
        tmp_path / "httpreq", world.pebble, [HOME], "httpreq", _httpreq_env(other), resolver_port=world.pdns.port
    )
    assert run.returncode != 0 and "403" in run.output, run.output[-3000:]
    # acme-dns: OTHER's username and password with HOME's subdomain
    forged = {HOME: {**home["acme_dns"][HOME], **{k: other["acme_dns"][OTHER][k] for k in ("username", "password")}}}
    env = _acme_dns_env(world, tmp_path, forged)
    run = lego(tmp_path / "acme-dns", world.pebble, [HOME], "exec", env, resolver_port=world.pdns.port)
    assert run.returncode != 0 and "forbidden" in run.output, run.output[-3000:]
    assert _data(world.r) == before
    assert world.txt(HOME) == set() and world.txt(OTHER) == set()
