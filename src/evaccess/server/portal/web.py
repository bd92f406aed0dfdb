"""What every portal page shares: the templates, the cookie session, CSRF protection, the
security headers, and errors as readable pages.

- **Session.** The cookie holds an API token (the same accounts, throttles and expiry as
  ``/api/auth/login``), ``HttpOnly``, ``SameSite=Strict``, ``Secure`` over https.
- **CSRF.** Every POST carries ``csrf``, an HMAC of the session token that only a page of
  this site can know (the token itself never reaches a script); the login form, before any
  session, uses a random value doubled in a cookie. A cross-site request
  (``Sec-Fetch-Site: cross-site``, or an ``Origin`` of another host) is refused as well.
- **Headers.** A strict Content-Security-Policy (no inline script or style, nothing framed),
  ``no-store`` on every page (pages show PIN states, members, audit records), ``nosniff``,
  no referrer.
- **Errors.** A :class:`PortalRoute` turns every error a route raises into a page with the
  message a person can act on, in the portal's layout; never a problem document or a
  traceback. Not signed in: a redirect to the login page, back to the page afterwards.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, urlsplit

from fastapi import Depends, Form, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.routing import APIRoute
from fastapi.templating import Jinja2Templates
from starlette.exceptions import HTTPException as StarletteHTTPException

from evaccess.domain import errors
from evaccess.server.api.deps import get_context
from evaccess.server.api.problems import TITLES, status_of
from evaccess.server.context import Context
from evaccess.server.services import accounts
from evaccess.server.services.relations import Actor

log = logging.getLogger("evaccess.portal")

HERE = Path(__file__).parent
SESSION_COOKIE = "evaccess_session"
LOGIN_CSRF_COOKIE = "evaccess_login_csrf"

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; form-action 'self'; frame-ancestors 'none'; "
    "base-uri 'none'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "Cache-Control": "no-store",
    "Pragma": "no-cache",  # HTTP/1.0 caches: no page of the portal is stored
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
}

templates = Jinja2Templates(directory=HERE / "templates")


def _when(value: datetime | None) -> str:
    return "\u2013" if value is None else value.strftime("%Y-%m-%d %H:%M UTC")


templates.env.filters["when"] = _when


class LoginRequired(Exception):
    """No valid session: the route answers with a redirect to the login page."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Session:
    actor: Actor
    token: str
    started_at: datetime
    csrf: str

    @property
    def email(self) -> str:
        return self.actor.email


def csrf_for(token: str) -> str:
    return hmac.new(token.encode(), b"evaccess portal csrf", hashlib.sha256).hexdigest()


def client_of(request: Request) -> str:
    return request.client.host if request.client else "unknown"


async def optional_session(request: Request) -> Session | None:
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        return None
    ctx = get_context(request)
    try:
        signed = await accounts.signed_in(ctx, token, request_id=request.state.request_id)
    except errors.NotAuthenticated:
        return None
    return Session(
        actor=signed.actor, token=token, started_at=signed.started_at, csrf=csrf_for(token)
    )


async def required_session(
    session: Annotated[Session | None, Depends(optional_session)],
) -> Session:
    if session is None:
        raise LoginRequired
    return session


def _same_site(request: Request) -> bool:
    if request.headers.get("sec-fetch-site") == "cross-site":
        return False
    origin = request.headers.get("origin")
    return origin is None or origin == "null" or urlsplit(origin).netloc == request.url.netloc


async def checked_session(
    request: Request,
    session: Annotated[Session, Depends(required_session)],
    csrf: Annotated[str, Form()] = "",
) -> Session:
    """The session of a POST whose form carries this session's CSRF value."""
    sent = csrf or request.headers.get("x-csrf-token", "")
    if not _same_site(request) or not hmac.compare_digest(sent, session.csrf):
        raise errors.PermissionDenied(
            "this form is out of date or came from another site: reload the page and try again",
            code="csrf_failed",
        )
    return session


Ctx = Annotated[Context, Depends(get_context)]
CurrentSession = Annotated[Session, Depends(required_session)]
MaybeSession = Annotated[Session | None, Depends(optional_session)]
PostSession = Annotated[Session, Depends(checked_session)]
"""The session of a POST: signed in, with a valid CSRF value."""


def render(
    request: Request,
    template: str,
    session: Session | None,
    context: Mapping[str, Any] | None = None,
    *,
    status_code: int = 200,
) -> HTMLResponse:
    values = {
        "session": session,
        "csrf": session.csrf if session else "",
        "path": request.url.path,
        "flash": request.query_params.get("done"),
        **(context or {}),
    }
    return templates.TemplateResponse(request, template, values, status_code=status_code)


def see_other(url: str, *, done: str | None = None) -> RedirectResponse:
    """After a POST: back to a page (``done``, a short non-secret message, shown on it)."""
    if done:
        url += ("&" if "?" in url else "?") + "done=" + quote(done)
    return RedirectResponse(url, status_code=303)


def local_path(target: str | None, default: str = "/chargers") -> str:
    """``target`` if it is a path of this site (never another host: no open redirect)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return default
    return target


def set_session_cookie(request: Request, response: Response, token: str, max_age: int) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=max_age,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/",
    )


def new_login_csrf() -> str:
    return secrets.token_urlsafe(24)


def error_page(
    request: Request, session: Session | None, status: int, message: str, *, code: str
) -> HTMLResponse:
    response = render(
        request,
        "error.html",
        session,
        {"status": status, "title": TITLES.get(status, "Error"), "message": message, "code": code},
        status_code=status,
    )
    response.headers.update(HEADERS)
    return response


def _validation_message(exc: RequestValidationError) -> str:
    names = sorted(
        {str(e["loc"][-1]).replace("_", " ") for e in exc.errors() if e.get("loc")}
    )  # field names only, never the values sent
    return "Please check " + ", ".join(names) + "." if names else "Please check the form."


class PortalRoute(APIRoute):
    """A route of the portal: security headers on every answer, errors as pages."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def portal_handler(request: Request) -> Response:
            try:
                response = await handler(request)
            except LoginRequired:
                target = request.url.path
                if request.url.query:
                    target += "?" + request.url.query
                response = RedirectResponse(
                    "/login?next=" + quote(target if request.method == "GET" else "/"),
                    status_code=303,
                )
            except errors.EvAccessError as exc:
                status = status_of(exc)
                if status >= 500:
                    log.error("%s: %s", exc.code, exc.message)
                response = error_page(
                    request, await optional_session(request), status, exc.message, code=exc.code
                )
                if isinstance(exc, errors.Throttled) and exc.retry_after != float("inf"):
                    response.headers["Retry-After"] = str(max(1, int(exc.retry_after + 0.999)))
            except RequestValidationError as exc:
                response = error_page(
                    request,
                    await optional_session(request),
                    422,
                    _validation_message(exc),
                    code="invalid_input",
                )
            except Exception as exc:
                log.error(
                    "unexpected %s on %s %s (request %s)",
                    type(exc).__name__,
                    request.method,
                    self.path,
                    getattr(request.state, "request_id", None),
                )
                response = error_page(
                    request,
                    None,
                    500,
                    "Something went wrong on our side. Please try again; if it keeps "
                    f"happening, quote request {request.state.request_id}.",
                    code="internal_error",
                )
            for name, value in HEADERS.items():
                response.headers.setdefault(name, value)
            return response

        return portal_handler


def is_portal_path(path: str) -> bool:
    """Paths the portal answers for (everything but the API, its docs and /health)."""
    return not (
        path.startswith(("/api/", "/docs", "/redoc"))
        or path in ("/api", "/openapi.json", "/health")
    )


async def not_found_page(request: Request, exc: StarletteHTTPException) -> HTMLResponse:
    session = await optional_session(request) if hasattr(request.state, "request_id") else None
    if exc.status_code == 405:
        return error_page(
            request, session, 405, "This page cannot be used that way.", code="method_not_allowed"
        )
    return error_page(
        request,
        session,
        exc.status_code,
        "There is no such page, or you may not see it.",
        code="not_found",
    )
