"""A charger's Bluetooth PIN: state, enable, reveal, change, reveal history; forgetting
phones and re-enabling pairing (both delivered over OCPP)."""

from __future__ import annotations

from fastapi import APIRouter, Response

from evaccess.server.api import schemas as s
from evaccess.server.api.common import NO_STORE
from evaccess.server.api.deps import Ctx, CurrentActor
from evaccess.server.api.problems import documented
from evaccess.server.services import bluetooth_pins, outbox

router = APIRouter(prefix="/api", responses=documented(500))


def _pin_state(st: bluetooth_pins.PinState) -> s.PinStateOut:
    return s.PinStateOut.model_validate(st)


def _command(delivery: outbox.Delivery) -> s.CommandOut:
    detail = (
        "The charger is connected: the command is on its way."
        if delivery.charger_online
        else "The charger is offline: it gets the command when it next connects."
    )
    return s.CommandOut(
        command_id=delivery.command_id,
        kind=delivery.kind.value,
        charger_online=delivery.charger_online,
        detail=detail,
    )


@router.get(
    "/chargers/{charger_id}/bluetooth-pin",
    responses=documented(401, 404, 422),
    response_model=s.PinStateOut,
    tags=["bluetooth-pin"],
)
async def pin_state(charger_id: s.Text, ctx: Ctx, actor: CurrentActor) -> s.PinStateOut:
    return _pin_state(await bluetooth_pins.state(ctx, actor, charger_id))


@router.post(
    "/chargers/{charger_id}/bluetooth-pin/enable",
    responses=documented(401, 403, 404, 409, 422),
    response_model=s.PinStateOut,
    tags=["bluetooth-pin"],
)
async def enable_pin(charger_id: s.Text, ctx: Ctx, actor: CurrentActor) -> s.PinStateOut:
    return _pin_state(await bluetooth_pins.enable(ctx, actor, charger_id))


@router.post(
    "/chargers/{charger_id}/bluetooth-pin/reveal",
    responses=documented(401, 403, 404, 422, 503),
    response_model=s.RevealedPinOut,
    tags=["bluetooth-pin"],
)
async def reveal_pin(
    charger_id: s.Text, response: Response, ctx: Ctx, actor: CurrentActor
) -> s.RevealedPinOut:
    revealed = await bluetooth_pins.reveal(ctx, actor, charger_id)
    response.headers.update(NO_STORE)
    response.headers["Pragma"] = "no-cache"
    return s.RevealedPinOut.model_validate(revealed)


@router.post(
    "/chargers/{charger_id}/bluetooth-pin/change",
    responses=documented(401, 403, 404, 409, 422),
    response_model=s.PinStateOut,
    tags=["bluetooth-pin"],
)
async def change_pin(
    charger_id: s.Text, body: s.PinChangeIn, ctx: Ctx, actor: CurrentActor
) -> s.PinStateOut:
    return _pin_state(await bluetooth_pins.change(ctx, actor, charger_id, body.pin))


@router.get(
    "/chargers/{charger_id}/bluetooth-pin/reveals",
    responses=documented(401, 403, 404, 422),
    response_model=list[s.RevealEventOut],
    tags=["bluetooth-pin"],
)
async def reveal_history(
    charger_id: s.Text, ctx: Ctx, actor: CurrentActor
) -> list[s.RevealEventOut]:
    events = await bluetooth_pins.reveal_history(ctx, actor, charger_id)
    return [s.RevealEventOut.model_validate(e) for e in events]


@router.post(
    "/chargers/{charger_id}/bluetooth/revoke-phones",
    responses=documented(401, 403, 404, 422),
    status_code=202,
    response_model=s.CommandOut,
    tags=["bluetooth-pin"],
)
async def revoke_phones(
    charger_id: s.Text, body: s.RevokePhonesIn, ctx: Ctx, actor: CurrentActor
) -> s.CommandOut:
    """Make the charger forget one phone's credential (or all): delivered over OCPP, at
    once when the charger is connected (``charger_online``), else on its next connect."""
    return _command(await bluetooth_pins.revoke_phones(ctx, actor, charger_id, body.phone_id))


@router.post(
    "/chargers/{charger_id}/bluetooth/reenable-pairing",
    responses=documented(401, 403, 404, 422),
    status_code=202,
    response_model=s.CommandOut,
    tags=["bluetooth-pin"],
)
async def reenable_pairing(charger_id: s.Text, ctx: Ctx, actor: CurrentActor) -> s.CommandOut:
    """Lift the charger's 100-failure cap on PIN pairing: delivered over OCPP, at once when
    the charger is connected (``charger_online``), else on its next connect."""
    return _command(await bluetooth_pins.reenable_pairing(ctx, actor, charger_id))
