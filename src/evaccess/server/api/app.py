"""``create_app(settings)``: the FastAPI application (REST API, OpenAPI at /openapi.json,
docs at /docs and /redoc with their assets served locally, /health, and the web portal
under ``/``). The OCPP endpoint
runs beside it (``server/runner.py``)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi_offline import FastAPIOffline
from sqlalchemy import text

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

    @app.middleware("http")
    async def request_id(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        request.state.request_id = new_request_id(request.headers.get("X-Request-ID"))
        try:
            response = await call_next(request)
        except Exception as exc:  # anything the exception handlers did not map
            response = problems.unexpected(request, exc)
        response.headers["X-Request-ID"] = request.state.request_id
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response

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
