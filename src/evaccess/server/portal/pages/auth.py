"""Logging in and out: the API's accounts, tokens and login throttles, kept in a cookie."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import APIRouter, Form, Request, Response

from evaccess.domain import errors
from evaccess.server.portal.web import (
    LOGIN_CSRF_COOKIE,
    SESSION_COOKIE,
    Ctx,
    MaybeSession,
    PortalRoute,
    PostSession,
    client_of,
    local_path,
    new_login_csrf,
    render,
    see_other,
    set_session_cookie,
)
from evaccess.server.services import accounts

router = APIRouter(route_class=PortalRoute, include_in_schema=False)


def _login_page(
    request: Request, next_url: str, *, message: str | None = None, email: str = "", status: int
) -> Response:
    token = new_login_csrf()
    response = render(
        request,
        "login.html",
        None,
        {"login_csrf": token, "next": next_url, "message": message, "email": email},
        status_code=status,
    )
    response.set_cookie(
        LOGIN_CSRF_COOKIE,
        token,
        max_age=3600,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/login",
    )
    return response


@router.get("/")
async def home(session: MaybeSession) -> Response:
    return see_other("/chargers" if session else "/login")


@router.get("/login")
async def login_form(request: Request, session: MaybeSession, next: str = "") -> Response:
    if session is not None:
        return see_other(local_path(next))
    return _login_page(request, local_path(next), status=200)


@router.post("/login")
async def login(
    request: Request,
    ctx: Ctx,
    email: Annotated[str, Form(max_length=320)] = "",
    password: Annotated[str, Form(max_length=1024)] = "",
    csrf: Annotated[str, Form()] = "",
    next: Annotated[str, Form()] = "",
) -> Response:
    target = local_path(next)
    expected = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    if not expected or not hmac.compare_digest(csrf, expected):
        message = "The login form had expired. Please try again."
        return _login_page(request, target, message=message, email=email, status=403)
    try:
        issued = await accounts.login(ctx, email, password, client=client_of(request))
    except errors.NotAuthenticated:
        message = "Wrong email or password."
        return _login_page(request, target, message=message, email=email, status=401)
    except (errors.Throttled, errors.ClusterUnavailable) as exc:
        status = 429 if isinstance(exc, errors.Throttled) else 503
        return _login_page(request, target, message=exc.message, email=email, status=status)
    response = see_other(target)
    set_session_cookie(request, response, issued.token, int(ctx.token_ttl_s))
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/login")
    return response


@router.post("/logout")
async def logout(ctx: Ctx, session: PostSession) -> Response:
    await accounts.logout(ctx, session.token)
    response = see_other("/login")
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response
