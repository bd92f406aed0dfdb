"""Who can get in, per charger: its owner, the people it is shared with (and until when),
the phones holding a Bluetooth credential, the people whose keypad PIN opens it, open
invitations and an open transfer of its ownership; each with the button that ends it.
Each section shows only what the person's permission allows (the services decide)."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any, TypeVar

from fastapi import APIRouter, Request, Response

from evaccess.domain.access import GrantKind
from evaccess.domain.errors import PermissionDenied
from evaccess.domain.ownership_transfer import TransferState
from evaccess.server.portal.web import (
    Ctx,
    CurrentSession,
    PortalRoute,
    PostSession,
    render,
    see_other,
)
from evaccess.server.services import (
    bluetooth_pins,
    chargers,
    grants,
    invitations,
    keypad_pins,
    transfers,
)

router = APIRouter(route_class=PortalRoute, include_in_schema=False)

T = TypeVar("T")


async def _if_allowed(call: Awaitable[T]) -> T | None:
    """What a service shows, or ``None`` (the section is left out) where it refuses."""
    try:
        return await call
    except PermissionDenied:
        return None


def _page(charger_id: str) -> str:
    return f"/chargers/{charger_id}/access"


@router.get("/chargers/{charger_id}/access")
async def access_page(
    request: Request, ctx: Ctx, session: CurrentSession, charger_id: str
) -> Response:
    actor = session.actor
    view = await chargers.get_charger(ctx, actor, charger_id)
    shared = await _if_allowed(grants.list_grants(ctx, actor, charger_id))
    phones = (
        await _if_allowed(bluetooth_pins.phones(ctx, actor, charger_id))
        if view.charger.has_bluetooth
        else None
    )
    keypad = (
        await _if_allowed(keypad_pins.holders(ctx, actor, charger_id))
        if view.charger.has_keypad
        else None
    )
    invited = await _if_allowed(invitations.list_invitations(ctx, actor, charger_id))
    offered = [
        t
        for t in await transfers.list_transfers(ctx, actor)
        if t.charger_id == view.charger.id
        and t.state is TransferState.OPEN
        and t.from_email == actor.email
    ]
    values: dict[str, Any] = {
        "view": view,
        "charger": view.charger,
        "owner": await chargers.owner_of(ctx, actor, charger_id),
        "grants": None
        if shared is None
        else [g for g in shared if g.grant.kind != GrantKind.OWNER],
        "phones": phones,
        "keypad": keypad,
        "invitations": invited,
        "transfers": offered,
    }
    return render(request, "chargers/access.html", session, values)


@router.post("/chargers/{charger_id}/access/grants/{grant_id}/revoke")
async def revoke_grant(ctx: Ctx, session: PostSession, charger_id: str, grant_id: str) -> Response:
    await grants.revoke_grant(ctx, session.actor, charger_id, grant_id)
    return see_other(_page(charger_id), done="Their access has ended.")


@router.post("/chargers/{charger_id}/access/invitations/{invitation_id}/revoke")
async def revoke_invitation(
    ctx: Ctx, session: PostSession, charger_id: str, invitation_id: str
) -> Response:
    await invitations.revoke_invitation(ctx, session.actor, charger_id, invitation_id)
    return see_other(_page(charger_id), done="The invitation is withdrawn.")


@router.post("/chargers/{charger_id}/access/transfers/{transfer_id}/cancel")
async def cancel_transfer(
    ctx: Ctx, session: PostSession, charger_id: str, transfer_id: str
) -> Response:
    cancelled = await transfers.cancel_transfer(ctx, session.actor, transfer_id)
    return see_other(_page(cancelled.charger_id), done="The transfer is cancelled.")
