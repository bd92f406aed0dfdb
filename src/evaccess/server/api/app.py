"""``create_app(settings)``: the FastAPI application (REST API, OpenAPI at /openapi.json,
docs at /docs and /redoc with their assets served locally, /health, and the web portal
under ``/``). The OCPP endpoint
runs beside it (``server/runner.py``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi_offline import FastAPIOffline
from sqlalchemy import text
from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

import evaccess
from evaccess.server.api import (
    accounts,
    bluetooth_pins,
    cards,
    chargers,
    claims,
    commissioning,
    keypad_pins,
    organisations,
    ownership,
    problems,
    transactions,
)
from evaccess.server.api.deps import new_request_id
from evaccess.server.bootstrap import build_context
from evaccess.server.context import Context
from evaccess.server.portal import install as install_portal
from evaccess.server.settings import Settings

DOCS_ASSETS = "/docs/static"

# Every router of the API, in the order of the OpenAPI document's paths.
ROUTERS: tuple[APIRouter, ...] = (
    accounts.router,
    organisations.router,
    keypad_pins.router,
    chargers.router,
    bluetooth_pins.router,
    transactions.router,
    cards.router,
    ownership.router,
    commissioning.router,
    claims.router,
)


class RequestHeaders:
    """Gives each request its id (``X-Request-ID``, kept from the caller when well-formed)
    and every response ``X-Request-ID`` and ``nosniff``; an exception no handler mapped
    becomes the 500 problem. Plain ASGI: Starlette's ``BaseHTTPMiddleware`` (what
    ``@app.middleware`` builds) adds a task group and memory streams to every request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = new_request_id(Headers(scope=scope).get("x-request-id"))
        scope.setdefault("state", {})["request_id"] = request_id
        started = False

        async def send_with_headers(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = MutableHeaders(scope=message)
                headers["X-Request-ID"] = request_id
                headers["X-Content-Type-Options"] = "nosniff"
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        except Exception as exc:  # anything the exception handlers did not map
            if started:
                raise
            response = problems.unexpected(Request(scope), exc)
            await response(scope, receive, send_with_headers)


def create_app(settings: Settings, *, context: Context | None = None) -> FastAPI:
    """The API over ``context`` (built from ``settings`` if not given; the caller then owns
    migrations, which ``evaccess server run`` applies before serving)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        owned = context is None
        app.state.context = context or build_context(settings)
        try:
            yield
        finally:
            if owned:
                await app.state.context.close()

    # Swagger UI (/docs) and ReDoc (/redoc) with their scripts, styles and icon served from
    # the fastapi-offline wheel under DOCS_ASSETS: the pages work without network access.
    app = FastAPIOffline(
        title="evaccess",
        version=evaccess.__version__,
        summary="Bluetooth PINs, keypad PINs and access to EV chargers.",
        lifespan=lifespan,
        static_url=DOCS_ASSETS,
    )
    if context is not None:
        app.state.context = context
    problems.install(app)

    app.add_middleware(RequestHeaders)

    @app.get("/health", tags=["health"], responses=problems.documented(500))
    async def health(request: Request) -> dict[str, str]:
        ctx: Context = request.app.state.context
        async with ctx.db.read() as session:
            await session.execute(text("SELECT 1"))
        return {"status": "ok", "version": evaccess.__version__}

    for router in ROUTERS:
        app.include_router(router)
    install_portal(app)

    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = generate()
            schema.setdefault("components", {}).setdefault("schemas", {}).update(
                problems.openapi_components()
            )
        return app.openapi_schema  # type: ignore[return-value]

    app.openapi = openapi  # type: ignore[method-assign]
    return app
