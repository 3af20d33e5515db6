"""Real redis-server + real backend + real pdns_server, queried with dnspython over UDP and TCP.

One pdns per transport for the module (its own Redis, so other tests' flushes cannot touch it; the
unix-connector backend reaches it over Redis' unix socket, the HTTP one over TCP);
tests that change state create their own accounts. The outage test gets its own Redis and pdns.
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.zone
import pytest
import redis

from hbdns import config, keys
from hbdns.connection import connect
from hbdns.liveness import BeatRequest
from hbdns.model import Account, Zone
from hbdns.purge import Purger
from hbdns.store import Store
from tests.support.pdns import BackendProcess, PdnsServer, answer_texts, started_pdns, stop_all
from tests.support.servers import RedisServer, wait_for
from tests.support.zones import APEX, EXAMPLE_ZONE

pytestmark = pytest.mark.pdns


@pytest.fixture(scope="module")
def module_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(Path(tmp_path_factory.mktemp("pdns-redis")), unix_socket=True).start()
    r = connect(server.url)
    store = Store(r, config.load({}))
    store.add_zone(EXAMPLE_ZONE)
    live = store.add_account(
        store.new_account("live.example.com", "heartbeat-c", aliases=["alias.example.com"], mx=True)
    )
    store.liveness.beat(BeatRequest(live.id, APEX, 3_600_000, ipv4="203.0.113.10", ipv6="2001:db8:10::10"))
    store.add_account(store.new_account("idle.example.com", "heartbeat-a", mx=True))
    store.add_account(store.new_account("mail.office.example.com", "heartbeat-a"))  # office.: a non-terminal
    store.add_account(store.new_account("wild.example.com", "heartbeat-a", mx=True, wildcard=True))
    store.add_account(store.new_account("own.wild.example.com", "heartbeat-a"))  # below the wildcard
    r.close()
    yield server
    server.stop()


@pytest.fixture(scope="module", params=["http", "unix"])
def pdns(
    request: pytest.FixtureRequest, module_redis: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PdnsServer]:
    # the unix-connector backend also reads Redis over its unix socket (the co-located deployment),
    # the http one over TCP: both raw-connection kinds answer every test below
    redis_url = module_redis.unix_url if request.param == "unix" else module_redis.url
    server = started_pdns(Path(tmp_path_factory.mktemp(f"pdns-{request.param}")), redis_url, request.param)
    yield server
    stop_all(server)


@pytest.fixture
def store(module_redis: RedisServer) -> Iterator[Store]:
    r = connect(module_redis.url)
    yield Store(r, config.load({}))
    r.close()


def new_account(store: Store, name: str, **kw: object) -> Account:
    """A per-test account, named per transport so the http and unix runs never share one."""
    return store.add_account(store.new_account(name, "heartbeat-c", **kw))  # type: ignore[arg-type]


def unique(pdns: PdnsServer, label: str) -> str:
    transport = pdns.backend_process.transport if pdns.backend_process else "x"
    return f"{label}-{transport}-{time.monotonic_ns() % 10**9}.{APEX}"


@pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])
def test_answers_live_and_neutral_accounts(pdns: PdnsServer, tcp: bool) -> None:
    def ans(name: str, rdtype: str) -> set[str]:
        msg = pdns.query(name, rdtype, tcp=tcp)
        assert msg.rcode() == dns.rcode.NOERROR
        assert msg.flags & dns.flags.AA
        return answer_texts(msg, name, rdtype)

    assert ans("live.example.com.", "A") == {"203.0.113.10"}
    assert ans("live.example.com.", "AAAA") == {"2001:db8:10::10"}
    assert ans("live.example.com.", "MX") == {"10 live.example.com.", "50 mx.backup.example.com."}
    assert ans("alias.example.com.", "A") == {"203.0.113.10"}
    assert ans("idle.example.com.", "A") == {"192.0.2.1"}
    assert ans("idle.example.com.", "AAAA") == {"2001:db8::1"}
    assert ans("idle.example.com.", "MX") == {"10 idle.example.com.", "50 mx.backup.example.com."}  # kept
    assert ans("mx.backup.example.com.", "A") == {"198.51.100.7"}
    assert ans("example.com.", "NS") == {"ns1.example.net.", "ns2.example.net."}
    soa = ans("example.com.", "SOA")
    assert len(soa) == 1 and next(iter(soa)).startswith("ns1.example.net. hostmaster.example.net. ")


def test_ttls_follow_plan(pdns: PdnsServer) -> None:
    msg = pdns.query("live.example.com.", "A")
    assert msg.answer[0].ttl == 3  # heartbeat-c
    msg = pdns.query("idle.example.com.", "A")
    assert msg.answer[0].ttl == 45  # heartbeat-a


def test_mixed_case_names(pdns: PdnsServer) -> None:
    msg = pdns.query("LiVe.ExAmPlE.cOm.", "A")
    assert msg.rcode() == dns.rcode.NOERROR
    assert {r.to_text() for rrset in msg.answer for r in rrset} == {"203.0.113.10"}


@pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])
def test_unknown_name_is_nxdomain_with_soa(pdns: PdnsServer, tcp: bool) -> None:
    msg = pdns.query("nothing-here.example.com.", "A", tcp=tcp)
    assert msg.rcode() == dns.rcode.NXDOMAIN
    assert [rrset.rdtype for rrset in msg.authority] == [dns.rdatatype.SOA]


def test_existing_name_other_type_is_nodata(pdns: PdnsServer) -> None:
    msg = pdns.query("idle.example.com.", "TXT")
    assert msg.rcode() == dns.rcode.NOERROR and not msg.answer


def test_foreign_zone_is_refused(pdns: PdnsServer) -> None:
    assert pdns.query("host.example.org.", "A").rcode() == dns.rcode.REFUSED


def test_neutral_addresses_and_the_same_mx_set_after_alive_key_expires(pdns: PdnsServer, store: Store) -> None:
    name = unique(pdns, "expiring")
    acct = new_account(store, name, mx=True)
    res = store.liveness.beat(BeatRequest(acct.id, APEX, 2500, ipv4="203.0.113.50"))  # alive key PX 2500
    assert res.accepted
    pdns.wait_answer(name, "A", {"203.0.113.50"}, timeout=10)
    pdns.wait_answer(name, "MX", {f"10 {name}.", "50 mx.backup.example.com."}, timeout=10)
    # nothing runs: the key expires on the real Redis and the next lookup flips
    pdns.wait_answer(name, "A", {"192.0.2.1"}, timeout=15)
    pdns.wait_answer(name, "MX", {f"10 {name}.", "50 mx.backup.example.com."}, timeout=10)
    pdns.wait_answer(name, "AAAA", {"2001:db8::1"}, timeout=10)
    assert not store.r.exists(keys.alive(acct.id))


def test_soa_serial_increases_after_change(pdns: PdnsServer, store: Store) -> None:
    def serial() -> int:
        msg = pdns.query("example.com.", "SOA")
        return int(msg.answer[0][0].serial)

    before = serial()
    name = unique(pdns, "serial")
    acct = new_account(store, name)
    store.liveness.beat(BeatRequest(acct.id, APEX, 60_000, ipv4="203.0.113.60"))
    assert store.zone_serial(APEX) > before
    wait_for(lambda: serial() > before, 10, interval=0.1, what="SOA serial to increase")


def test_purge_shows_a_change_at_once(pdns: PdnsServer, store: Store) -> None:
    name = unique(pdns, "purged")
    acct = new_account(store, name)
    pdns.wait_answer(name, "A", {"192.0.2.1"})
    store.liveness.beat(BeatRequest(acct.id, APEX, 60_000, ipv4="203.0.113.70"))
    purger = Purger([pdns.writer_env["HBDNS_PDNS_API_URLS"]], pdns.writer_env["HBDNS_PDNS_API_KEY"])
    assert purger.flush_now(name)
    assert answer_texts(pdns.query(name, "A"), name, "A") == {"203.0.113.70"}


def test_new_zone_is_served_after_rediscover(pdns: PdnsServer, store: Store) -> None:
    transport = pdns.backend_process.transport if pdns.backend_process else "x"
    apex = f"new-{transport}.test"
    store.add_zone(Zone(apex=apex, ns=(f"ns1.{apex}",), hostmaster=f"h.{apex}", neutral_ipv4="192.0.2.77"))
    store.add_account(store.new_account(f"host.{apex}", "heartbeat-c"))
    assert pdns.query(f"host.{apex}.", "A").rcode() == dns.rcode.REFUSED  # not in pdns' zone cache yet
    code, out = pdns.control("rediscover")
    assert code == 0, out
    pdns.wait_answer(f"host.{apex}.", "A", {"192.0.2.77"}, timeout=10)


@pytest.mark.parametrize("name", ["office.example.com.", "backup.example.com."])  # above an account, a record
def test_empty_non_terminals_are_nodata_with_soa(pdns: PdnsServer, name: str) -> None:
    for rdtype in ("A", "TXT", "ANY"):
        msg = pdns.query(name, rdtype, tcp=rdtype == "ANY")  # pdns answers ANY over UDP truncated
        assert (msg.rcode(), msg.answer) == (dns.rcode.NOERROR, []), (rdtype, msg)
        assert [rrset.rdtype for rrset in msg.authority] == [dns.rdatatype.SOA]
    assert pdns.query("x." + name, "A").rcode() == dns.rcode.NXDOMAIN


def test_wildcard_answers_what_the_account_answers_and_nothing_that_exists(pdns: PdnsServer) -> None:
    for name in ("www.wild.example.com.", "a.b.wild.example.com.", "WwW.Wild.example.com."):
        assert answer_texts(pdns.query(name, "A"), name, "A") == {"192.0.2.1"}  # neutral, like wild.
        # the MX set is kept while neutral (issue 13), so the wildcard's is too; the target's case
        # on the wire is the query's where pdns compresses it into the question (README)
        mx = {t.lower() for t in answer_texts(pdns.query(name, "MX"), name, "MX")}
        assert mx == {"10 wild.example.com.", "50 mx.backup.example.com."}
    assert answer_texts(pdns.query("own.wild.example.com.", "MX"), "own.wild.example.com.", "MX") == set()
    assert pdns.query("x.own.wild.example.com.", "A").rcode() == dns.rcode.NXDOMAIN  # below another account


def test_pdnsutil_check_zone_is_clean(pdns: PdnsServer) -> None:
    code, out = pdns.pdnsutil("check-zone", APEX)
    assert code == 0, out
    assert "0 errors, 0 warnings" in out, out


def test_axfr_lists_the_records(pdns: PdnsServer) -> None:
    xfr = dns.query.xfr("127.0.0.1", APEX, port=pdns.port, timeout=10, relativize=False)
    zone = dns.zone.from_xfr(xfr, relativize=False)
    records = {
        (str(name), dns.rdatatype.to_text(rds.rdtype), rd.to_text())
        for name, rds in zone.iterate_rdatasets()
        for rd in rds
    }
    assert [r[0] for r in records if r[1] == "SOA"] == ["example.com."]
    assert {
        ("example.com.", "NS", "ns1.example.net."),
        ("example.com.", "NS", "ns2.example.net."),
        ("live.example.com.", "A", "203.0.113.10"),
        ("live.example.com.", "AAAA", "2001:db8:10::10"),
        ("live.example.com.", "MX", "10 live.example.com."),
        ("live.example.com.", "MX", "50 mx.backup.example.com."),
        ("alias.example.com.", "A", "203.0.113.10"),
        ("idle.example.com.", "A", "192.0.2.1"),
        ("idle.example.com.", "MX", "10 idle.example.com."),
        ("idle.example.com.", "MX", "50 mx.backup.example.com."),
        ("mx.backup.example.com.", "A", "198.51.100.7"),
        ("*.wild.example.com.", "A", "192.0.2.1"),
        ("*.wild.example.com.", "MX", "50 mx.backup.example.com."),
    } <= records
    assert not {n for n, *_ in records} & {"office.example.com.", "backup.example.com."}  # ENTs: implied


@pytest.mark.parametrize("transport", ["http", "unix"])
def test_servfail_while_redis_down_then_correct_again(tmp_path: Path, transport: str) -> None:
    rs = RedisServer(tmp_path / "redis", persist=True).start()
    pdns: PdnsServer | None = None
    try:
        r = connect(rs.url)
        store = Store(r, config.load({}))
        store.add_zone(EXAMPLE_ZONE)
        acct = store.add_account(store.new_account("host.example.com", "heartbeat-c"))
        store.liveness.beat(BeatRequest(acct.id, APEX, 3_600_000, ipv4="203.0.113.80"))
        r.close()
        pdns = started_pdns(tmp_path, rs.url, transport)
        pdns.wait_answer("host.example.com.", "A", {"203.0.113.80"})

        rs.stop()
        seen: list[str] = []

        def servfail(qname: str) -> bool:
            rcode = pdns.query(qname, "A").rcode()
            seen.append(dns.rcode.to_text(rcode))
            return rcode == dns.rcode.SERVFAIL

        wait_for(lambda: servfail("host.example.com."), 15, interval=0.1, what="SERVFAIL while redis is down")
        assert servfail("other.example.com.")  # an uncached name too, never a (cacheable) NXDOMAIN
        assert "NXDOMAIN" not in seen

        rs.start()  # same port, data from its append-only file
        pdns.wait_answer("host.example.com.", "A", {"203.0.113.80"}, timeout=20)
        assert pdns.query("other.example.com.", "A").rcode() == dns.rcode.NXDOMAIN
        assert pdns.backend_process is not None
        log = pdns.backend_process.log_text()
        incidents = [json.loads(line) for line in log.splitlines() if "redis unavailable" in line]
        assert len(incidents) == 1, log[-3000:]
        assert "redis reachable again" in log
    finally:
        if pdns is not None:
            stop_all(pdns)
        rs.stop()


def test_lookups_work_while_redis_refuses_writes(tmp_path: Path) -> None:
    """At maxmemory (noeviction) Redis refuses writes; the read-only lookup scripts must still run."""
    rs = RedisServer(tmp_path / "redis").start()
    backend = BackendProcess(tmp_path / "backend", rs.url)
    try:
        r = connect(rs.url)
        store = Store(r, config.load({}))
        store.add_zone(EXAMPLE_ZONE)
        acct = store.add_account(store.new_account("host.example.com", "heartbeat-c"))
        store.liveness.beat(BeatRequest(acct.id, APEX, 3_600_000, ipv4="203.0.113.90"))
        r.config_set("maxmemory-policy", "noeviction")
        r.config_set("maxmemory", "1")
        with pytest.raises(redis.exceptions.ResponseError, match="maxmemory"):
            r.set("probe", "x")
        backend.start()  # zone cache and account script load while Redis refuses writes
        for path in ("/dnsapi/lookup/host.example.com./ANY", "/dnsapi/lookup/example.com./SOA"):
            with urllib.request.urlopen(backend.url + path, timeout=5) as resp:
                assert resp.status == 200
                result = json.loads(resp.read())["result"]
            assert result, path
        assert result[0]["qtype"] == "SOA"
        r.config_set("maxmemory", "0")
        r.close()
    finally:
        backend.stop()
        rs.stop()


def test_pdns_factory_fixture(pdns_factory: Callable[..., PdnsServer], real_redis: redis.Redis) -> None:
    """The shared fixture others use: session Redis, zones first, then pdns; purge settings exposed."""
    s = Store(real_redis, config.load({}))
    s.add_zone(EXAMPLE_ZONE)
    s.add_account(s.new_account("fixture.example.com", "heartbeat-b"))
    for transport in ("http", "unix"):
        pdns = pdns_factory(transport)
        assert answer_texts(pdns.query("fixture.example.com.", "A"), "fixture.example.com.", "A") == {"192.0.2.1"}
        assert set(pdns.writer_env) == {"HBDNS_PDNS_API_URLS", "HBDNS_PDNS_API_KEY"}
        assert pdns.purge("fixture.example.com") >= 0
