"""Account settings: one's own password, and one's personal keypad PIN (charger owners: it
works at the chargers they own; a generated one is shown once, in the answer to the POST)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request, Response

from evaccess.domain import errors
from evaccess.server.portal.web import (
    Ctx,
    CurrentSession,
    PortalRoute,
    PostSession,
    Session,
    client_of,
    render,
    see_other,
    set_session_cookie,
)
from evaccess.server.services import accounts, keypad_pins

router = APIRouter(route_class=PortalRoute, include_in_schema=False)


@router.get("/account")
async def account_page(request: Request, session: CurrentSession) -> Response:
    return render(request, "account.html", session)


@router.post("/account/password")
async def change_password(
    request: Request,
    ctx: Ctx,
    session: PostSession,
    current: Annotated[str, Form(max_length=1024)] = "",
    new: Annotated[str, Form(max_length=1024)] = "",
    again: Annotated[str, Form(max_length=1024)] = "",
) -> Response:
    """Every session of the account ends (this one too); this browser goes on in a new one."""
    if new != again:
        values = {"message": "The new password and its repetition differ."}
        return render(request, "account.html", session, values, status_code=422)
    try:
        await accounts.change_password(ctx, session.actor, current, new)
    except errors.NotAuthenticated as exc:
        return render(request, "account.html", session, {"message": exc.message}, status_code=401)
    issued = await accounts.login(ctx, session.email, new, client=client_of(request))
    response = see_other(
        "/account", done="Your password is changed; your other sessions are signed out."
    )
    set_session_cookie(request, response, issued.token, int(ctx.token_ttl_s))
    return response


@router.post("/account/keypad-pin")
async def set_personal_pin(
    request: Request,
    ctx: Ctx,
    session: PostSession,
    pin: Annotated[str, Form(max_length=16)] = "",
    generate: Annotated[str, Form(max_length=8)] = "",
) -> Response:
    chosen = None if generate else pin.strip() or None
    result = await keypad_pins.set_personal_pin(ctx, session.actor, chosen)
    if result.generated_pin is None:
        return see_other("/account", done=f"Your keypad PIN is set ({result.digits} digits).")
    return _generated(request, session, result.generated_pin)


def _generated(request: Request, session: Session, pin: str) -> Response:
    values = {"generated": pin, "flash": "Your new keypad PIN is set."}
    return render(request, "account.html", session, values)


@router.post("/account/keypad-pin/delete")
async def delete_personal_pin(ctx: Ctx, session: PostSession) -> Response:
    await keypad_pins.delete_personal_pin(ctx, session.actor)
    return see_other("/account", done="Your keypad PIN is deleted.")
