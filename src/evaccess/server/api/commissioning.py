"""``POST /api/commissioning/scan``: the phone app read a charger's QR sticker and sends
its payload; the logged-in account becomes the owner and sees the Bluetooth PIN."""

from __future__ import annotations

from fastapi import APIRouter, Response
from pydantic import BaseModel, Field

from evaccess.server.api import schemas as s
from evaccess.server.api.deps import Ctx, CurrentActor
from evaccess.server.api.problems import documented
from evaccess.server.services import commissioning

router = APIRouter(prefix="/api", tags=["commissioning"], responses=documented(500))


class ScanIn(s.In):
    payload: s.Text = Field(
        max_length=200, description="The sticker's QR text: EVA1:<serial>:<code>."
    )


class CommissionedOut(BaseModel):
    charger_id: str
    serial: str
    bluetooth_pin: s.RevealedPinOut | None
    """Revealed at once (audited); null when the charger has no Bluetooth PIN."""


@router.post(
    "/commissioning/scan",
    response_model=CommissionedOut,
    responses=documented(
        401,
        403,
        422,
        429,
        notes={
            403: "The code is not valid (`commissioning_code_invalid`), used "
            "(`commissioning_code_used`) or expired (`commissioning_code_expired`).",
            429: "Too many failed scans (`commissioning_throttled`).",
        },
    ),
)
async def scan(body: ScanIn, response: Response, ctx: Ctx, actor: CurrentActor) -> CommissionedOut:
    done = await commissioning.scan(ctx, actor, body.payload)
    response.headers["Cache-Control"] = "no-store"
    response.headers["Pragma"] = "no-cache"
    pin = (
        s.RevealedPinOut(pin=done.pin.pin, status=done.pin.status, basis=done.pin.basis)
        if done.pin is not None
        else None
    )
    return CommissionedOut(charger_id=done.charger_id, serial=done.serial, bluetooth_pin=pin)
