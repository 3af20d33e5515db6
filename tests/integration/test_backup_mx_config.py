"""deploy/postfix/ checked by Debian's Postfix without starting a daemon: ``postfix check`` and
``postconf -n`` find nothing to warn about, the settings issue 13 asks for are there, and Postfix's
own table client (``postmap -q``) reads the answers of hbdns-backup-mx-maps from a real Redis."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from backup_mx.maps import RECIPIENTS_FIELD, MxMaps
from backup_mx.server import MapServer
from hbdns import keys
from hbdns.model import Zone
from hbdns.store import Store
from tests.support.postfix import DEPLOY, Postfix, check_config, mail_root, parse_main, render_main

ZONE = "dyn.example.test"
HOME = f"home.{ZONE}"
BASE = (DEPLOY / "main.cf").read_text()
SETTINGS = parse_main(BASE)


@pytest.fixture
def root() -> Iterator[Path]:
    path = mail_root()
    yield path
    subprocess.run(["rm", "-rf", str(path)], check=False)


def _local_paths(root: Path) -> dict[str, str]:
    """The deploy config with its /etc/postfix tables moved into the test's config dir."""
    etrn = SETTINGS["smtpd_etrn_restrictions"].replace("/etc/postfix/", f"{root}/check/etc/")
    return {"smtpd_etrn_restrictions": etrn}


def test_deploy_config_passes_postfix_check(root: Path) -> None:
    rc, problems = check_config(root, BASE, _local_paths(root))
    assert rc == 0, problems
    assert problems == ""


def test_the_check_catches_bad_lines(root: Path) -> None:
    """A bad value fails ``postfix check``; a misspelt name is an "unused parameter" warning."""
    rc, problems = check_config(root, BASE, {"soft_bounce": "maybe", "smtpd_etrn_restriction": "reject"})
    assert rc != 0
    assert "unused parameter: smtpd_etrn_restriction=reject" in problems


def test_issue_13_settings_are_present() -> None:
    s = SETTINGS
    assert s["fast_flush_domains"] == "$relay_domains"
    assert s["relay_domains"].startswith("socketmap:inet:127.0.0.1:")
    assert s["smtpd_etrn_restrictions"] == "check_client_access cidr:/etc/postfix/hbdns_etrn_clients, reject"
    days = re.fullmatch(r"(\d+)d", s["maximal_queue_lifetime"])
    assert days and int(days.group(1)) >= 10
    assert s["soft_bounce"] == "no"
    assert "#proxy_interfaces = " in BASE  # documented for NAT, set per site
    assert s["mydestination"] == ""
    assert s["address_verify_map"].startswith("btree:")  # persistent verification cache
    assert s["unverified_recipient_reject_code"] == "550"
    assert "recipient" in s["smtpd_recipient_restrictions"]
    assert s["smtpd_relay_restrictions"].endswith("reject_unauth_destination")


def test_etrn_clients_table_allows_only_hbdns(root: Path) -> None:
    pf = Postfix(root, "cidr", {}, base=BASE).write()
    table = f"cidr:{DEPLOY / 'hbdns_etrn_clients'}"
    assert pf.postmap_query("127.0.0.1", table).stdout.strip() == "OK"
    assert pf.postmap_query("::1", table).stdout.strip() == "OK"
    assert pf.postmap_query("127.0.0.30", table).returncode == 1  # not found: the list ends in reject
    assert pf.postmap_query("198.51.100.53", table).returncode == 1


def test_render_replaces_values_in_place_and_appends_the_rest() -> None:
    text = "a = 1\n# a = x\nb = 2\n   continued\nc = 3\n"
    assert render_main(text, {"b": "9", "d": "4"}) == "a = 1\n# a = x\nb = 9\nc = 3\nd = 4\n"


@pytest.fixture
def maps_server(store: Store) -> Iterator[MapServer]:
    server = MapServer(MxMaps(store.r).answer, host="127.0.0.1", port=0).start()
    yield server
    server.stop()


def test_postfix_reads_the_live_tables(store: Store, maps_server: MapServer, root: Path) -> None:
    store.add_zone(Zone(apex=ZONE, ns=("ns1.example.test",), hostmaster="h.example.test", neutral_ipv4="192.0.2.1"))
    acct = store.add_account(store.new_account(HOME, "heartbeat-c", mx=True, aliases=[f"alias.{ZONE}"]))
    store.r.hset(keys.account(acct.id), RECIPIENTS_FIELD, json.dumps(["alice"]))
    pf = Postfix(root, "maps", {}, base=render_main(BASE, {})).write()
    port = str(maps_server.port)

    def table(param: str) -> str:
        value = pf.postconf("-h", param).strip()
        return value.split()[-1].replace(":8026:", f":{port}:")

    def query(key: str, param: str) -> tuple[int, str]:
        done = pf.postmap_query(key, table(param))
        return done.returncode, done.stdout.strip()

    assert query(f"alias.{ZONE}", "relay_domains") == (0, f"alias.{ZONE}")
    assert query("example.org", "relay_domains") == (1, "")
    assert query(f"bob@alias.{ZONE}", "transport_maps") == (0, f"relay:[{HOME}]")
    assert query(f"alice@{HOME}", "smtpd_recipient_restrictions") == (0, "DUNNO")
    assert query(f"bob@{HOME}", "smtpd_recipient_restrictions") == (0, "550 5.1.1 User unknown")
    store.remove_account(acct.id)  # live: the next lookup sees it
    assert query(f"alias.{ZONE}", "relay_domains") == (1, "")
    assert maps_server.lookups == 6


def test_a_redis_failure_is_a_temporary_lookup_error_for_postfix(root: Path) -> None:
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    pf = Postfix(root, "dead", {}, base=BASE).write()
    dead = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.5, retry=Retry(NoBackoff(), 0))
    server = MapServer(MxMaps(dead).answer, host="127.0.0.1", port=0).start()
    try:
        done = pf.postmap_query(HOME, f"socketmap:inet:127.0.0.1:{server.port}:domains")
    finally:
        server.stop()
    # a query error, not "not found" (smtpd answers it with 451 4.3.0, so the sender retries)
    assert done.returncode != 0 and "query error" in done.stderr, done.stderr
    assert "hbdns account lookup failed" in done.stderr
