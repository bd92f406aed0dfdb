"""Ownership: transfers (offered to me or started by me: accept, cancel, start one for a
charger I own), releasing a charger I own (with a confirm step), and claims through support
(mine and those against my chargers: withdraw, object; filing one with the purchase
agreement). The same services as ``api/ownership.py`` and ``api/claims.py``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, Request, Response, UploadFile

from evaccess.domain import errors
from evaccess.domain.access import Basis
from evaccess.domain.claim import OPEN, ClaimParty
from evaccess.domain.ownership_transfer import TransferState
from evaccess.server.portal.web import (
    Ctx,
    CurrentSession,
    PortalRoute,
    PostSession,
    Session,
    render,
    see_other,
)
from evaccess.server.services import chargers, claims, transfers
from evaccess.server.services.bluetooth_pins import NewOwnerPin
from evaccess.server.services.chargers import ChargerView
from evaccess.server.services.ownership import HandOver

router = APIRouter(route_class=PortalRoute, include_in_schema=False)


def _pin_note(handover: HandOver) -> str:
    if handover.bluetooth_pin is NewOwnerPin.ROTATED:
        return " A new Bluetooth PIN is on its way to the charger."
    if handover.bluetooth_pin is NewOwnerPin.UNCHANGEABLE and handover.warning:
        return f" Note: {handover.warning}."
    return ""


async def _owned(ctx: Ctx, session: Session) -> list[ChargerView]:
    views = await chargers.list_chargers(ctx, session.actor)
    return sorted((v for v in views if Basis.OWNER in v.bases), key=lambda v: v.charger.serial)


@router.get("/ownership")
async def ownership_page(request: Request, ctx: Ctx, session: CurrentSession) -> Response:
    actor = session.actor
    every = await transfers.list_transfers(ctx, actor)
    mine = await claims.list_claims(ctx, actor)
    values = {
        "open_transfers": [t for t in every if t.state is TransferState.OPEN],
        "past_transfers": [t for t in every if t.state is not TransferState.OPEN][:20],
        "owned": await _owned(ctx, session),
        "claims": mine,
        "open_states": OPEN,
        "now": ctx.clock.now(),
        "me": actor.email.casefold(),
        "max_mb": f"{ctx.claim_document_max_bytes / (1024 * 1024):g}",
        "claimant": ClaimParty.CLAIMANT,
        "owner": ClaimParty.OWNER,
    }
    return render(request, "ownership/index.html", session, values)


@router.post("/ownership/transfers")
async def start_transfer(
    ctx: Ctx,
    session: PostSession,
    charger_id: Annotated[str, Form(max_length=64)] = "",
    email: Annotated[str, Form(max_length=320)] = "",
    keep_service_access: Annotated[bool, Form()] = False,
) -> Response:
    if not charger_id:
        raise errors.InvalidInput("choose the charger to transfer")
    view = await transfers.start_transfer(
        ctx, session.actor, charger_id, email, keep_service_access=keep_service_access
    )
    return see_other(
        "/ownership",
        done=f"Charger {view.serial} is offered to {view.to_email} until "
        f"{view.expires_at:%Y-%m-%d %H:%M} UTC. You keep it until they accept.",
    )


@router.post("/ownership/transfers/{transfer_id}/accept")
async def accept_transfer(ctx: Ctx, session: PostSession, transfer_id: str) -> Response:
    accepted = await transfers.accept_transfer(ctx, session.actor, transfer_id)
    return see_other(
        "/ownership",
        done=f"You own charger {accepted.transfer.serial} now; every access of the previous "
        "ownership ended." + _pin_note(accepted.handover),
    )


@router.post("/ownership/transfers/{transfer_id}/cancel")
async def cancel_transfer(ctx: Ctx, session: PostSession, transfer_id: str) -> Response:
    view = await transfers.cancel_transfer(ctx, session.actor, transfer_id)
    return see_other("/ownership", done=f"The transfer of {view.serial} is cancelled.")


async def _release_values(ctx: Ctx, session: Session, charger_id: str) -> dict[str, object]:
    view = await chargers.get_charger(ctx, session.actor, charger_id)
    if Basis.OWNER not in view.bases:
        raise errors.PermissionDenied("only the charger's owner may release it")
    return {"charger": view.charger}


@router.get("/ownership/release/{charger_id}")
async def release_confirm(
    request: Request, ctx: Ctx, session: CurrentSession, charger_id: str
) -> Response:
    """The confirm step: what releasing ends, and a checkbox to say so."""
    values = await _release_values(ctx, session, charger_id)
    return render(request, "ownership/release.html", session, values)


@router.post("/ownership/release/{charger_id}")
async def release(
    request: Request,
    ctx: Ctx,
    session: PostSession,
    charger_id: str,
    confirm: Annotated[str, Form(max_length=8)] = "",
) -> Response:
    if confirm != "yes":
        values = await _release_values(ctx, session, charger_id)
        values["message"] = "Tick the box to confirm that every access to the charger ends."
        return render(request, "ownership/release.html", session, values, status_code=422)
    view = await chargers.get_charger(ctx, session.actor, charger_id)
    await transfers.release(ctx, session.actor, charger_id)
    return see_other(
        "/ownership",
        done=f"Charger {view.charger.serial} is released: it has no owner now, and every "
        "access to it ended.",
    )


@router.post("/ownership/claims")
async def file_claim(
    ctx: Ctx,
    session: PostSession,
    document: Annotated[UploadFile, File()],
    serial: Annotated[str, Form(max_length=64)] = "",
    installation_address: Annotated[str, Form(max_length=500)] = "",
    installer_name: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    """The claim with its purchase agreement (read up to one byte past the limit, so that
    the service refuses a larger one by its size)."""
    data = await document.read(ctx.claim_document_max_bytes + 1)
    view = await claims.file_claim(
        ctx,
        session.actor,
        serial,
        installation_address=installation_address,
        installer_name=installer_name,
        document=data,
    )
    told = (
        f" Its owner is told and may object until {view.objection_until:%Y-%m-%d %H:%M} UTC."
        if view.objection_until
        else ""
    )
    return see_other(
        "/ownership",
        done=f"Your claim of {view.serial} is filed; two support agents review it." + told,
    )


@router.post("/ownership/claims/{claim_id}/withdraw")
async def withdraw_claim(ctx: Ctx, session: PostSession, claim_id: str) -> Response:
    view = await claims.withdraw(ctx, session.actor, claim_id)
    return see_other("/ownership", done=f"Your claim of {view.serial} is withdrawn.")


@router.post("/ownership/claims/{claim_id}/object")
async def object_to_claim(ctx: Ctx, session: PostSession, claim_id: str) -> Response:
    view = await claims.object_to(ctx, session.actor, claim_id)
    return see_other(
        "/ownership", done=f"You objected: the claim of {view.serial} is stopped and you keep it."
    )
