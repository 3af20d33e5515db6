"""The message language through the admin API: an account's (its own token may set it, like the
other notification preferences) and a zone's default, in the OpenAPI document too."""

from __future__ import annotations

from typing import Any

from tests.support.admin_api import ZONE, ApiClient


def test_account_and_zone_language(api: ApiClient, world: dict[str, Any]) -> None:
    home = world["home"]
    status, body, _ = api.call("PATCH", f"/api/v1/accounts/{home.fqdn}", world["account"], {"prefs": {"lang": "de"}})
    assert status == 200 and body["prefs"]["lang"] == "de" and body["prefs"]["tz"] == "UTC"
    status, body, _ = api.call("GET", f"/api/v1/accounts/{home.id}", world["admin"])
    assert status == 200 and body["prefs"]["lang"] == "de"
    status, body, _ = api.call("PATCH", f"/api/v1/accounts/{home.fqdn}", world["admin"], {"prefs": {"lang": ""}})
    assert status == 200 and body["prefs"]["lang"] == ""  # back to the zone's default

    status, body, _ = api.call("PATCH", f"/api/v1/zones/{ZONE}", world["admin"], {"lang": "de"})
    assert status == 200 and body["lang"] == "de"
    status, body, _ = api.call("POST", "/api/v1/zones", world["admin"], {"apex": "neu.example.net"})
    assert status == 201 and body["lang"] == ""
    status, body, _ = api.call("PATCH", f"/api/v1/zones/{ZONE}", world["admin"], {"lang": 7})
    assert status == 422  # strict JSON types, before the shared checks


def test_the_openapi_document_has_the_languages(api: ApiClient) -> None:
    status, doc, _ = api.call("GET", "/api/v1/openapi.json", None)
    schemas = doc["components"]["schemas"]
    assert status == 200
    assert "lang" in schemas["PrefsIn"]["properties"] and "lang" in schemas["PrefsOut"]["properties"]
    assert "lang" in schemas["ZoneCreate"]["properties"] and "lang" in schemas["ZoneOut"]["properties"]
