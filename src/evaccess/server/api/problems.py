"""Errors as RFC 9457 problem documents with a stable ``code``; no traceback, no echo of
the request body (a PIN sent with a wrong type must not come back in the error)."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from evaccess.domain import errors
from evaccess.server.api.schemas import Problem

log = logging.getLogger("evaccess.api")

STATUS: tuple[tuple[type[errors.EvAccessError], int], ...] = (
    (errors.InvalidInput, 422),
    (errors.NotAuthenticated, 401),
    (errors.PermissionDenied, 403),
    (errors.NotFound, 404),
    (errors.Conflict, 409),
    (errors.Throttled, 429),
    (errors.IntegrityFailure, 500),
    (errors.AuditUnavailable, 503),
    (errors.ClusterUnavailable, 503),
    (errors.ConfigurationError, 500),
)

TITLES = {
    400: "Bad request",
    401: "Not authenticated",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    422: "Invalid input",
    429: "Too many requests",
    500: "Internal error",
    503: "Unavailable",
}


PROBLEM_MEDIA_TYPE = "application/problem+json"
DOCUMENTED = {
    400: "The server cannot do it now (`pin_space_full`: no free PIN to generate).",
    401: "Not authenticated (`not_authenticated`): send `Authorization: Bearer <token>` "
    "from POST /api/auth/login; a token that expired or was logged out is refused too.",
    403: "Forbidden (`permission_denied`): you can see it, but your role or grant does not "
    "allow this.",
    404: "Not found (`not_found`): it does not exist, or you may not see it (both answer alike).",
    409: "Conflict (`conflict`, `policy_violation`, …): the current state forbids it.",
    422: "Invalid input (`invalid_input`, `pin_rejected`): `errors` names the fields; the "
    "value is never echoed.",
    429: "Too many attempts (`throttled`, `locked_out`): retry after `Retry-After` seconds.",
    500: "Internal error (`internal_error`, `integrity_failure`): quote the `request_id`.",
    503: "Unavailable (`audit_unavailable`): the action could not be audited, so it was not done.",
}


CLUSTER_UNAVAILABLE = {
    503: "Unavailable (`cluster_unavailable`): in cluster mode the security counters shared "
    "by the server nodes (Redis) cannot be reached, so the attempt was refused uncounted "
    "(docs/security.md); retry later.",
}


def documented(*statuses: int, notes: dict[int, str] | None = None) -> dict[int | str, Any]:
    """OpenAPI ``responses`` for the problems a route can answer (every one a ``Problem``
    as ``application/problem+json``); ``notes`` replace a status's generic description."""
    return {
        status: {
            "description": (notes or {}).get(status, DOCUMENTED[status]),
            "content": {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}},
        }
        for status in sorted(statuses)
    }


def openapi_components() -> dict[str, Any]:
    """The ``Problem`` schema (and what it refers to) for ``components.schemas``."""

    schema = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
    components: dict[str, Any] = schema.pop("$defs", {})
    return components | {"Problem": schema}


def status_of(error: errors.EvAccessError) -> int:
    for cls, status in STATUS:
        if isinstance(error, cls):
            return status
    return 400


def problem(request: Request, status: int, code: str, detail: str, **extra: Any) -> JSONResponse:
    body = {
        "type": f"urn:evaccess:problem:{code}",
        "title": TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
        "code": code,
        "request_id": getattr(request.state, "request_id", None),
        **extra,
    }
    headers = {"Cache-Control": "no-store"}
    if status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    return JSONResponse(body, status_code=status, headers=headers, media_type=PROBLEM_MEDIA_TYPE)


def install(app: FastAPI) -> None:
    @app.exception_handler(errors.EvAccessError)
    async def _domain(request: Request, exc: errors.EvAccessError) -> JSONResponse:
        status = status_of(exc)
        response = problem(request, status, exc.code, exc.message)
        if isinstance(exc, errors.Throttled) and exc.retry_after != float("inf"):
            response.headers["Retry-After"] = str(max(1, int(exc.retry_after + 0.999)))
        if status >= 500:
            log.error("%s: %s", exc.code, exc.message)
        return response

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        fields = [
            {"loc": [str(p) for p in e.get("loc", ())], "msg": str(e.get("msg", ""))}
            for e in exc.errors()
        ]
        where = ", ".join(".".join(f["loc"][1:]) or f["loc"][0] for f in fields if f["loc"])
        return problem(request, 422, "invalid_input", f"invalid request: {where}", errors=fields)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        response = problem(request, exc.status_code, code, str(exc.detail))
        if exc.status_code == 405:  # RFC 9110 §15.5.6: name every method the path has
            response.headers["Allow"] = ", ".join(_allowed(app, request))
        return response

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        # Only reached by an exception raised outside the routes (the request-id middleware
        # catches theirs); Starlette re-raises it to uvicorn, whose log keeps the type only.
        return unexpected(request, exc)


METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")


def _allowed(app: FastAPI, request: Request) -> list[str]:
    # Starlette names the methods of the first route on the path only, and each method of
    # a path has its own route here: ask the router which methods it would serve.
    return [
        method
        for method in METHODS
        if any(
            route.matches({**request.scope, "method": method})[0] is Match.FULL
            for route in app.router.routes
        )
    ]


def unexpected(request: Request, exc: Exception) -> JSONResponse:
    """A 500 problem for an exception nobody expected (the caller catches it: it goes no
    further, so neither Starlette nor uvicorn logs its traceback). The log line names the
    type and the request id only, at every level: the message of a database error quotes
    the statement's parameters (password hashes among them)."""
    route = getattr(request.scope.get("route"), "path", "?")  # the template: no ids
    request_id = getattr(request.state, "request_id", None)
    log.error(
        "unexpected %s on %s %s (request %s)", type(exc).__name__, request.method, route, request_id
    )
    return problem(request, 500, "internal_error", "something went wrong on our side")
