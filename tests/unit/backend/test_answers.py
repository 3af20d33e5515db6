"""Pure record building: zone parsing, content forms pdns accepts, deploy config promises."""

from __future__ import annotations

import json

import pytest

from hbdns import config
from pdns_backend import answers
from tests.support.pdns import DEPLOY_CONF, deploy_settings


def raw_zone(**over: str | None) -> list[str | None]:
    base: dict[str, str | None] = {
        "serial": "7",
        "ns": json.dumps(["ns1.example.net."]),
        "hostmaster": "hostmaster@example.net",
        "refresh": "100",
        "retry": "20",
        "expire": "3000",
        "minimum": "30",
        "soa_ttl": "60",
        "ns_ttl": "3600",
        "records": json.dumps(
            [{"name": "Alias.Example.com.", "type": "cname", "content": "host.example.net.", "ttl": 9}]
        ),
        "neutral_ipv4": "192.0.2.1",
        "neutral_ipv6": "",
        "backup_mx": "mx.backup.example.net.",
        "backup_mx_pref": "40",
    }
    base.update(over)
    return [base[f] for f in answers.ZONE_FIELDS]


def test_parse_zone_builds_soa_ns_and_static() -> None:
    z = answers.parse_zone("example.com", raw_zone())
    assert z is not None
    assert z.soa["content"] == "ns1.example.net hostmaster.example.net 7 100 20 3000 30"
    assert z.soa["qname"] == "example.com." and z.soa["domain_id"] == answers.zone_id("example.com")
    assert [r["content"] for r in z.apex_records if r["qtype"] == "NS"] == ["ns1.example.net"]
    assert z.static["alias.example.com"][0] == answers.row("alias.example.com.", "CNAME", "host.example.net", 9, z.id)
    assert z.backup_mx == "mx.backup.example.net"


def test_parse_zone_gone_hash_is_none() -> None:
    assert answers.parse_zone("example.com", [None] * len(answers.ZONE_FIELDS)) is None


def test_dotted_hostmaster_local_part_is_escaped() -> None:
    z = answers.parse_zone("example.com", raw_zone(hostmaster="dns.admin@example.net"))
    assert z is not None and z.soa["content"].split()[1] == "dns\\.admin.example.net"


@pytest.mark.parametrize(
    ("qtype", "content", "expected"),
    [
        ("MX", "10 mail.example.com.", "10 mail.example.com"),
        ("CNAME", "target.example.com.", "target.example.com"),
        ("SRV", "0 5 5060 sip.example.com.", "0 5 5060 sip.example.com"),
        ("TXT", '"ends with a dot."', '"ends with a dot."'),
        ("A", "192.0.2.1", "192.0.2.1"),
    ],
)
def test_content_for_drops_trailing_dot_of_names(qtype: str, content: str, expected: str) -> None:
    assert answers.content_for(qtype, content) == expected


def test_zone_id_is_stable_positive_31_bit() -> None:
    ids = {answers.zone_id(f"zone{i}.example") for i in range(1000)}
    assert len(ids) == 1000
    assert all(0 < i < 2**31 for i in ids)
    assert answers.zone_id("example.com") == answers.zone_id("example.com")


def test_deploy_pdns_conf_keeps_staleness_small() -> None:
    conf = deploy_settings(DEPLOY_CONF)
    assert conf["launch"] == "remote"
    assert "include-dir" not in conf  # Debian's pdns.d/bind.conf would add launch+=bind
    assert int(conf["cache-ttl"]) <= 2
    assert int(conf["query-cache-ttl"]) <= 1
    assert int(conf["negquery-cache-ttl"]) <= 5
    assert int(conf["cache-ttl"]) + int(conf["query-cache-ttl"]) <= 2
    assert conf["webserver-address"] in ("127.0.0.1", "::1") and conf["api"] == "yes"
    timeout = dict(kv.split("=", 1) for kv in conf["remote-connection-string"].split(":", 1)[1].split(","))["timeout"]
    assert int(timeout) >= 1000
    assert conf["remote-connection-string"].startswith("unix:path=/run/")  # Debian's unit has PrivateTmp


def test_deploy_runs_several_backend_connections() -> None:
    conf = deploy_settings(DEPLOY_CONF)
    assert int(conf.get("receiver-threads", 1)) * int(conf["distributor-threads"]) >= 8
    assert config.load({}).backend_threads >= 4


def test_result_json_matches_json_dumps() -> None:
    records = [
        answers.row("h.example.com.", "A", "192.0.2.1", 5, 7),
        answers.row("example.com.", "TXT", '"quoted \\ text" ü', 300, 7),
    ]
    results: list[object] = [records, False, True, [], {}, [{"id": 1, "zone": "example.com."}]]
    for result in results:
        assert json.loads(answers.result_json(result)) == {"result": result}
