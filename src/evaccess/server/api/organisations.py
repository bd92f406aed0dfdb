"""Organisations: ``/api/organisations`` and their subgroups, settings, member access,
members and audit records."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from evaccess.domain.access import Role
from evaccess.server.api import schemas as s
from evaccess.server.api.deps import Ctx, CurrentActor
from evaccess.server.api.problems import documented
from evaccess.server.db.models import Organisation
from evaccess.server.services import organisations

router = APIRouter(prefix="/api", responses=documented(500))


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
    action: Annotated[str | None, Query(max_length=64)] = None,
    by: Annotated[str | None, Query(max_length=320)] = None,
    charger: Annotated[str | None, Query(max_length=64)] = None,
    since: Annotated[s.Instant | None, Query()] = None,
    until: Annotated[s.Instant | None, Query()] = None,
) -> list[s.AuditRecordOut]:
    """Newest first. ``action`` (ending in a dot: every action it begins), ``by`` (the
    acting person's email), ``charger`` (a serial) and ``since``/``until`` narrow the records."""
    where = organisations.AuditFilter(
        action=action, actor_email=by, charger_serial=charger, since=since, until=until
    )
    records = await organisations.audit_records(
        ctx, actor, org_id, limit=limit, before=before, where=where
    )
    return [s.AuditRecordOut.model_validate(r) for r in records]
