"""Every error of the admin API as ``application/problem+json`` (RFC 9457), with per-field reasons.

Refusals of the shared layer map to statuses here, once: :class:`~hbdns.validate.Invalid` and the
request models' own refusals to 422 with ``errors`` (one entry per field, the same reason the CLI
prints), :class:`~hbdns.store.NotFound` to 404, :class:`~hbdns.store.Conflict` to 409. ``type`` is
``about:blank`` throughout: the status says what kind of problem it is, ``detail`` and ``errors``
say what exactly.
"""

from __future__ import annotations

import json
from http import HTTPStatus
from typing import Any

import pydantic
from flask import Response

from admin.api.schemas import FieldProblem, Problem
from hbdns import validate
from hbdns.store import NotFound, StoreError
from hbdns.tokens import TokenError

MEDIA_TYPE = "application/problem+json"


class ApiProblem(Exception):
    """Raised by views and the auth layer; rendered by :func:`response`."""

    def __init__(
        self,
        status: int,
        detail: str = "",
        *,
        errors: list[FieldProblem] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.errors = errors
        self.headers = headers or {}


def field_problem(field: str, detail: str) -> FieldProblem:
    pointer = "#/" + "/".join(field.split(".")) if field else "#"
    return FieldProblem(field=field, pointer=pointer, detail=detail)


def response(problem: ApiProblem) -> Response:
    body = Problem(
        title=HTTPStatus(problem.status).phrase,
        status=problem.status,
        detail=problem.detail,
        errors=problem.errors,
    ).model_dump(exclude_none=True)
    resp = Response(json.dumps(body), status=problem.status, mimetype=MEDIA_TYPE)
    resp.headers["Cache-Control"] = "no-store"
    for name, value in problem.headers.items():
        resp.headers[name] = value
    return resp


def from_refusal(exc: Exception) -> ApiProblem:
    """The problem for a refusal of the shared layer (or of the token store)."""
    if isinstance(exc, validate.Invalid):
        errors = [field_problem(e.field, e.reason) for e in exc.errors]
        return ApiProblem(422, str(exc), errors=errors)
    if isinstance(exc, validate.FieldError):
        return ApiProblem(422, exc.reason, errors=[field_problem(exc.field, exc.reason)])
    if isinstance(exc, NotFound):
        return ApiProblem(404, str(exc))
    if isinstance(exc, StoreError):  # Conflict, and the store's other refusals
        return ApiProblem(409, str(exc), errors=[field_problem(exc.field, str(exc))] if exc.field else None)
    if isinstance(exc, (validate.ValidationError, TokenError)):
        return ApiProblem(422, str(exc))
    raise TypeError(f"not a refusal: {exc!r}")


def _reason(error: Any) -> str:
    msg = str(error.get("msg", "invalid"))
    if error.get("type") == "extra_forbidden":
        return "unknown field"
    if error.get("type") == "model_type" and not error.get("loc"):
        return "the request body must be a JSON object"
    return msg[0].lower() + msg[1:] if msg else msg


def from_pydantic(exc: pydantic.ValidationError) -> Response:
    """flask-openapi3's ``validation_error_callback``: the request models' refusals, per field."""
    errors = [field_problem(".".join(str(p) for p in e.get("loc", ())), _reason(e)) for e in exc.errors()]
    first = errors[0] if errors else field_problem("", "invalid request")
    detail = f"{first.field}: {first.detail}" if first.field else first.detail
    return response(ApiProblem(422, detail, errors=errors))


PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}


def documented(*statuses: int) -> dict[Any, Any]:
    """OpenAPI response objects for ``statuses``, each a problem+json :class:`Problem`."""
    return {
        str(s): {"description": HTTPStatus(s).phrase, "content": {MEDIA_TYPE: {"schema": PROBLEM_REF}}}
        for s in statuses
    }
