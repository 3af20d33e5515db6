"""hbdns.connection: the URL forms, their options and refusals, and redaction (no server needed)."""

from __future__ import annotations

import pytest
import redis
from redis.sentinel import SentinelConnectionPool, SentinelManagedSSLConnection

from hbdns import config
from hbdns.connection import (
    RedisUrlError,
    SentinelUrl,
    check,
    connect,
    parse_sentinel,
    redact,
    sentinel_manager,
)


def test_the_full_sentinel_form() -> None:
    url = (
        "redis+sentinel://app:s%40cret@s1.example:26380,[2001:db8::5]:26381,s3/mymaster/3"
        "?sentinel_password=sp&sentinel_username=watch&ssl=yes&ssl_ca_certs=/etc/ca.pem"
        "&ssl_cert_reqs=optional&ssl_check_hostname=no&role=replica&min_other_sentinels=1"
    )
    assert parse_sentinel(url) == SentinelUrl(
        sentinels=(("s1.example", 26380), ("2001:db8::5", 26381), ("s3", 26379)),
        service="mymaster",
        db=3,
        role="replica",
        username="app",
        password="s@cret",
        sentinel_username="watch",
        sentinel_password="sp",
        ssl=True,
        sentinel_ssl=True,
        ssl_options=(("ssl_ca_certs", "/etc/ca.pem"), ("ssl_cert_reqs", "optional"), ("ssl_check_hostname", False)),
        min_other_sentinels=1,
    )


def test_the_short_forms() -> None:
    plain = parse_sentinel("redis+sentinel://127.0.0.1:26379/hbdns")
    assert (plain.sentinels, plain.service, plain.db, plain.role, plain.ssl) == (
        (("127.0.0.1", 26379),),
        "hbdns",
        0,
        "primary",
        False,
    )
    assert (plain.password, plain.sentinel_password) == (None, None)
    tls = parse_sentinel("rediss+sentinel://:pw@a,b/m/1?sentinel_ssl=no")
    assert (tls.ssl, tls.sentinel_ssl, tls.password, tls.username) == (True, False, "pw", None)


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("redis+sentinel://a:26379", "master name is missing"),
        ("redis+sentinel://a:26379/", "master name is missing"),
        ("redis+sentinel://a:26379/m/x", "db a number"),
        ("redis+sentinel://a:26379/m/0/9", "db a number"),
        ("redis+sentinel://a:notaport/m", "port is not a number"),
        ("redis+sentinel://a:70000/m", "1..65535"),
        ("redis+sentinel://a,,b/m", "empty sentinel address"),
        ("redis+sentinel://[::1/m", "IPv6"),
        ("redis+sentinel://a/m?sentinel_pasword=x", "unknown option 'sentinel_pasword'"),
        ("redis+sentinel://a/m?ssl=maybe", "ssl: expected yes or no"),
        ("redis+sentinel://a/m?role=leader", "role: expected primary or replica"),
        ("redis+sentinel://a/m?ssl=yes&ssl=no", "given twice"),
        ("redis+sentinel://a/m?ssl_cert_reqs=some", "ssl_cert_reqs"),
        ("redis+sentinel://a/m?min_other_sentinels=-1", "min_other_sentinels"),
        ("redis+clustr://a:7000", "expected one of"),
        ("127.0.0.1:6379", "expected one of"),
    ],
)
def test_bad_urls_are_refused_with_a_reason(url: str, says: str) -> None:
    with pytest.raises(RedisUrlError, match=says.replace("[", r"\[").replace("(", r"\(")):
        check(url)


def test_standalone_forms_pass_through() -> None:
    for url in ("redis://127.0.0.1:6379/0", "rediss://:pw@h:6380/1", "unix:///run/redis.sock?db=2"):
        assert check(url) == url


def test_a_refused_url_never_shows_its_passwords() -> None:
    env = {"HBDNS_REDIS_URL": "redis+sentinel://u:topsecret@a/m?sentinel_password=alsosecret&role=x"}
    with pytest.raises(config.ConfigError) as err:
        config.load(env)
    text = str(err.value)
    assert "HBDNS_REDIS_URL" in text and "role" in text
    assert "topsecret" not in text and "alsosecret" not in text


def test_redact_hides_every_password() -> None:
    assert redact("redis://:pw@h:6379/0") == "redis://:***@h:6379/0"
    assert redact("redis://user@h:6379/0") == "redis://user@h:6379/0"
    assert (
        redact("redis+sentinel://app:pw@a:1,b:2/m/0?sentinel_password=sp&role=replica")
        == "redis+sentinel://app:***@a:1,b:2/m/0?sentinel_password=***&role=replica"
    )
    assert redact("unix:///run/redis.sock?db=0&password=x") == "unix:///run/redis.sock?db=0&password=***"


def test_settings_validate_both_urls_and_the_wait() -> None:
    s = config.load({})
    assert (s.backend_redis_url, s.wait_replicas()) == ("", 0)
    s = config.load({"HBDNS_REDIS_URL": "redis+sentinel://a/m", "HBDNS_BACKEND_REDIS_URL": "unix:///run/r.sock"})
    assert s.wait_replicas() == 1
    off = config.load({"HBDNS_REDIS_URL": "redis+sentinel://a/m", "HBDNS_REDIS_WAIT_REPLICAS": "0"})
    assert off.wait_replicas() == 0
    for name, value in (
        ("HBDNS_BACKEND_REDIS_URL", "http://x"),
        ("HBDNS_REDIS_WAIT_REPLICAS", "-1"),
        ("HBDNS_REDIS_WAIT_REPLICAS", "some"),
        ("HBDNS_REDIS_WAIT_TIMEOUT", "0"),
    ):
        with pytest.raises(config.ConfigError, match=name):
            config.load({name: value})


def test_a_sentinel_client_is_built_lazily_with_every_option() -> None:
    """No sentinel is contacted until a command runs; the options land where redis-py reads them."""
    client = connect(
        "redis+sentinel://app:pw@127.0.0.1:1,127.0.0.1:2/mymaster/4?sentinel_password=sp&ssl=yes"
        "&ssl_ca_certs=/etc/ca.pem&sentinel_ssl=no",
        socket_timeout=1.5,
    )
    pool = client.connection_pool
    assert isinstance(pool, SentinelConnectionPool) and pool.is_master
    assert pool.connection_class is SentinelManagedSSLConnection
    kw = pool.connection_kwargs
    assert (kw["db"], kw["username"], kw["password"], kw["ssl_ca_certs"]) == (4, "app", "pw", "/etc/ca.pem")
    assert (kw["socket_timeout"], kw["decode_responses"]) == (1.5, True)
    manager = sentinel_manager(client)
    assert manager is not None and len(manager.sentinels) == 2
    skw = manager.sentinels[0].connection_pool.connection_kwargs
    assert (skw["password"], skw["socket_timeout"]) == ("sp", 1.5)
    assert manager.sentinels[0].connection_pool.connection_class is redis.Connection  # sentinel_ssl=no
    assert sentinel_manager(connect("redis://127.0.0.1:1/0")) is None


def test_replica_role_reads_through_slave_for() -> None:
    pool = connect("redis+sentinel://127.0.0.1:1/m?role=replica").connection_pool
    assert isinstance(pool, SentinelConnectionPool) and not pool.is_master
