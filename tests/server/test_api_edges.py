"""The API's edge: out-of-range integers and control characters are a 422 problem before
any query runs (SQLite and PostgreSQL both answered 500); an unexpected exception is a 500
problem that logs its type and the request id only; every answer carries ``nosniff``;
405 names the allowed methods; booleans in bodies are strict."""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import quote

import pytest

from evaccess.server.api.app import create_app
from evaccess.server.settings import Settings
from tests.server.support import build_world, client_for

TOO_BIG = 2**63
BIGGEST = 2**63 - 1


def _is_problem(response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == code


async def test_an_integer_beyond_64_bits_is_a_422_problem(ctx):
    world = await build_world(ctx)
    assert world.org is not None
    headers = await world.headers("super_admin")
    async with client_for(ctx) as client:
        for before in (TOO_BIG, -TOO_BIG - 1, 10**30):
            answer = await client.get(
                f"/api/organisations/{world.org.id}/audit",
                params={"before": before},
                headers=headers,
            )
            _is_problem(answer, 422, "invalid_input")
        fine = await client.get(
            f"/api/organisations/{world.org.id}/audit",
            params={"before": BIGGEST},
            headers=headers,
        )
        assert fine.status_code == 200, fine.text
        for limit in (TOO_BIG, 10**30):
            answer = await client.get(
                "/api/me/transactions", params={"limit": limit}, headers=headers
            )
            _is_problem(answer, 422, "invalid_input")
        body = await client.patch(
            f"/api/organisations/{world.org.id}/settings",
            json={"keypad_pin_digits": TOO_BIG},
            headers=headers,
        )
        _is_problem(body, 422, "invalid_input")


CONTROL = ("\x00", "\x01", "\x1b", "\x7f", "a\x00b")


@pytest.mark.parametrize("bad", CONTROL)
async def test_control_characters_are_refused_at_the_edge(ctx, bad):
    world = await build_world(ctx)
    assert world.org is not None
    headers = await world.headers("super_admin")
    org = world.org.id
    charger = {"serial": "NUL-1", "vendor": "V", "model": "M", "firmware": "1.0.0"}
    path = quote(bad)
    calls: list[tuple[str, str, dict[str, Any]]] = [
        ("GET", f"/api/organisations/{org}{path}", {}),
        ("GET", f"/api/chargers/x{path}", {}),
        ("GET", "/api/chargers", {"params": {"serial": f"WB{bad}"}}),
        ("POST", f"/api/organisations/{org}/subgroups", {"json": {"name": f"D{bad}"}}),
        ("POST", "/api/auth/login", {"json": {"email": f"a{bad}@example.com", "password": "x"}}),
    ]
    calls += [
        ("POST", f"/api/organisations/{org}/chargers", {"json": charger | {field: f"x{bad}"}})
        for field in ("serial", "vendor", "model", "firmware")
    ]
    async with client_for(ctx) as client:
        for method, url, kwargs in calls:
            answer = await client.request(method, url, headers=headers, **kwargs)
            _is_problem(answer, 422, "invalid_input")
            assert "\\u00" not in answer.text and bad not in answer.text
        listed = await client.get("/api/chargers", headers=headers)
        assert sorted(c["serial"] for c in listed.json()) == [
            "WB-100001",
            "WB-300003",
            "WB-400004",
            "ZAP-200002",
        ]


async def test_ordinary_text_still_passes(ctx):
    world = await build_world(ctx)
    assert world.org is not None
    headers = await world.headers("super_admin")
    async with client_for(ctx) as client:
        made = await client.post(
            f"/api/organisations/{world.org.id}/subgroups",
            json={"name": "Dépôt Süd – 東京 ✓"},
            headers=headers,
        )
    assert made.status_code == 201, made.text
    assert made.json()["name"] == "Dépôt Süd – 東京 ✓"


CANARY = "canary-d41d8cd98f00b204e980"


def _app_that_fails(ctx):
    app = create_app(Settings(), context=ctx)

    async def boom() -> None:
        raise RuntimeError(
            f"(psycopg.IntegrityError) [parameters: ('WB-1', '$argon2id$v=19${CANARY}')]"
        )

    app.add_api_route("/api/boom", boom, methods=["GET"])
    return app


async def test_an_unexpected_exception_is_a_500_problem_without_its_message(ctx, caplog):
    import httpx

    app = _app_that_fails(ctx)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=True)
    caplog.set_level(logging.DEBUG)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        answer = await client.get("/api/boom", headers={"X-Request-ID": "req-boom-1"})
    # raise_app_exceptions: had the exception left the app, the client would have raised it
    _is_problem(answer, 500, "internal_error")
    assert answer.headers["x-request-id"] == "req-boom-1"
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert answer.json()["request_id"] == "req-boom-1"
    assert CANARY not in answer.text
    logged = "\n".join(
        r.getMessage() + repr(r.exc_info) + repr(r.args) + str(r.exc_text) for r in caplog.records
    )
    assert CANARY not in logged
    assert "RuntimeError" in logged and "req-boom-1" in logged


def test_uvicorn_logs_no_traceback_nor_message(caplog):
    from evaccess.server.runner import quiet_uvicorn_errors

    quiet_uvicorn_errors()
    caplog.set_level(logging.DEBUG)
    try:
        raise ValueError(f"[parameters: ('{CANARY}',)]")
    except ValueError as exc:
        logging.getLogger("uvicorn.error").error("Exception in ASGI application\n", exc_info=exc)
    records = [r for r in caplog.records if r.name == "uvicorn.error"]
    assert records
    for record in records:
        assert record.exc_info is None and record.exc_text is None
        assert CANARY not in record.getMessage()
        assert "ValueError" in record.getMessage()


async def test_every_answer_says_nosniff(ctx):
    world = await build_world(ctx)
    headers = await world.headers("member")
    async with client_for(ctx) as client:
        answers = [
            await client.get("/health"),
            await client.get("/api/me", headers=headers),
            await client.get("/api/me"),
            await client.get("/api/nowhere"),
            await client.post("/api/auth/login", json={}),
            await client.get("/openapi.json"),
        ]
    for answer in answers:
        assert answer.headers["x-content-type-options"] == "nosniff", answer.request.url


async def test_405_names_the_allowed_methods(ctx):
    async with client_for(ctx) as client:
        answer = await client.delete("/api/organisations")
    _is_problem(answer, 405, "method_not_allowed")
    assert set(answer.headers["allow"].replace(" ", "").split(",")) == {"GET", "POST"}


@pytest.mark.parametrize("value", [0, 1, "false", "true", "no", None])
async def test_booleans_in_bodies_are_strict(ctx, value):
    world = await build_world(ctx)
    assert world.org is not None
    headers = await world.headers("super_admin")
    async with client_for(ctx) as client:
        answer = await client.patch(
            f"/api/organisations/{world.org.id}/settings",
            json={"offline_keypad": value},
            headers=headers,
        )
        if value is None:  # null: leave it as it is
            assert answer.status_code == 200, answer.text
            return
        _is_problem(answer, 422, "invalid_input")
        charger = {"serial": "S-1", "vendor": "V", "model": "M", "firmware": "1.0.0"}
        answer = await client.post(
            f"/api/organisations/{world.org.id}/chargers",
            json=charger | {"keypad": value},
            headers=headers,
        )
        _is_problem(answer, 422, "invalid_input")
        ok = await client.patch(
            f"/api/organisations/{world.org.id}/settings",
            json={"offline_keypad": False},
            headers=headers,
        )
        assert ok.status_code == 200 and ok.json()["offline_keypad"] is False


async def test_at_debug_level_no_sql_parameter_reaches_the_log(ctx, caplog, monkeypatch):
    """aiosqlite logs each call with its arguments at DEBUG: every statement's parameters,
    password hashes among them. The server's logging set-up keeps it at INFO."""
    from sqlalchemy import text

    from evaccess.server.runner import configure_logging

    sql_logger = logging.getLogger("aiosqlite")
    monkeypatch.setattr(sql_logger, "level", logging.NOTSET)  # as in a fresh process
    configure_logging("DEBUG")
    caplog.set_level(logging.DEBUG)
    async with ctx.db.read() as session:
        await session.execute(text("SELECT :secret"), {"secret": CANARY})
    assert CANARY not in "\n".join(r.getMessage() for r in caplog.records)
    assert sql_logger.getEffectiveLevel() >= logging.INFO


@pytest.mark.parametrize(
    "when",
    [
        "2030-01-01T00:00:00",  # no offset: which instant would it be?
        "9999-12-31T23:59:59-14:00",  # after year 9999 in UTC
        "0001-01-01T00:00:00+14:00",  # before year 1 in UTC
    ],
)
async def test_an_instant_without_offset_or_out_of_range_is_a_422_problem(ctx, when):
    world = await build_world(ctx)
    headers = await world.headers("owner")
    async with client_for(ctx) as client:
        answer = await client.post(
            f"/api/chargers/{world.chargers['wallbox'].id}/invitations",
            json={"email": "stranger@example.com", "kind": "service", "service_expires_at": when},
            headers=headers,
        )
    _is_problem(answer, 422, "invalid_input")
    assert answer.json()["errors"][0]["loc"][-1] == "service_expires_at"


def test_rest_listener_turns_nagle_off():
    """With Nagle on, uvicorn's two writes per response (head, then body) made every answer
    on a kept-alive connection wait ~40 ms for the client's delayed ACK: the REST listener
    says it is TCP (asyncio then sets TCP_NODELAY on what it accepts) and sets it too."""
    import socket

    from evaccess.server.runner import _listen

    listener = _listen("127.0.0.1", 0, "EVACCESS_PORT")
    try:
        assert listener.proto == socket.IPPROTO_TCP
        listener.setblocking(True)
        with socket.create_connection(listener.getsockname()[:2]):
            accepted, _ = listener.accept()
            with accepted:
                assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    finally:
        listener.close()
