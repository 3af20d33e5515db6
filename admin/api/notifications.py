"""``/api/v1/dead-letters`` (notifications that failed for good: list, retry) and ``/api/v1/token``.

Dead letters are read and retried only through :meth:`hbdns.store.Store.dead_letters` and
:meth:`~hbdns.store.Store.retry_dead_letters`, as the CLI does. A zone token sees the letters of its
zone's accounts; another's are absent (404 on retry).
"""

from __future__ import annotations

import logging
from typing import Any

from flask_openapi3 import APIBlueprint, Tag

from admin.api.auth import allow, api, scope, token
from admin.api.problems import documented
from admin.api.schemas import DeadLetterList, DeadLetterQuery, RetryOut, RetryRequest, TokenOut
from hbdns.store import NotFound

log = logging.getLogger(__name__)

bp = APIBlueprint(
    "notifications",
    __name__,
    url_prefix="/api/v1",
    abp_tags=[Tag(name="notifications", description="failed notifications"), Tag(name="tokens")],
    abp_security=[{"token": []}],
    abp_responses=documented(401, 403, 422, 429),
)


def _visible(letters: list[dict[str, Any]]) -> list[dict[str, Any]]:
    sc = scope()
    if sc.kind == "admin":
        return letters
    store = api().store
    zones: dict[int, str] = {}
    for d in letters:
        account_id = int(d.get("account") or 0)
        if account_id not in zones:
            account = store.get_account(account_id)
            zones[account_id] = account.zone if account else ""
    return [d for d in letters if zones[int(d.get("account") or 0)] == sc.zone]


@bp.get(
    "/dead-letters", summary="Failed notifications", tags=[Tag(name="notifications")], responses={200: DeadLetterList}
)
@allow("admin", "zone", action="read notifications")
def dead_letters(query: DeadLetterQuery) -> Any:
    """Newest first."""
    letters = api().store.dead_letters(query.limit if scope().kind == "admin" else 100_000)
    return {"items": _visible(letters)[: query.limit]}


@bp.post(
    "/dead-letters/retry",
    summary="Send failed notifications again",
    tags=[Tag(name="notifications")],
    responses={200: RetryOut, **documented(404, 409)},
)
@allow("admin", "zone", action="retry notifications")
def retry(body: RetryRequest) -> Any:
    """All or nothing: an unknown id (404) or a letter that cannot be sent again (409) moves none."""
    store = api().store
    if scope().kind != "admin":
        visible = {d["id"] for d in _visible(store.dead_letters(100_000))}
        for letter_id in body.ids:
            if letter_id not in visible:
                raise NotFound(f"no dead letter {letter_id!r}")
    moved = store.retry_dead_letters(body.ids)
    log.info("dead letters queued again", extra={"count": len(moved), "token": token().id})
    return {"requeued": moved}


@bp.get("/token", summary="This token", tags=[Tag(name="tokens")], responses={200: TokenOut})
@allow("admin", "zone", "account", action="read its token")
def whoami() -> Any:
    """The token this request carries: id, scope, label, expiry (never its secret)."""
    return token().public_dict()
