"""The REST routes of ownership: transfers (start, accept, cancel, list), release, and the
end of service access (extend). Problem codes: ``transfer_pending``, ``transfer_to_self``,
``transfer_cancelled``, ``transfer_expired``, ``transfer_accepted``, ``not_service_grant``,
besides the general ones (``not_found``, ``permission_denied``, ``invalid_input``)."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter
from pydantic import BaseModel, Field

from evaccess.domain.access import GrantKind
from evaccess.domain.ownership_transfer import TransferState
from evaccess.server.api import schemas as s
from evaccess.server.api.deps import Ctx, CurrentActor
from evaccess.server.services import grants, transfers
from evaccess.server.services.bluetooth_pins import NewOwnerPin
from evaccess.server.services.ownership import HandOver

router = APIRouter(prefix="/api", tags=["ownership"])


class TransferIn(s.In):
    email: str = Field(max_length=320, description="The recipient's account email.")


class TransferOut(BaseModel):
    id: str
    charger_id: str
    serial: str
    from_email: str
    to_email: str
    state: TransferState
    created_at: datetime
    expires_at: datetime
    decided_at: datetime | None


class HandOverOut(BaseModel):
    """What the handover revoked, and what happened to the Bluetooth PIN: ``rotated`` (a
    new one is on its way to the charger), ``unchangeable`` (see ``warning``) or ``none``."""

    new_owner_id: str | None
    revoked: dict[str, int]
    bluetooth_pin: NewOwnerPin
    warning: str | None


class AcceptedTransferOut(HandOverOut):
    transfer: TransferOut


class GrantEndIn(s.In):
    expires_at: datetime = Field(description="The new end of the service access (future).")


def _transfer(view: transfers.TransferView) -> TransferOut:
    return TransferOut(
        id=view.id,
        charger_id=view.charger_id,
        serial=view.serial,
        from_email=view.from_email,
        to_email=view.to_email,
        state=view.state,
        created_at=view.created_at,
        expires_at=view.expires_at,
        decided_at=view.decided_at,
    )


def _handover(handover: HandOver) -> HandOverOut:
    return HandOverOut(
        new_owner_id=handover.new_owner_id,
        revoked=handover.revoked,
        bluetooth_pin=handover.bluetooth_pin,
        warning=handover.warning,
    )


@router.post("/chargers/{charger_id}/transfers", response_model=TransferOut, status_code=201)
async def start_transfer(
    charger_id: str, body: TransferIn, ctx: Ctx, actor: CurrentActor
) -> TransferOut:
    """Offer your charger to another account; you keep full access until it is accepted
    (open for 14 days)."""
    return _transfer(await transfers.start_transfer(ctx, actor, charger_id, body.email))


@router.get("/transfers", response_model=list[TransferOut])
async def list_transfers(ctx: Ctx, actor: CurrentActor) -> list[TransferOut]:
    """The transfers you started or were offered, newest first."""
    return [_transfer(v) for v in await transfers.list_transfers(ctx, actor)]


@router.post("/transfers/{transfer_id}/accept", response_model=AcceptedTransferOut)
async def accept_transfer(transfer_id: str, ctx: Ctx, actor: CurrentActor) -> AcceptedTransferOut:
    """Become the charger's owner: everything of the previous ownership ends at once."""
    accepted = await transfers.accept_transfer(ctx, actor, transfer_id)
    return AcceptedTransferOut(
        transfer=_transfer(accepted.transfer), **_handover(accepted.handover).model_dump()
    )


@router.post("/transfers/{transfer_id}/cancel", response_model=TransferOut)
async def cancel_transfer(transfer_id: str, ctx: Ctx, actor: CurrentActor) -> TransferOut:
    """Withdraw a transfer you started, before it is accepted."""
    return _transfer(await transfers.cancel_transfer(ctx, actor, transfer_id))


@router.post("/chargers/{charger_id}/release", response_model=HandOverOut)
async def release(charger_id: str, ctx: Ctx, actor: CurrentActor) -> HandOverOut:
    """Give up your charger without a buyer (moving out): everything derived from your
    ownership ends and the charger has no owner."""
    return _handover(await transfers.release(ctx, actor, charger_id))


@router.patch("/chargers/{charger_id}/grants/{grant_id}", response_model=s.GrantOut)
async def extend_grant(
    charger_id: str, grant_id: str, body: GrantEndIn, ctx: Ctx, actor: CurrentActor
) -> s.GrantOut:
    """Move the end of someone's service access (ending it now: DELETE the grant)."""
    view = await grants.extend_grant(ctx, actor, charger_id, grant_id, body.expires_at)
    g = view.grant
    return s.GrantOut(
        id=g.id,
        user_id=g.user_id,
        email=view.email,
        kind=GrantKind(g.kind),
        created_at=g.created_at,
        expires_at=g.expires_at,
    )
