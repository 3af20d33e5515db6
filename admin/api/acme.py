"""``/api/v1/accounts/{account}/acme-credentials``: ACME DNS-01 credentials for one of an account's
names (docs/acme.md). Admin, zone and account tokens (a customer makes their own); the key is only
in the answer that made it."""

from __future__ import annotations

import logging
from typing import Any

from flask_openapi3 import APIBlueprint, Tag

from admin.api.auth import allow, api, token, visible_account
from admin.api.problems import documented
from admin.api.schemas import (
    AccountPath,
    AcmeCredentialList,
    AcmeCredentialPath,
    AcmeCredentialsIssued,
    AcmeCredentialsRequest,
)
from hbdns import provision_acme
from hbdns.store import NotFound

log = logging.getLogger(__name__)

bp = APIBlueprint(
    "acme",
    __name__,
    url_prefix="/api/v1",
    abp_tags=[Tag(name="acme", description="ACME DNS-01 credentials")],
    abp_security=[{"token": []}],
    abp_responses=documented(401, 403, 404, 422, 429),
)


@bp.get("/accounts/<account>/acme-credentials", summary="List ACME credentials", responses={200: AcmeCredentialList})
@allow("admin", "zone", "account", action="read ACME credentials")
def list_credentials(path: AccountPath) -> Any:
    account = visible_account(path.account)
    return {"items": [c.public_dict() for c in provision_acme.listing(api().store, account)]}


@bp.post(
    "/accounts/<account>/acme-credentials",
    summary="Make ACME credentials",
    responses={201: AcmeCredentialsIssued},
)
@allow("admin", "zone", "account", action="make ACME credentials")
def issue(path: AccountPath, body: AcmeCredentialsRequest) -> Any:
    """New credentials for ``name`` (default: the account's FQDN), in the forms lego, acme.sh and
    certbot take; the previous ones of that name stop working now."""
    account = visible_account(path.account)
    issued = provision_acme.issue(api().store, account, body.name)
    log.info(
        "acme credentials made", extra={"account": account.id, "acme_name": issued.credential.name, "token": token().id}
    )
    return issued.as_dict(), 201


@bp.delete("/accounts/<account>/acme-credentials/<name>", summary="Revoke ACME credentials", responses={204: None})
@allow("admin", "zone", "account", action="revoke ACME credentials")
def revoke(path: AcmeCredentialPath) -> Any:
    account = visible_account(path.account)
    if not provision_acme.revoke(api().store, account, path.name):
        raise NotFound(f"no ACME credentials for {path.name}")
    log.info("acme credentials revoked", extra={"account": account.id, "acme_name": path.name, "token": token().id})
    return "", 204
