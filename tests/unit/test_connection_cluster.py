"""The redis+cluster:// form: parsing, refusals, redaction, and what reaches the node clients
(no server needed: the router asks for its slot map only when first used)."""

from __future__ import annotations

import pytest
import redis

from hbdns import config
from hbdns.cluster_route import SLOTS, ClusterRouter, parse_shards, parse_slots, slot
from hbdns.connection import (
    DEFAULTS,
    ClusterUrl,
    RedisUrlError,
    check,
    cluster_node_kwargs,
    is_cluster_url,
    parse_cluster,
    redact,
)


def test_the_full_cluster_form() -> None:
    url = (
        "rediss+cluster://app:s%40cret@n1.example:7000,[2001:db8::5]:7001,n3/0"
        "?ssl_ca_certs=/etc/ca.pem&ssl_cert_reqs=optional&ssl_check_hostname=no"
    )
    assert parse_cluster(url) == ClusterUrl(
        nodes=(("n1.example", 7000), ("2001:db8::5", 7001), ("n3", 6379)),
        username="app",
        password="s@cret",
        ssl=True,
        ssl_options=(("ssl_ca_certs", "/etc/ca.pem"), ("ssl_cert_reqs", "optional"), ("ssl_check_hostname", False)),
    )
    assert is_cluster_url(url) and is_cluster_url("redis+cluster://a") and not is_cluster_url("redis://a")


def test_the_short_cluster_forms() -> None:
    assert parse_cluster("redis+cluster://127.0.0.1") == ClusterUrl(nodes=(("127.0.0.1", 6379),))
    assert parse_cluster("redis+cluster://:pw@a:1/").password == "pw"
    assert parse_cluster("redis+cluster://a:1?ssl=yes").ssl
    assert not parse_cluster("rediss+cluster://a:1?ssl=no").ssl
    assert check("redis+cluster://a:7000,b:7001") == "redis+cluster://a:7000,b:7001"


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("redis+cluster://", "empty cluster node address"),
        ("redis+cluster://a:7000,,b", "empty cluster node address"),
        ("redis+cluster://:7000", "cluster node address without a host"),
        ("redis+cluster://a:x", "cluster node port is not a number"),
        ("redis+cluster://a:0", "1..65535"),
        ("redis+cluster://[::1:7000", "bad IPv6 cluster node address"),
        ("redis+cluster://a/1", "only db 0"),
        ("redis+cluster://a/mymaster/0", "only db 0"),
        ("redis+cluster://a?role=replica", "unknown option 'role'"),
        ("redis+cluster://a?sentinel_password=x", "unknown option 'sentinel_password'"),
        ("redis+cluster://a?ssl=maybe", "ssl: expected yes or no"),
        ("redis+cluster://a?ssl=yes&ssl=no", "given twice"),
        ("redis+cluster://a?ssl_cert_reqs=some", "ssl_cert_reqs"),
        ("redis+cluster://a?ssl", "malformed query string"),
    ],
)
def test_bad_cluster_urls_are_refused_with_a_reason(url: str, says: str) -> None:
    with pytest.raises(RedisUrlError, match=says.replace("[", r"\[").replace("(", r"\(")):
        check(url)


def test_cluster_passwords_are_redacted_and_never_in_errors() -> None:
    assert redact("redis+cluster://app:pw@a:1,b:2?ssl=yes") == "redis+cluster://app:***@a:1,b:2?ssl=yes"
    assert redact("rediss+cluster://:pw@a:1/0") == "rediss+cluster://:***@a:1/0"
    assert redact("redis://:pa?ss/x@h:1/0") == "redis://:***@h:1/0"  # an unescaped "?" stays secret
    assert redact("redis+sentinel://a?sentinel_password=sp") == "redis+sentinel://a?sentinel_password=***"
    with pytest.raises(config.ConfigError) as err:
        config.load({"HBDNS_REDIS_URL": "redis+cluster://u:topsecret@a:1/5"})
    assert "only db 0" in str(err.value) and "topsecret" not in str(err.value)
    assert config.load({"HBDNS_REDIS_URL": "redis+cluster://a:1"}).wait_replicas() == 0


def test_node_clients_get_the_login_tls_and_timeouts() -> None:
    target = parse_cluster("rediss+cluster://app:pw@127.0.0.1:1?ssl_ca_certs=/etc/ca.pem")
    kw = cluster_node_kwargs(target, dict(DEFAULTS, socket_timeout=0.5))
    assert (kw["username"], kw["password"], kw["ssl"], kw["ssl_ca_certs"], kw["socket_timeout"]) == (
        "app",
        "pw",
        True,
        "/etc/ca.pem",
        0.5,
    )
    assert "health_check_interval" not in kw  # a raw pipeline must not get a PING between replies
    router = ClusterRouter.from_url("rediss+cluster://app:pw@127.0.0.1:1,127.0.0.1:2", socket_timeout=0.5)
    assert router.seeds == (("127.0.0.1", 1), ("127.0.0.1", 2)) and router.tls and router.refreshes == 0
    pool = router._client(("127.0.0.1", 1)).connection_pool
    assert pool.connection_class is redis.SSLConnection
    assert (pool.connection_kwargs["password"], pool.connection_kwargs["socket_timeout"]) == ("pw", 0.5)
    with pytest.raises(RedisUrlError):
        ClusterRouter.from_url("redis://127.0.0.1:1/0")
    with pytest.raises(ValueError, match="at least one node"):
        ClusterRouter((), {})


def test_slot_follows_the_hash_tag_rules() -> None:
    assert slot("123456789") == 0x31C3  # the spec's CRC16 check value
    assert slot("{user1000}.following") == slot("{user1000}.followers") == slot("user1000")
    assert slot("foo{}{bar}") == slot(b"foo{}{bar}")  # empty first tag: the whole key
    assert slot("foo{{bar}}zap") == slot("{bar")
    assert slot("foo{bar}{zap}") == slot("bar")
    assert all(0 <= slot(f"k{i}") < SLOTS for i in range(1000))


def test_slot_map_replies_of_both_protocols_and_both_commands() -> None:
    node = ["id", "x", "port", 7001, "tls-port", 7101, "endpoint", "?", "role", "master", "health", "online"]
    replica = ["id", "y", "port", 7002, "endpoint", "10.0.0.2", "role", "replica", "health", "online"]
    resp2 = [["slots", [0, 10, 20, 16383], "nodes", [replica, node]]]
    owners = parse_shards(resp2, ("127.0.0.5", 7000))
    assert owners[0] == owners[16383] == ("127.0.0.5", 7001) and 11 not in owners
    assert parse_shards(resp2, ("127.0.0.5", 7000), tls=True)[5] == ("127.0.0.5", 7101)
    resp3 = [{b"slots": [0, 16383], b"nodes": [{b"role": b"master", b"endpoint": b"h1", b"port": 7003}]}]
    assert parse_shards(resp3, ("a", 1))[100] == ("h1", 7003)
    assert parse_shards([["slots", [], "nodes", [replica]]], ("a", 1)) == {}
    slots = [[0, 1, ["", 7004, "id"], ["h2", 7005, "id2"]], [2, 16383, ["h3", 7006, "id3"]]]
    assert parse_slots(slots, ("127.0.0.9", 1)) == {0: ("127.0.0.9", 7004), 1: ("127.0.0.9", 7004)} | dict.fromkeys(
        range(2, SLOTS), ("h3", 7006)
    )
