"""Chargers: the list, and Charger Info with its Bluetooth PIN (state, reveal with the
password asked again in an older session, reveal history, enable, change), security events,
re-enabling pairing and making the charger forget phones."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request, Response

from evaccess.domain import errors
from evaccess.server.portal.web import (
    Ctx,
    CurrentSession,
    PortalRoute,
    PostSession,
    Session,
    client_of,
    csrf_for,
    render,
    see_other,
    set_session_cookie,
)
from evaccess.server.services import accounts, bluetooth_pins, chargers, outbox, security_events
from evaccess.server.services.chargers import ChargerView

router = APIRouter(route_class=PortalRoute, include_in_schema=False)


def _matches(view: ChargerView, query: str, status: str) -> bool:
    c = view.charger
    if status == "online" and not c.online:
        return False
    if status == "offline" and c.online:
        return False
    if not query:
        return True
    haystack = " ".join((c.serial, c.vendor, c.model, c.firmware)).casefold()
    return all(word in haystack for word in query.casefold().split())


@router.get("/chargers")
async def list_page(
    request: Request, ctx: Ctx, session: CurrentSession, q: str = "", status: str = "all"
) -> Response:
    q = q.strip()[:100]
    views = await chargers.list_chargers(ctx, session.actor)
    shown = [v for v in views if _matches(v, q, status)]
    values = {"chargers": shown, "total": len(views), "q": q, "status": status}
    if request.headers.get("hx-request") == "true":
        return render(request, "chargers/_rows.html", session, values)
    return render(request, "chargers/list.html", session, values)


async def _info(ctx: Ctx, session: Session, charger_id: str, **extra: Any) -> dict[str, Any]:
    actor = session.actor
    view = await chargers.get_charger(ctx, actor, charger_id)
    pin = await bluetooth_pins.state(ctx, actor, charger_id) if view.charger.has_bluetooth else None
    try:
        reveals = await bluetooth_pins.reveal_history(ctx, actor, charger_id)
    except errors.PermissionDenied:
        reveals = None
    try:
        events = await security_events.of_charger(ctx, actor, charger_id, limit=20)
    except errors.PermissionDenied:
        events = None
    return {
        "view": view,
        "charger": view.charger,
        "pin": pin,
        "reveals": reveals,
        "events": events,
        "may_manage_phones": "owner" in view.bases or "service" in view.bases,
        **extra,
    }


@router.get("/chargers/{charger_id}")
async def info_page(
    request: Request, ctx: Ctx, session: CurrentSession, charger_id: str
) -> Response:
    return render(request, "chargers/info.html", session, await _info(ctx, session, charger_id))


def _fresh(ctx: Ctx, session: Session) -> bool:
    return ctx.clock.now() - session.started_at < timedelta(seconds=ctx.reauth_after_s)


@router.post("/chargers/{charger_id}/reveal")
async def reveal(
    request: Request,
    ctx: Ctx,
    session: PostSession,
    charger_id: str,
    password: Annotated[str, Form(max_length=1024)] = "",
) -> Response:
    """Show the PIN in the answer to this POST (never in a URL, never cached). A session
    older than ``ctx.reauth_after_s`` (5 minutes) first confirms the password; that starts a new session."""
    fresh_cookie: tuple[str, int] | None = None
    if not _fresh(ctx, session):
        if not password:
            return render(
                request,
                "chargers/reauth.html",
                session,
                await _info(ctx, session, charger_id),
            )
        try:
            issued = await accounts.reauthenticate(
                ctx, session.token, password, client=client_of(request)
            )
        except errors.NotAuthenticated:
            values = await _info(ctx, session, charger_id, message="Wrong password.")
            return render(request, "chargers/reauth.html", session, values, status_code=401)
        fresh_cookie = (issued.token, int(ctx.token_ttl_s))
        session = Session(
            actor=session.actor,
            token=issued.token,
            started_at=ctx.clock.now(),
            csrf=csrf_for(issued.token),
        )
    revealed = await bluetooth_pins.reveal(ctx, session.actor, charger_id)
    values = await _info(ctx, session, charger_id, revealed=revealed)
    response = render(request, "chargers/info.html", session, values)
    if fresh_cookie is not None:
        set_session_cookie(request, response, *fresh_cookie)
    return response


@router.post("/chargers/{charger_id}/bluetooth-pin/enable")
async def enable_pin(ctx: Ctx, session: PostSession, charger_id: str) -> Response:
    await bluetooth_pins.enable(ctx, session.actor, charger_id)
    return see_other(
        f"/chargers/{charger_id}", done="The Bluetooth PIN is on; it is being sent to the charger."
    )


@router.post("/chargers/{charger_id}/bluetooth-pin/change")
async def change_pin(
    ctx: Ctx,
    session: PostSession,
    charger_id: str,
    pin: Annotated[str, Form(max_length=16)] = "",
) -> Response:
    """A PIN of one's own choice, or (left empty) a new random one."""
    state = await bluetooth_pins.change(ctx, session.actor, charger_id, pin.strip() or None)
    sent = (
        "is being sent to the charger"
        if state.charger_online
        else "waits for the charger, which is offline: it takes effect when it next connects"
    )
    return see_other(
        f"/chargers/{charger_id}", done=f"The new Bluetooth PIN {sent}; reveal it to see it."
    )


@router.post("/chargers/{charger_id}/bluetooth/revoke-phones")
async def revoke_phones(
    ctx: Ctx,
    session: PostSession,
    charger_id: str,
    phone_id: Annotated[str, Form(max_length=64)] = "",
    back: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    sent = await bluetooth_pins.revoke_phones(ctx, session.actor, charger_id, phone_id or None)
    target = f"/chargers/{charger_id}/access" if back == "access" else f"/chargers/{charger_id}"
    what = "That phone" if phone_id else "Every phone"
    return see_other(target, done=f"{what} must prove the Bluetooth PIN again{_when(sent)}.")


def _when(sent: outbox.Delivery) -> str:
    """Said of a command whose charger is offline (nothing when it is on its way)."""
    if sent.charger_online:
        return ""
    return " once the charger, which is offline, next connects"


@router.post("/chargers/{charger_id}/bluetooth/reenable-pairing")
async def reenable_pairing(ctx: Ctx, session: PostSession, charger_id: str) -> Response:
    sent = await bluetooth_pins.reenable_pairing(ctx, session.actor, charger_id)
    return see_other(
        f"/chargers/{charger_id}",
        done=f"PIN pairing is being re-enabled on the charger{_when(sent)}.",
    )
