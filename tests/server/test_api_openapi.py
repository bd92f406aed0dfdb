"""The OpenAPI document tells the truth about errors: every problem a route answers is
documented, as ``application/problem+json`` with the ``Problem`` schema, and FastAPI's
default 422 (``application/json``, ``HTTPValidationError``) appears nowhere."""

from __future__ import annotations

import json
from typing import Any

from evaccess.server.api.app import create_app
from evaccess.server.settings import Settings
from tests.server.test_authorization import ROWS

PROBLEM = {"$ref": "#/components/schemas/Problem"}


def _operations(doc: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method.upper(), path, operation)
        for path, operations in doc["paths"].items()
        for method, operation in operations.items()
    ]


def test_every_error_response_is_a_documented_problem() -> None:
    doc = create_app(Settings()).openapi()
    assert "HTTPValidationError" not in json.dumps(doc)
    problem = doc["components"]["schemas"]["Problem"]
    assert {"type", "title", "status", "detail", "code", "request_id"} <= set(problem["required"])
    for method, path, operation in _operations(doc):
        where = f"{method} {path}"
        responses = operation["responses"]
        assert "500" in responses, where
        for status, response in responses.items():
            if int(status) < 400:
                continue
            assert response["content"] == {"application/problem+json": {"schema": PROBLEM}}, (
                where,
                status,
            )
            assert response["description"], (where, status)
        takes_input = bool(operation.get("parameters") or operation.get("requestBody"))
        assert ("422" in responses) == takes_input, where
        if operation.get("security"):
            assert "401" in responses, where


def test_the_statuses_the_authorization_matrix_sees_are_documented() -> None:
    doc = create_app(Settings()).openapi()
    documented = {(m, p): set(map(int, op["responses"])) for m, p, op in _operations(doc)}
    for row in ROWS:
        if row.route not in documented:  # /docs, /redoc and the like: not in the document
            continue
        seen = {status for status in row.expect.values() if status >= 400}
        assert seen <= documented[row.route], (row.route, seen - documented[row.route])


def test_sign_up_documents_no_answer_that_tells_a_registered_address() -> None:
    # 202 for a new and a registered address alike (tests/server/test_accounts.py); the
    # operator's create-user, which says user_exists, is a command, not a route.
    responses = create_app(Settings()).openapi()["paths"]["/api/users"]["post"]["responses"]
    assert sorted(responses) == ["202", "403", "422", "500"]
