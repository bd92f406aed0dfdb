"""The web portal: server-rendered pages (Jinja2, with htmx for small in-page updates; no
front-end build) served under ``/`` by the same application as the API. The pages call the
same services as the API, as the signed-in person; ``web.py`` holds what they share."""

from __future__ import annotations

import inspect

from fastapi import FastAPI, Request, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from evaccess.server.portal import web
from evaccess.server.portal.pages import (
    access,
    account,
    auth,
    chargers,
    organisations,
    ownership,
    support,
)

ROUTERS = (
    auth.router,
    chargers.router,
    access.router,
    organisations.router,
    account.router,
    ownership.router,
    support.router,
)


def install(app: FastAPI) -> None:
    """Mount the portal's pages and assets; unknown paths outside the API get a page."""
    app.mount("/static", StaticFiles(directory=web.HERE / "static"), name="portal-static")
    for router in ROUTERS:
        app.include_router(router)
    api_handler = app.exception_handlers[StarletteHTTPException]

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        if web.is_portal_path(request.url.path) and request.method in ("GET", "HEAD", "POST"):
            return await web.not_found_page(request, exc)
        response = api_handler(request, exc)
        return await response if inspect.isawaitable(response) else response

    app.add_exception_handler(StarletteHTTPException, http_error)
