"""Chargers: register, list, detail, assign; their grants, invitations (and accepting
one) and security events."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from evaccess.server.api import schemas as s
from evaccess.server.api.common import NO_STORE, charger_out
from evaccess.server.api.deps import Ctx, CurrentActor
from evaccess.server.api.problems import documented
from evaccess.server.services import chargers, grants, invitations, registration
from evaccess.server.services import security_events as charger_events

router = APIRouter(prefix="/api", responses=documented(500))


@router.post(
    "/organisations/{org_id}/chargers",
    responses=documented(401, 403, 404, 409, 422),
    response_model=s.RegistrationOut,
    status_code=201,
    tags=["chargers"],
)
async def register_charger(
    org_id: s.Text, body: s.ChargerIn, response: Response, ctx: Ctx, actor: CurrentActor
) -> s.RegistrationOut:
    registered = await registration.register_and_view(
        ctx,
        actor,
        organisation_id=org_id,
        serial=body.serial,
        vendor=body.vendor,
        model=body.model,
        firmware=body.firmware,
        production_date=body.production_date,
        bluetooth=body.bluetooth,
        keypad=body.keypad,
        owner_email=body.owner_email,
        factory_pin=body.factory_pin,
    )
    response.headers.update(NO_STORE)
    return s.RegistrationOut(
        charger=charger_out(registered.view), ocpp_password=registered.ocpp_password
    )


@router.get(
    "/chargers",
    responses=documented(401, 422),
    response_model=list[s.ChargerOut],
    tags=["chargers"],
)
async def list_chargers(
    ctx: Ctx, actor: CurrentActor, serial: Annotated[s.Text | None, Query(max_length=64)] = None
) -> list[s.ChargerOut]:
    return [charger_out(v) for v in await chargers.list_chargers(ctx, actor, serial=serial)]


@router.get(
    "/chargers/{charger_id}",
    responses=documented(401, 404, 422),
    response_model=s.ChargerOut,
    tags=["chargers"],
)
async def get_charger(charger_id: s.Text, ctx: Ctx, actor: CurrentActor) -> s.ChargerOut:
    return charger_out(await chargers.get_charger(ctx, actor, charger_id))


@router.post(
    "/chargers/{charger_id}/assign",
    responses=documented(401, 403, 404, 409, 422),
    response_model=s.GrantOut,
    status_code=201,
    tags=["chargers"],
)
async def assign(charger_id: s.Text, body: s.AssignIn, ctx: Ctx, actor: CurrentActor) -> s.GrantOut:
    return s.GrantOut.model_validate(await grants.assign(ctx, actor, charger_id, body.user_id))


@router.get(
    "/chargers/{charger_id}/grants",
    responses=documented(401, 403, 404, 422),
    response_model=list[s.GrantOut],
    tags=["access"],
)
async def list_grants(charger_id: s.Text, ctx: Ctx, actor: CurrentActor) -> list[s.GrantOut]:
    views = await grants.list_grants(ctx, actor, charger_id)
    return [s.GrantOut.model_validate(v) for v in views]


@router.delete(
    "/chargers/{charger_id}/grants/{grant_id}",
    responses=documented(401, 403, 404, 409, 422),
    status_code=204,
    tags=["access"],
)
async def revoke_grant(charger_id: s.Text, grant_id: s.Text, ctx: Ctx, actor: CurrentActor) -> None:
    await grants.revoke_grant(ctx, actor, charger_id, grant_id)


@router.post(
    "/chargers/{charger_id}/invitations",
    responses=documented(401, 403, 404, 422),
    response_model=s.IssuedInvitationOut,
    status_code=201,
    tags=["access"],
)
async def invite(
    charger_id: s.Text, body: s.InvitationIn, response: Response, ctx: Ctx, actor: CurrentActor
) -> s.IssuedInvitationOut:
    issued = await invitations.invite(
        ctx,
        actor,
        charger_id,
        email=body.email,
        kind=body.kind,
        service_expires_at=body.service_expires_at,
    )
    response.headers.update(NO_STORE)
    return s.IssuedInvitationOut.model_validate(issued)


@router.get(
    "/chargers/{charger_id}/invitations",
    responses=documented(401, 403, 404, 422),
    response_model=list[s.InvitationOut],
    tags=["access"],
)
async def list_invitations(
    charger_id: s.Text, ctx: Ctx, actor: CurrentActor
) -> list[s.InvitationOut]:
    issued = await invitations.list_invitations(ctx, actor, charger_id)
    return [s.InvitationOut.model_validate(i) for i in issued]


@router.delete(
    "/chargers/{charger_id}/invitations/{invitation_id}",
    responses=documented(401, 403, 404, 422),
    status_code=204,
    tags=["access"],
)
async def revoke_invitation(
    charger_id: s.Text, invitation_id: s.Text, ctx: Ctx, actor: CurrentActor
) -> None:
    await invitations.revoke_invitation(ctx, actor, charger_id, invitation_id)


@router.post(
    "/invitations/accept",
    responses=documented(401, 404, 422),
    response_model=s.GrantOut,
    tags=["access"],
)
async def accept_invitation(body: s.AcceptIn, ctx: Ctx, actor: CurrentActor) -> s.GrantOut:
    grant = await invitations.accept_invitation(ctx, actor, body.token)
    return s.GrantOut.model_validate(grants.GrantView(grant=grant, email=actor.email))


@router.get(
    "/chargers/{charger_id}/security-events",
    responses=documented(401, 403, 404, 422),
    response_model=list[s.SecurityEventOut],
    tags=["chargers"],
)
async def security_events(
    charger_id: s.Text, ctx: Ctx, actor: CurrentActor
) -> list[s.SecurityEventOut]:
    events = await charger_events.of_charger(ctx, actor, charger_id)
    return [s.SecurityEventOut.model_validate(e) for e in events]
