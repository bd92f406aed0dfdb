"""The REST routes of ownership: transfers (start, accept, cancel, list), release, and the
end of service access (extend). Problem codes: ``transfer_pending``, ``transfer_to_self``,
``transfer_cancelled``, ``transfer_expired``, ``transfer_accepted``, ``not_service_grant``,
besides the general ones (``not_found``, ``permission_denied``, ``invalid_input``)."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter
from pydantic import Field

from evaccess.domain.ownership_transfer import TransferState
from evaccess.server.api import schemas as s
from evaccess.server.api.deps import Ctx, CurrentActor
from evaccess.server.api.problems import documented
from evaccess.server.services import grants, transfers
from evaccess.server.services.bluetooth_pins import NewOwnerPin

router = APIRouter(prefix="/api", tags=["ownership"], responses=documented(500))


class TransferIn(s.In):
    email: s.Text = Field(max_length=320, description="The recipient's account email.")
    keep_service_access: s.Flag = Field(
        default=False,
        description="An installer handing over to the customer: keep service access "
        "(14 days, which the new owner extends or ends) after acceptance.",
    )


class TransferOut(s.Out):
    id: str
    charger_id: str
    serial: str
    from_email: str
    to_email: str
    keep_service_access: bool
    state: TransferState
    created_at: datetime
    expires_at: datetime
    decided_at: datetime | None


class HandOverOut(s.Out):
    """What the handover revoked, and what happened to the Bluetooth PIN: ``rotated`` (a
    new one is on its way to the charger), ``unchangeable`` (see ``warning``) or ``none``."""

    new_owner_id: str | None
    revoked: dict[str, int]
    bluetooth_pin: NewOwnerPin
    warning: str | None


class AcceptedTransferOut(HandOverOut):
    transfer: TransferOut


class GrantEndIn(s.In):
    expires_at: s.Instant = Field(description="The new end of the service access (future).")


@router.post(
    "/chargers/{charger_id}/transfers",
    responses=documented(401, 403, 404, 409, 422),
    response_model=TransferOut,
    status_code=201,
)
async def start_transfer(
    charger_id: s.Text, body: TransferIn, ctx: Ctx, actor: CurrentActor
) -> TransferOut:
    """Offer your charger to another account; you keep full access until it is accepted
    (open for 14 days)."""
    view = await transfers.start_transfer(
        ctx, actor, charger_id, body.email, keep_service_access=body.keep_service_access
    )
    return TransferOut.model_validate(view)


@router.get("/transfers", responses=documented(401), response_model=list[TransferOut])
async def list_transfers(ctx: Ctx, actor: CurrentActor) -> list[TransferOut]:
    """The transfers you started or were offered, newest first."""
    return [TransferOut.model_validate(v) for v in await transfers.list_transfers(ctx, actor)]


@router.post(
    "/transfers/{transfer_id}/accept",
    responses=documented(401, 403, 404, 409, 422),
    response_model=AcceptedTransferOut,
)
async def accept_transfer(
    transfer_id: s.Text, ctx: Ctx, actor: CurrentActor
) -> AcceptedTransferOut:
    """Become the charger's owner: everything of the previous ownership ends at once."""
    accepted = await transfers.accept_transfer(ctx, actor, transfer_id)
    handover = HandOverOut.model_validate(accepted.handover)
    return AcceptedTransferOut(
        transfer=TransferOut.model_validate(accepted.transfer), **handover.model_dump()
    )


@router.post(
    "/transfers/{transfer_id}/cancel",
    responses=documented(401, 403, 404, 409, 422),
    response_model=TransferOut,
)
async def cancel_transfer(transfer_id: s.Text, ctx: Ctx, actor: CurrentActor) -> TransferOut:
    """Withdraw a transfer you started, before it is accepted."""
    return TransferOut.model_validate(await transfers.cancel_transfer(ctx, actor, transfer_id))


@router.post(
    "/chargers/{charger_id}/release",
    responses=documented(401, 403, 404, 409, 422),
    response_model=HandOverOut,
)
async def release(charger_id: s.Text, ctx: Ctx, actor: CurrentActor) -> HandOverOut:
    """Give up your charger without a buyer (moving out): everything derived from your
    ownership ends and the charger has no owner."""
    return HandOverOut.model_validate(await transfers.release(ctx, actor, charger_id))


@router.patch(
    "/chargers/{charger_id}/grants/{grant_id}",
    responses=documented(401, 403, 404, 409, 422),
    response_model=s.GrantOut,
)
async def extend_grant(
    charger_id: s.Text, grant_id: s.Text, body: GrantEndIn, ctx: Ctx, actor: CurrentActor
) -> s.GrantOut:
    """Move the end of someone's service access (ending it now: DELETE the grant)."""
    view = await grants.extend_grant(ctx, actor, charger_id, grant_id, body.expires_at)
    return s.GrantOut.model_validate(view)
