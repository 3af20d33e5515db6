"""The update API's ACME routes (acme-dns under /acme-dns, httpreq under /httpreq) and its
ip6lanprefix handling, through Flask's test client on fakeredis (whose Lua runs the scripts)."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable
from typing import Any

import pytest
import redis
from flask.testing import FlaskClient

from hbdns import acme, config, keys, provision, provision_acme, scripts
from hbdns.purge import Purger
from hbdns.store import Store
from tests.support.update_api import redis_snapshot
from update_api.app import create_app
from update_api.parsing import Addresses, BadIP, parse_addresses
from update_api.service import UpdateService

ZONE = "dyn.example.net"
HOME, OTHER = f"home.{ZONE}", f"other.{ZONE}"
ALIAS = f"www.{ZONE}"
V1, V2, V3 = "a" * 43, "B-_" + "c" * 40, "9" * 43
SOURCE = "198.51.101.9"
IID = "::1a2b:3c4d:5e6f:7081"


class Purged(Purger):
    def __init__(self) -> None:
        super().__init__([], "")
        self.names: list[str] = []

    def purge(self, names: Iterable[str]) -> None:
        self.names.extend(names)


class Api:
    def __init__(self, r: redis.Redis, **env: str) -> None:
        self.r: Any = r
        settings = config.load({"HBDNS_ACME_AUTHFAIL_BURST": "3", **env})
        self.store = Store(r, settings)
        from hbdns.model import Zone

        self.store.add_zone(Zone(ZONE, ("ns1.example.net",), "hm.example.net", "192.0.2.1"))
        self.home = provision.create_account(self.store, HOME, "setip-c", aliases=[ALIAS])
        self.other = provision.create_account(self.store, OTHER, "setip-c", ipv6_interface_id=IID)
        self.purger = Purged()
        self.client: FlaskClient = create_app(UpdateService(settings, r, self.purger)).test_client()
        self.creds = provision_acme.issue(self.store, self.home.account).as_dict()
        self.other_creds = provision_acme.issue(self.store, self.other.account).as_dict()

    def acme_dns(self, creds: dict[str, Any] | None, body: Any, name: str = HOME, source: str = SOURCE) -> Any:
        account = creds["acme_dns"][name] if creds else {}
        headers = {"X-Api-User": account.get("username", ""), "X-Api-Key": account.get("password", "")}
        data = body if isinstance(body, str) else json.dumps(body)
        return self.client.post("/acme-dns/update", data=data, headers=headers, environ_base={"REMOTE_ADDR": source})

    def httpreq(self, action: str, user: str, password: str, body: Any) -> Any:
        auth = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        return self.client.post(
            f"/httpreq/{action}", json=body, headers={"Authorization": auth}, environ_base={"REMOTE_ADDR": SOURCE}
        )

    def values(self, name: str = HOME) -> set[str]:
        return set(acme.values(self.r, [name])[0])

    def subdomain(self) -> str:
        return str(self.creds["acme_dns"][HOME]["subdomain"])


@pytest.fixture
def api(fake_redis: redis.Redis) -> Api:
    return Api(fake_redis)


def test_acme_dns_update_sets_values_and_keeps_the_two_newest(api: Api) -> None:
    for value in (V1, V2, V3):
        resp = api.acme_dns(api.creds, {"subdomain": api.subdomain(), "txt": value})
        assert (resp.status_code, resp.get_json()) == (200, {"txt": value})
    assert api.values() == {V2, V3}
    assert api.purger.names == [f"_acme-challenge.{HOME}"] * 3
    # the key expires by itself with its newest value
    assert 0 < api.r.pttl(keys.acme_txt(HOME)) <= config.load({}).acme_value_ttl * 1000


@pytest.mark.parametrize(
    "body, code",
    [
        ({"txt": "short"}, "bad_txt"),
        ({"txt": "a" * 44}, "bad_txt"),
        ({"txt": "a" * 42 + "="}, "bad_txt"),
        ({"txt": "a" * 42 + "+"}, "bad_txt"),
        ({"txt": 43}, "bad_txt"),
        ("not json", "malformed_json_payload"),
        ([1, 2], "malformed_json_payload"),
    ],
)
def test_acme_dns_bad_values_are_refused_and_write_nothing(api: Api, body: Any, code: str) -> None:
    before = redis_snapshot(api.r)
    if isinstance(body, dict):
        body = {"subdomain": api.subdomain(), **body}
    resp = api.acme_dns(api.creds, body)
    assert (resp.status_code, resp.get_json()["error"]) == (400, code)
    assert redis_snapshot(api.r) == before


def test_acme_dns_wrong_credentials_are_forbidden_then_limited_before_the_check(api: Api) -> None:
    forged = {"acme_dns": {HOME: {**api.creds["acme_dns"][HOME], "password": "x" * 43}}}
    for _ in range(3):
        resp = api.acme_dns(forged, {"subdomain": api.subdomain(), "txt": V1})
        assert (resp.status_code, resp.get_json()) == (401, {"error": "forbidden"})
    resp = api.acme_dns(api.creds, {"subdomain": api.subdomain(), "txt": V1})  # right key, same source
    assert resp.status_code == 429 and int(resp.headers["Retry-After"]) >= 1
    assert api.acme_dns(api.creds, {"subdomain": api.subdomain(), "txt": V1}, source="203.0.114.1").status_code == 200
    assert api.values() == {V1}


def test_acme_dns_another_subdomain_is_forbidden(api: Api) -> None:
    other_subdomain = api.other_creds["acme_dns"][OTHER]["subdomain"]
    before = redis_snapshot(api.r)
    resp = api.acme_dns(api.creds, {"subdomain": other_subdomain, "txt": V1})
    assert resp.status_code == 401 and resp.get_json()["error"] == "forbidden"
    assert redis_snapshot(api.r) == before


def test_register_is_refused_and_health_answers(api: Api) -> None:
    resp = api.client.post("/acme-dns/register")
    assert resp.status_code == 403 and resp.get_json()["error"] == "registration_disabled"
    assert api.client.get("/acme-dns/health").status_code == 200
    # the dyndns2 /update is another protocol on another path
    assert api.client.post("/update", data=json.dumps({"txt": V1})).status_code == 401


def test_httpreq_present_and_cleanup_for_the_credentials_name_only(api: Api) -> None:
    h = api.creds["httpreq"]
    fqdn = f"_acme-challenge.{HOME}."
    resp = api.httpreq("present", h["username"], h["password"], {"fqdn": fqdn.upper(), "value": V1})
    assert resp.status_code == 200
    assert api.httpreq("present", h["username"], h["password"], {"fqdn": fqdn, "value": V2}).status_code == 200
    assert api.values() == {V1, V2}
    for wrong in (f"_acme-challenge.{OTHER}.", f"_acme-challenge.{ALIAS}.", f"{HOME}.", "_acme-challenge."):
        before = redis_snapshot(api.r)
        resp = api.httpreq("present", h["username"], h["password"], {"fqdn": wrong, "value": V3})
        assert resp.status_code in (400, 403), wrong
        assert redis_snapshot(api.r) == before
    assert api.httpreq("cleanup", h["username"], h["password"], {"fqdn": fqdn, "value": V1}).status_code == 200
    assert api.values() == {V2}
    assert api.httpreq("present", h["username"], "wrong" * 9, {"fqdn": fqdn, "value": V3}).status_code == 401


def test_credentials_of_an_alias_and_replaced_or_revoked_ones(api: Api) -> None:
    alias = provision_acme.issue(api.store, api.home.account, ALIAS).as_dict()
    sub = alias["acme_dns"][ALIAS]["subdomain"]
    assert api.acme_dns(alias, {"subdomain": sub, "txt": V1}, name=ALIAS).status_code == 200
    assert api.values(ALIAS) == {V1} and api.values(HOME) == set()
    old = api.creds
    api.creds = provision_acme.issue(api.store, api.home.account).as_dict()  # replaces the old ones
    assert api.acme_dns(old, {"subdomain": old["acme_dns"][HOME]["subdomain"], "txt": V2}).status_code == 401
    assert api.acme_dns(api.creds, {"subdomain": api.subdomain(), "txt": V2}).status_code == 200
    assert provision_acme.revoke(api.store, api.home.account, ALIAS)
    assert api.acme_dns(alias, {"subdomain": sub, "txt": V3}, name=ALIAS).status_code == 401


def test_a_name_leaving_the_account_takes_its_values_and_credentials(api: Api) -> None:
    alias = provision_acme.issue(api.store, api.home.account, ALIAS).as_dict()
    sub = alias["acme_dns"][ALIAS]["subdomain"]
    assert api.acme_dns(alias, {"subdomain": sub, "txt": V1}, name=ALIAS).status_code == 200
    provision.change_account(api.store, api.home.account, provision.AccountChanges(aliases=[]))
    assert api.values(ALIAS) == set()
    assert api.acme_dns(alias, {"subdomain": sub, "txt": V1}, name=ALIAS).status_code == 401
    provision.remove_account(api.store, api.store.resolve(HOME))
    assert not [k for k in api.r.keys("hbdns:acme:*") if HOME in k or ALIAS in k]


def test_the_value_script_refuses_a_name_that_changed_hands(api: Api) -> None:
    cred = provision_acme.issue(api.store, api.home.account).credential
    args = {"cred_key": keys.acme_credential(cred.id), "name": HOME, "digest": cred.digest, "value": V1, "ttl_ms": 1000}
    assert acme.set_value(api.r, account_id=api.other.account.id, **args) == -1  # not the credential's account
    # the account's shard no longer confirms the name (the lookup asks it too): it changed hands
    api.r.hset(keys.names(), HOME, str(api.other.account.id))
    api.r.hdel(keys.shard_names(keys.shard_of(cred.account_id)), HOME)
    assert acme.set_value(api.r, account_id=cred.account_id, **args) == -2
    assert api.values() == set()


@pytest.mark.parametrize("race", ["revoked", "name moved"])
def test_a_value_written_while_its_right_went_is_taken_out(
    api: Api, race: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The checks and the write are separate slots: what changes between them is caught after."""
    cred = provision_acme.issue(api.store, api.home.account).credential
    args = {"cred_key": keys.acme_credential(cred.id), "name": HOME, "digest": cred.digest, "ttl_ms": 60_000}
    assert acme.set_value(api.r, account_id=cred.account_id, value=V1, **args) == 1
    real = scripts.ACME_SET

    def racing(client: Any, keys_: Any, argv: Any) -> Any:
        if race == "revoked":
            provision_acme.revoke(api.store, api.home.account)
        else:
            api.r.hdel(keys.shard_names(keys.shard_of(cred.account_id)), HOME)
        return real(client, keys_, argv)

    monkeypatch.setattr(scripts, "ACME_SET", racing)
    want = -1 if race == "revoked" else -2
    assert acme.set_value(api.r, account_id=cred.account_id, value=V2, **args) == want
    assert api.values() == {V1}  # the value written meanwhile is gone; the earlier one stays


# --- ip6lanprefix ---------------------------------------------------------------------------------


def _update(api: Api, query: str, account: provision.Created) -> Any:
    auth = "Basic " + base64.b64encode(f"{account.account.fqdn}:{account.password}".encode()).decode()
    return api.client.get(f"/nic/update?{query}", headers={"Authorization": auth}, environ_base={"REMOTE_ADDR": SOURCE})


def test_ip6lanprefix_sets_prefix_plus_interface_id(api: Api) -> None:
    resp = _update(api, f"hostname={OTHER}&myip=203.0.114.7,2001:db9:ffff::1&ip6lanprefix=2001:db9:1:2::/64", api.other)
    assert resp.status_code == 200, resp.get_data(as_text=True)
    state = api.r.hgetall(keys.account(api.other.account.id))
    assert (state["ipv4"], state["ipv6"]) == ("203.0.114.7", "2001:db9:1:2:1a2b:3c4d:5e6f:7081")
    # an account without an interface id ignores it
    resp = _update(api, f"hostname={HOME}&myip=203.0.114.8&ip6lanprefix=2001:db9:1:2::/64", api.home)
    assert resp.status_code == 200
    assert api.r.hget(keys.account(api.home.account.id), "ipv6") == ""


@pytest.mark.parametrize(
    "prefix, result",
    [
        ("2001:db9:1:2::/64", "2001:db9:1:2:1a2b:3c4d:5e6f:7081"),
        ("2001:db9:1:2::", "2001:db9:1:2:1a2b:3c4d:5e6f:7081"),  # no length: /64
        ("2001:db9:1:2::99/64", "2001:db9:1:2:1a2b:3c4d:5e6f:7081"),  # host bits dropped
        ("2001:db9:1:200::/56", "2001:db9:1:200:1a2b:3c4d:5e6f:7081"),
    ],
)
def test_prefix_forms(prefix: str, result: str) -> None:
    assert parse_addresses({"ip6lanprefix": prefix}, SOURCE, IID) == Addresses(ipv6=result)


@pytest.mark.parametrize("prefix", ["2001:db9:1:2::/80", "nonsense", "203.0.114.0/24", "fe80::/64", "ff02::/64"])
def test_bad_or_unpublishable_prefixes_are_badip(prefix: str) -> None:
    with pytest.raises(BadIP):
        parse_addresses({"ip6lanprefix": prefix}, SOURCE, IID)


def test_a_non_public_result_needs_a_zone_that_allows_it() -> None:
    addrs = parse_addresses({"ip6lanprefix": "2001:db8:1:2::/64"}, SOURCE, IID)  # documentation
    assert addrs.non_public() == "2001:db8:1:2:1a2b:3c4d:5e6f:7081 is documentation"
    assert parse_addresses({"ip6lanprefix": "fd00:1:2:3::/64"}, SOURCE, IID).non_public().endswith("private")
