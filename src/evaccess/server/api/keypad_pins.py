"""Keypad PINs: your own per organisation, your personal one (``/api/me/keypad-pin``), a
member's (admins), and the organisation's PIN crowding."""

from __future__ import annotations

from fastapi import APIRouter, Response

from evaccess.server.api import schemas as s
from evaccess.server.api.common import NO_STORE
from evaccess.server.api.deps import Ctx, CurrentActor
from evaccess.server.api.problems import documented
from evaccess.server.services import keypad_pins

router = APIRouter(prefix="/api", responses=documented(500))


def _keypad_out(result: keypad_pins.KeypadPinSet, response: Response) -> s.KeypadPinOut:
    if result.generated_pin is None:
        return s.KeypadPinOut.model_validate(result)
    response.headers.update(NO_STORE)
    return s.GeneratedKeypadPinOut.model_validate(result)


@router.put(
    "/organisations/{org_id}/keypad-pin",
    responses=documented(401, 404, 409, 422, 429),
    response_model=s.KeypadPinOut,
    tags=["keypad"],
)
async def set_own_keypad_pin(
    org_id: s.Text, body: s.KeypadPinIn, response: Response, ctx: Ctx, actor: CurrentActor
) -> s.KeypadPinOut:
    return _keypad_out(
        await keypad_pins.set_pin(ctx, actor, org_id, actor.user_id, body.pin), response
    )


@router.post(
    "/organisations/{org_id}/keypad-pin/generate",
    responses=documented(400, 401, 404, 409, 422),
    response_model=s.GeneratedKeypadPinOut,
    tags=["keypad"],
)
async def generate_own_keypad_pin(
    org_id: s.Text, response: Response, ctx: Ctx, actor: CurrentActor
) -> s.KeypadPinOut:
    return _keypad_out(await keypad_pins.set_pin(ctx, actor, org_id, actor.user_id, None), response)


@router.delete(
    "/organisations/{org_id}/keypad-pin",
    responses=documented(401, 404, 422),
    status_code=204,
    tags=["keypad"],
)
async def delete_own_keypad_pin(org_id: s.Text, ctx: Ctx, actor: CurrentActor) -> None:
    await keypad_pins.delete_pin(ctx, actor, org_id, actor.user_id)


@router.put(
    "/me/keypad-pin",
    responses=documented(401, 403, 409, 422, 429),
    response_model=s.KeypadPinOut,
    tags=["keypad"],
)
async def set_personal_keypad_pin(
    body: s.KeypadPinIn, response: Response, ctx: Ctx, actor: CurrentActor
) -> s.KeypadPinOut:
    """Your personal keypad PIN (charger owners, no organisation needed): it works at the
    chargers you own."""
    return _keypad_out(await keypad_pins.set_personal_pin(ctx, actor, body.pin), response)


@router.post(
    "/me/keypad-pin/generate",
    responses=documented(400, 401, 403, 409),
    response_model=s.GeneratedKeypadPinOut,
    tags=["keypad"],
)
async def generate_personal_keypad_pin(
    response: Response, ctx: Ctx, actor: CurrentActor
) -> s.KeypadPinOut:
    return _keypad_out(await keypad_pins.set_personal_pin(ctx, actor, None), response)


@router.delete("/me/keypad-pin", responses=documented(401, 404), status_code=204, tags=["keypad"])
async def delete_personal_keypad_pin(ctx: Ctx, actor: CurrentActor) -> None:
    await keypad_pins.delete_personal_pin(ctx, actor)


@router.put(
    "/organisations/{org_id}/members/{user_id}/keypad-pin",
    responses=documented(401, 403, 404, 409, 422, 429),
    response_model=s.KeypadPinOut,
    tags=["keypad"],
)
async def set_member_keypad_pin(
    org_id: s.Text,
    user_id: s.Text,
    body: s.KeypadPinIn,
    response: Response,
    ctx: Ctx,
    actor: CurrentActor,
) -> s.KeypadPinOut:
    return _keypad_out(await keypad_pins.set_pin(ctx, actor, org_id, user_id, body.pin), response)


@router.post(
    "/organisations/{org_id}/members/{user_id}/keypad-pin/generate",
    responses=documented(400, 401, 403, 404, 409, 422),
    response_model=s.GeneratedKeypadPinOut,
    tags=["keypad"],
)
async def generate_member_keypad_pin(
    org_id: s.Text, user_id: s.Text, response: Response, ctx: Ctx, actor: CurrentActor
) -> s.KeypadPinOut:
    return _keypad_out(await keypad_pins.set_pin(ctx, actor, org_id, user_id, None), response)


@router.delete(
    "/organisations/{org_id}/members/{user_id}/keypad-pin",
    responses=documented(401, 403, 404, 422),
    status_code=204,
    tags=["keypad"],
)
async def delete_member_keypad_pin(
    org_id: s.Text, user_id: s.Text, ctx: Ctx, actor: CurrentActor
) -> None:
    await keypad_pins.delete_pin(ctx, actor, org_id, user_id)


@router.get(
    "/organisations/{org_id}/keypad-pins/crowding",
    responses=documented(401, 403, 404, 422),
    response_model=s.CrowdingOut,
    tags=["keypad"],
)
async def crowding(org_id: s.Text, ctx: Ctx, actor: CurrentActor) -> s.CrowdingOut:
    c = await keypad_pins.crowding(ctx, actor, org_id)
    message = (
        f"{c.ratio:.1%} of all {c.digits}-digit PINs belong to a member: a random guess hits "
        "someone too often; require more digits"
        if c.warning
        else None
    )
    return s.CrowdingOut(
        members_with_pin=c.members_with_pin,
        digits=c.digits,
        space=10**c.digits,
        ratio=c.ratio,
        warning=c.warning,
        message=message,
    )
