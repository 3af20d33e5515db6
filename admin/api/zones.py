"""``/api/v1/zones``: list, create, show, change, remove.

Only admin tokens create, change or remove zones; a zone token sees its own zone (others are
absent: 404), an account token none (403).
"""

from __future__ import annotations

import logging
from typing import Any

from flask import request
from flask_openapi3 import APIBlueprint, Tag

from admin.api.auth import allow, api, scope, token, visible_zone
from admin.api.problems import ApiProblem, documented
from admin.api.schemas import ZoneChangeBody, ZoneCreate, ZoneList, ZoneOut, ZonePath, ZoneRemoveQuery, dump
from hbdns.provision_zones import ZoneChanges, change_zone, create_zone, remove_zone, zone_dict

log = logging.getLogger(__name__)

bp = APIBlueprint(
    "zones",
    __name__,
    url_prefix="/api/v1",
    abp_tags=[Tag(name="zones", description="the zones the backend serves")],
    abp_security=[{"token": []}],
    abp_responses=documented(401, 403, 422, 429),
)


def _audit(what: str, apex: str) -> None:
    log.info(what, extra={"zone": apex, "token": token().id})


@bp.get("/zones", summary="List zones", responses={200: ZoneList})
@allow("admin", "zone", action="read zones")
def list_zones() -> Any:
    store, sc = api().store, scope()
    return {"items": [zone_dict(store, z) for z in store.list_zones() if sc.covers_zone(z.apex)]}


@bp.post("/zones", summary="Create a zone", responses={201: ZoneOut, **documented(409)})
@allow("admin", action="manage zones")
def add_zone(body: ZoneCreate) -> Any:
    """Options left out take the ``HBDNS_DEFAULT_*`` settings. PowerDNS serves a new zone after its
    next zone-cache refresh (or ``pdns_control rediscover``)."""
    store = api().store
    fields = dump(body)
    apex = fields.pop("apex")
    zone = create_zone(store, apex, ZoneChanges(**fields))
    _audit("zone created", zone.apex)
    return zone_dict(store, zone), 201, {"Location": f"{request.path}/{zone.apex}"}


@bp.get("/zones/<apex>", summary="Show a zone", responses={200: ZoneOut, **documented(404)})
@allow("admin", "zone", action="read zones")
def show_zone(path: ZonePath) -> Any:
    return zone_dict(api().store, visible_zone(path.apex))


@bp.patch("/zones/<apex>", summary="Change a zone", responses={200: ZoneOut, **documented(404)})
@allow("admin", action="manage zones")
def set_zone(path: ZonePath, body: ZoneChangeBody) -> Any:
    """Fields left out stay as they are; ``records`` replaces all static records."""
    zone = visible_zone(path.apex)
    changes = ZoneChanges(**dump(body))
    if not changes.given():
        raise ApiProblem(422, "nothing to change")
    zone = change_zone(api().store, zone, changes)
    _audit("zone changed", zone.apex)
    return zone_dict(api().store, zone)


@bp.delete("/zones/<apex>", summary="Remove a zone", responses={204: None, **documented(404, 409)})
@allow("admin", action="manage zones")
def delete_zone(path: ZonePath, query: ZoneRemoveQuery) -> Any:
    """Refused (409) while it has accounts, unless ``force=true`` removes them too."""
    zone = visible_zone(path.apex)
    remove_zone(api().store, zone.apex, force=query.force)
    _audit("zone removed", zone.apex)
    return "", 204
