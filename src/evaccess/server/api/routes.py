"""The REST routes: each parses, calls one service function, formats."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response, status

from evaccess.domain.access import Role
from evaccess.server.api import schemas as s
from evaccess.server.api.deps import Ctx, CurrentActor, Token
from evaccess.server.api.problems import documented
from evaccess.server.db.models import Organisation
from evaccess.server.services import (
    accounts,
    bluetooth_pins,
    chargers,
    grants,
    invitations,
    keypad_pins,
    organisations,
    registration,
    transactions,
)
from evaccess.server.services import security_events as charger_events
from evaccess.server.services.chargers import ChargerView

router = APIRouter(prefix="/api", responses=documented(500))
NO_STORE = {"Cache-Control": "no-store"}


# --- accounts -------------------------------------------------------------------------


@router.post(
    "/auth/login", responses=documented(401, 422, 429), response_model=s.TokenOut, tags=["auth"]
)
async def login(body: s.LoginIn, request: Request, response: Response, ctx: Ctx) -> s.TokenOut:
    client = request.client.host if request.client else "unknown"
    issued = await accounts.login(ctx, body.email, body.password, client=client)
    response.headers.update(NO_STORE)
    return s.TokenOut.model_validate(issued)


@router.post(
    "/auth/logout", responses=documented(401), status_code=status.HTTP_204_NO_CONTENT, tags=["auth"]
)
async def logout(ctx: Ctx, token: Token) -> None:
    await accounts.logout(ctx, token)


@router.post(
    "/auth/password",
    responses=documented(401, 422, 429),
    status_code=status.HTTP_204_NO_CONTENT,
    tags=["auth"],
)
async def change_password(body: s.PasswordChangeIn, ctx: Ctx, actor: CurrentActor) -> None:
    """Change your password; all your sessions end (log in again)."""
    await accounts.change_password(ctx, actor, body.current_password, body.new_password)


@router.post(
    "/users",
    responses=documented(
        403, 422, notes={403: "Self sign-up is off on this server (`signup_disabled`)."}
    ),
    response_model=s.SignupOut,
    status_code=status.HTTP_202_ACCEPTED,
    tags=["auth"],
)
async def signup(body: s.SignupIn, ctx: Ctx) -> s.SignupOut:
    """Create your own account, where the server allows it (``EVACCESS_ALLOW_SIGNUP``; off
    by default: accounts then come from administrators and invitations). The answer is the
    same whether or not the address already has an account; log in to find out."""
    await accounts.sign_up(ctx, body.email, body.password)
    return s.SignupOut()


@router.get("/me", responses=documented(401), response_model=s.MeOut, tags=["auth"])
async def me(ctx: Ctx, actor: CurrentActor) -> s.MeOut:
    rows = await organisations.memberships_of(ctx, actor)
    return s.MeOut(
        id=actor.user_id,
        email=actor.email,
        is_system_admin=actor.is_system_admin,
        organisations=[
            s.MembershipOut(organisation_id=o.id, name=o.name, parent_id=o.parent_id, role=r)
            for o, r in rows
        ],
    )


# --- organisations ---------------------------------------------------------------------


def _org(org: Organisation, role: Role | None = None) -> s.OrganisationOut:
    # the caller's role is not the organisation's: it comes beside it
    return s.OrganisationOut.model_validate(org).model_copy(update={"role": role})


@router.get(
    "/organisations",
    responses=documented(401),
    response_model=list[s.OrganisationOut],
    tags=["organisations"],
)
async def list_organisations(ctx: Ctx, actor: CurrentActor) -> list[s.OrganisationOut]:
    return [_org(o, r) for o, r in await organisations.visible_organisations(ctx, actor)]


@router.post(
    "/organisations",
    responses=documented(401, 403, 422),
    response_model=s.OrganisationOut,
    status_code=201,
    tags=["organisations"],
)
async def create_organisation(
    body: s.OrganisationIn, ctx: Ctx, actor: CurrentActor
) -> s.OrganisationOut:
    return _org(await organisations.create_organisation(ctx, actor, body.name))


@router.get(
    "/organisations/{org_id}",
    responses=documented(401, 404, 422),
    response_model=s.OrganisationOut,
    tags=["organisations"],
)
async def get_organisation(org_id: s.Text, ctx: Ctx, actor: CurrentActor) -> s.OrganisationOut:
    org, role = await organisations.get_organisation(ctx, actor, org_id)
    return _org(org, role)


@router.post(
    "/organisations/{org_id}/subgroups",
    responses=documented(401, 403, 404, 422),
    response_model=s.OrganisationOut,
    status_code=201,
    tags=["organisations"],
)
async def create_subgroup(
    org_id: s.Text, body: s.OrganisationIn, ctx: Ctx, actor: CurrentActor
) -> s.OrganisationOut:
    return _org(await organisations.create_subgroup(ctx, actor, org_id, body.name))


@router.patch(
    "/organisations/{org_id}/settings",
    responses=documented(401, 403, 404, 422),
    response_model=s.OrganisationOut,
    tags=["organisations"],
)
async def update_settings(
    org_id: s.Text, body: s.SettingsIn, ctx: Ctx, actor: CurrentActor
) -> s.OrganisationOut:
    org = await organisations.update_settings(
        ctx,
        actor,
        org_id,
        keypad_pin_digits=body.keypad_pin_digits,
        offline_keypad=body.offline_keypad,
    )
    return _org(org)


@router.put(
    "/organisations/{org_id}/member-access",
    responses=documented(401, 403, 404, 422),
    response_model=s.OrganisationOut,
    tags=["organisations"],
)
async def set_member_access(
    org_id: s.Text, body: s.MemberAccessIn, ctx: Ctx, actor: CurrentActor
) -> s.OrganisationOut:
    """``all``: every member may use every charger of the organisation and its subgroups;
    ``assigned``: only the chargers assigned to them (super-admins and admins; audited)."""
    return _org(await organisations.set_member_access(ctx, actor, org_id, body.member_access))


@router.get(
    "/organisations/{org_id}/members",
    responses=documented(401, 403, 404, 422),
    response_model=list[s.MemberOut],
    tags=["organisations"],
)
async def list_members(org_id: s.Text, ctx: Ctx, actor: CurrentActor) -> list[s.MemberOut]:
    return [s.MemberOut.model_validate(m) for m in await organisations.members(ctx, actor, org_id)]


@router.post(
    "/organisations/{org_id}/members",
    responses=documented(401, 403, 404, 409, 422),
    response_model=s.MemberOut,
    status_code=201,
    tags=["organisations"],
)
async def add_member(
    org_id: s.Text, body: s.MemberIn, ctx: Ctx, actor: CurrentActor
) -> s.MemberOut:
    m = await organisations.add_member(ctx, actor, org_id, body.email, body.role)
    return s.MemberOut.model_validate(m)


@router.patch(
    "/organisations/{org_id}/members/{user_id}",
    responses=documented(401, 403, 404, 409, 422),
    status_code=204,
    tags=["organisations"],
)
async def change_role(
    org_id: s.Text, user_id: s.Text, body: s.RoleIn, ctx: Ctx, actor: CurrentActor
) -> None:
    await organisations.change_role(ctx, actor, org_id, user_id, body.role)


@router.get(
    "/organisations/{org_id}/audit",
    responses=documented(401, 403, 404, 422),
    response_model=list[s.AuditRecordOut],
    tags=["audit"],
)
async def audit(
    org_id: s.Text,
    ctx: Ctx,
    actor: CurrentActor,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
    before: Annotated[int | None, Query(ge=1, le=s.MAX_INT)] = None,
) -> list[s.AuditRecordOut]:
    records = await organisations.audit_records(ctx, actor, org_id, limit=limit, before=before)
    return [s.AuditRecordOut.model_validate(r) for r in records]


# --- keypad PINs ------------------------------------------------------------------------


def _keypad_out(result: keypad_pins.KeypadPinSet, response: Response) -> s.KeypadPinOut:
    if result.generated_pin is None:
        return s.KeypadPinOut.model_validate(result)
    response.headers.update(NO_STORE)
    return s.GeneratedKeypadPinOut.model_validate(result)


@router.put(
    "/organisations/{org_id}/keypad-pin",
    responses=documented(401, 404, 422, 429),
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
    responses=documented(400, 401, 404, 422),
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
    responses=documented(401, 403, 422, 429),
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
    responses=documented(400, 401, 403),
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
    responses=documented(401, 403, 404, 422, 429),
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
    responses=documented(400, 401, 403, 404, 422),
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


# --- chargers -----------------------------------------------------------------------------


def _charger(view: ChargerView) -> s.ChargerOut:
    return s.ChargerOut.model_validate(view)


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
        charger=_charger(registered.view), ocpp_password=registered.ocpp_password
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
    return [_charger(v) for v in await chargers.list_chargers(ctx, actor, serial=serial)]


@router.get(
    "/chargers/{charger_id}",
    responses=documented(401, 404, 422),
    response_model=s.ChargerOut,
    tags=["chargers"],
)
async def get_charger(charger_id: s.Text, ctx: Ctx, actor: CurrentActor) -> s.ChargerOut:
    return _charger(await chargers.get_charger(ctx, actor, charger_id))


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


# --- Bluetooth PIN --------------------------------------------------------------------------


def _pin_state(st: bluetooth_pins.PinState) -> s.PinStateOut:
    return s.PinStateOut.model_validate(st)


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
    tags=["bluetooth-pin"],
)
async def revoke_phones(
    charger_id: s.Text, body: s.RevokePhonesIn, ctx: Ctx, actor: CurrentActor
) -> None:
    """Make the charger forget one phone's credential (or all): delivered over OCPP."""
    await bluetooth_pins.revoke_phones(ctx, actor, charger_id, body.phone_id)


@router.post(
    "/chargers/{charger_id}/bluetooth/reenable-pairing",
    responses=documented(401, 403, 404, 422),
    status_code=202,
    tags=["bluetooth-pin"],
)
async def reenable_pairing(charger_id: s.Text, ctx: Ctx, actor: CurrentActor) -> None:
    """Lift the charger's 100-failure cap on PIN pairing: delivered over OCPP."""
    await bluetooth_pins.reenable_pairing(ctx, actor, charger_id)


# --- charging sessions ------------------------------------------------------------------------


def _transaction(view: transactions.TransactionView) -> s.TransactionOut:
    return s.TransactionOut.model_validate(view)


@router.get(
    "/chargers/{charger_id}/transactions",
    responses=documented(401, 404, 422),
    response_model=list[s.TransactionOut],
    tags=["transactions"],
)
async def charger_transactions(
    charger_id: s.Text,
    ctx: Ctx,
    actor: CurrentActor,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> list[s.TransactionOut]:
    """A charger's charging sessions: all for its owner and admins, else your own."""
    views = await transactions.for_charger(ctx, actor, charger_id, limit=limit)
    return [_transaction(v) for v in views]


@router.get(
    "/me/transactions",
    responses=documented(401, 422),
    response_model=list[s.TransactionOut],
    tags=["transactions"],
)
async def my_transactions(
    ctx: Ctx, actor: CurrentActor, limit: Annotated[int, Query(ge=1, le=1000)] = 200
) -> list[s.TransactionOut]:
    """Your own charging sessions, at every charger."""
    return [_transaction(v) for v in await transactions.for_user(ctx, actor, limit=limit)]
