"""Organisations (Wallbox's portal calls them groups) with nested subgroups, members and roles."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from evaccess.domain.access import MemberAccess, OrgAction, Role
from evaccess.domain.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from evaccess.domain.pins import DEFAULT_KEYPAD_DIGITS, KeypadPinRules
from evaccess.server.context import Context
from evaccess.server.db.models import (
    AuditRecord,
    Charger,
    IdToken,
    KeypadPin,
    Membership,
    Organisation,
    User,
)
from evaccess.server.db.types import new_id
from evaccess.server.services import local_lists
from evaccess.server.services.accounts import normalise_email
from evaccess.server.services.relations import Actor, org_role, require_org_action, subtree


@dataclass(frozen=True, kw_only=True, slots=True)
class MemberView:
    user_id: str
    email: str
    role: Role
    has_keypad_pin: bool


def _name(name: str) -> str:
    name = name.strip()
    if not 1 <= len(name) <= 200:
        raise InvalidInput("an organisation name has 1 to 200 characters")
    return name


async def create_organisation(ctx: Context, actor: Actor, name: str) -> Organisation:
    """A new top-level organisation (system administrators); the creator is its super-admin."""
    if not actor.is_system_admin:
        raise PermissionDenied("only system administrators create top-level organisations")
    return await _create(ctx, actor, _name(name), parent=None)


async def create_subgroup(ctx: Context, actor: Actor, parent_id: str, name: str) -> Organisation:
    async with ctx.db.read() as session:
        parent = await require_org_action(session, actor, parent_id, OrgAction.CREATE_SUBGROUP)
    return await _create(ctx, actor, _name(name), parent=parent)


async def _create(
    ctx: Context, actor: Actor, name: str, parent: Organisation | None
) -> Organisation:
    now = ctx.clock.now()
    async with ctx.db.transaction() as session:
        org_id = new_id()
        org = Organisation(
            id=org_id,
            name=name,
            created_at=now,
            parent_id=parent.id if parent else None,
            root_id=parent.root_id if parent else org_id,
            keypad_pin_digits=parent.keypad_pin_digits if parent else DEFAULT_KEYPAD_DIGITS,
            offline_keypad=parent.offline_keypad if parent else False,
            member_access=parent.member_access if parent else MemberAccess.ASSIGNED.value,
        )
        session.add(org)
        await session.flush()  # no ORM relationships: rows go in FK order by hand
        if parent is None:
            session.add(
                Membership(
                    user_id=actor.user_id,
                    organisation_id=org.id,
                    role=Role.SUPER_ADMIN,
                    created_at=now,
                )
            )
        await session.flush()
        await ctx.audit.append(
            session,
            actor.audit_entry(
                "organisation.created", organisation_id=org.id, details={"parent": org.parent_id}
            ),
        )
    return org


async def visible_organisations(ctx: Context, actor: Actor) -> list[tuple[Organisation, Role]]:
    """Organisations the actor belongs to, with their subgroups (role inherited)."""
    async with ctx.db.read() as session:
        result: dict[str, tuple[Organisation, Role]] = {}
        frontier = await _memberships(session, actor)
        while frontier:
            org, role = frontier.pop()
            if org.id in result:
                continue
            result[org.id] = (org, role)
            children = (
                await session.scalars(select(Organisation).where(Organisation.parent_id == org.id))
            ).all()
            frontier.extend((child, role) for child in children)
    return sorted(result.values(), key=lambda pair: pair[0].name)


async def get_organisation(ctx: Context, actor: Actor, org_id: str) -> tuple[Organisation, Role]:
    async with ctx.db.read() as session:
        org = await require_org_action(session, actor, org_id, OrgAction.VIEW)
        role = await org_role(session, actor.user_id, org_id)
    assert role is not None
    return org, role


async def add_member(ctx: Context, actor: Actor, org_id: str, email: str, role: Role) -> MemberView:
    async with ctx.db.transaction() as session:
        org = await require_org_action(session, actor, org_id, OrgAction.MANAGE_MEMBERS)
        if role is not Role.USER:
            await require_org_action(session, actor, org_id, OrgAction.CHANGE_ROLES)
        user = await session.scalar(select(User).where(User.email == normalise_email(email)))
        if user is None:
            raise NotFound("no user with this email; they must create an account first")
        session.add(
            Membership(
                user_id=user.id, organisation_id=org_id, role=role, created_at=ctx.clock.now()
            )
        )
        try:
            await session.flush()
        except IntegrityError:
            raise Conflict("already a member of this organisation", code="already_member") from None
        await ctx.audit.append(
            session,
            actor.audit_entry(
                "member.added",
                organisation_id=org_id,
                subject_id=user.id,
                details={"role": role.value},
            ),
        )
        # A member policy may let the newcomer in at keypads they could not use before.
        pokes = await local_lists.sync_for_user(session, ctx, org.root_id, user.id)
    _member_access_changed(ctx, pokes)
    return MemberView(user_id=user.id, email=user.email, role=role, has_keypad_pin=False)


def _member_access_changed(ctx: Context, pokes: list[str]) -> None:
    """After a commit that changed which members may use keypads: as for grants."""
    ctx.keypad_index.invalidate()
    for serial in pokes:
        ctx.notifier.poke(serial)


async def set_member_access(
    ctx: Context, actor: Actor, org_id: str, policy: MemberAccess
) -> Organisation:
    """Whether all members may use all the organisation's chargers, or only those assigned
    to them. Applies to the organisation and its subgroups (set a subgroup afterwards to
    differ); the keypad index and the local lists of the tree follow at once."""
    async with ctx.db.transaction() as session:
        org = await require_org_action(session, actor, org_id, OrgAction.SET_MEMBER_ACCESS)
        ids = await subtree(session, org.id)
        for each in (
            await session.scalars(select(Organisation).where(Organisation.id.in_(ids)))
        ).all():
            each.member_access = policy.value
        await session.flush()
        pokes = await local_lists.sync_tree(session, ctx, org.root_id)
        await ctx.audit.append(
            session,
            actor.audit_entry(
                "organisation.member_access_changed",
                organisation_id=org.id,
                details={"member_access": policy.value, "organisations": len(ids)},
            ),
        )
    _member_access_changed(ctx, pokes)
    return org


async def change_role(ctx: Context, actor: Actor, org_id: str, user_id: str, role: Role) -> None:
    async with ctx.db.transaction() as session:
        await require_org_action(session, actor, org_id, OrgAction.CHANGE_ROLES)
        membership = await session.scalar(
            select(Membership).where(
                Membership.organisation_id == org_id, Membership.user_id == user_id
            )
        )
        if membership is None:
            raise NotFound("no such member")
        if membership.role == Role.SUPER_ADMIN and role != Role.SUPER_ADMIN:
            others = await session.scalar(
                select(func.count()).where(
                    Membership.organisation_id == org_id,
                    Membership.role == Role.SUPER_ADMIN,
                    Membership.user_id != user_id,
                )
            )
            if not others:
                raise Conflict(
                    "an organisation keeps at least one super-admin", code="last_super_admin"
                )
        membership.role = role
        await ctx.audit.append(
            session,
            actor.audit_entry(
                "member.role_changed",
                organisation_id=org_id,
                subject_id=user_id,
                details={"role": role.value},
            ),
        )


async def members(ctx: Context, actor: Actor, org_id: str) -> list[MemberView]:
    async with ctx.db.read() as session:
        org = await require_org_action(session, actor, org_id, OrgAction.VIEW_MEMBERS)
        rows = (
            await session.execute(
                select(User.id, User.email, Membership.role, KeypadPin.id)
                .join(Membership, Membership.user_id == User.id)
                .outerjoin(
                    KeypadPin,
                    (KeypadPin.user_id == User.id) & (KeypadPin.pin_space_id == org.root_id),
                )
                .where(Membership.organisation_id == org_id)
                .order_by(User.email)
            )
        ).all()
    return [
        MemberView(user_id=u, email=e, role=Role(r), has_keypad_pin=k is not None)
        for u, e, r, k in rows
    ]


async def update_settings(
    ctx: Context,
    actor: Actor,
    org_id: str,
    *,
    keypad_pin_digits: int | None = None,
    offline_keypad: bool | None = None,
) -> Organisation:
    """Settings of a PIN space apply to the whole tree: change them on the top organisation."""
    async with ctx.db.transaction() as session:
        org = await require_org_action(session, actor, org_id, OrgAction.CHANGE_SETTINGS)
        if org.parent_id is not None:
            raise InvalidInput("keypad settings belong to the top organisation of a group")
        tree = (
            await session.scalars(select(Organisation).where(Organisation.root_id == org.id))
        ).all()
        if keypad_pin_digits is not None:
            KeypadPinRules(digits=keypad_pin_digits)
            for each in tree:
                each.keypad_pin_digits = keypad_pin_digits
        pokes: list[str] = []
        if offline_keypad is not None:
            for each in tree:
                each.offline_keypad = offline_keypad
            if not offline_keypad:
                # Opting out removes the sealed copies: only the digests remain.
                await session.execute(
                    update(KeypadPin)
                    .where(KeypadPin.pin_space_id == org.root_id)
                    .values(sealed_pin=None, sealed_key_version=None)
                )
                await session.execute(
                    update(IdToken)
                    .where(IdToken.root_id == org.root_id)
                    .values(sealed_value=None, sealed_key_version=None)
                )
            await session.flush()
            pokes = await local_lists.sync_tree(session, ctx, org.root_id)
        await ctx.audit.append(
            session,
            actor.audit_entry(
                "organisation.settings_changed",
                organisation_id=org.id,
                details={"keypad_pin_digits": keypad_pin_digits, "offline_keypad": offline_keypad},
            ),
        )
    for serial in pokes:
        ctx.notifier.poke(serial)
    return org


async def memberships_of(ctx: Context, actor: Actor) -> list[tuple[Organisation, Role]]:
    """The organisations the actor is a member of (not their subgroups), by name."""
    async with ctx.db.read() as session:
        return sorted(await _memberships(session, actor), key=lambda pair: pair[0].name)


async def _memberships(session: AsyncSession, actor: Actor) -> list[tuple[Organisation, Role]]:
    rows = await session.execute(
        select(Organisation, Membership.role)
        .join(Membership, Membership.organisation_id == Organisation.id)
        .where(Membership.user_id == actor.user_id)
    )
    return [(org, Role(role)) for org, role in rows.all()]


@dataclass(frozen=True, kw_only=True, slots=True)
class AuditFilter:
    """What an audit search narrows to (every part optional): an action (``member.`` ends
    with a dot: every action it begins), the acting person's email, a charger's serial, and
    a time range (``since`` included, ``until`` excluded)."""

    action: str | None = None
    actor_email: str | None = None
    charger_serial: str | None = None
    since: datetime | None = None
    until: datetime | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class AuditView:
    """An audit record with the names a person reads: who acted, on whom, at which charger."""

    record: AuditRecord
    actor_email: str | None
    subject_email: str | None
    charger_serial: str | None


async def audit_records(
    ctx: Context,
    actor: Actor,
    org_id: str,
    *,
    limit: int = 200,
    before: int | None = None,
    where: AuditFilter | None = None,
) -> list[AuditRecord]:
    """Audit records about the organisation and its subgroups (super-admins), newest first."""
    async with ctx.db.read() as session:
        return await _audit_records(session, actor, org_id, limit, before, where)


async def _audit_records(
    session: AsyncSession,
    actor: Actor,
    org_id: str,
    limit: int,
    before: int | None,
    where: AuditFilter | None,
) -> list[AuditRecord]:
    org = await require_org_action(session, actor, org_id, OrgAction.VIEW_AUDIT)
    tree = select(Organisation.id).where(Organisation.root_id == org.root_id)
    query = select(AuditRecord).where(AuditRecord.organisation_id.in_(tree))
    if before is not None:
        query = query.where(AuditRecord.seq < before)
    if where is not None:
        if where.action:
            action = where.action.strip()
            query = query.where(
                AuditRecord.action.startswith(action, autoescape=True)
                if action.endswith(".")
                else AuditRecord.action == action
            )
        if where.actor_email:
            query = query.where(
                AuditRecord.actor_id.in_(
                    select(User.id).where(User.email == normalise_email(where.actor_email))
                )
            )
        if where.charger_serial:
            query = query.where(
                AuditRecord.charger_id.in_(
                    select(Charger.id).where(Charger.serial == where.charger_serial.strip())
                )
            )
        if where.since is not None:
            query = query.where(AuditRecord.at >= where.since)
        if where.until is not None:
            query = query.where(AuditRecord.at < where.until)
    return list((await session.scalars(query.order_by(AuditRecord.seq.desc()).limit(limit))).all())


async def audit_log(
    ctx: Context,
    actor: Actor,
    org_id: str,
    *,
    limit: int = 50,
    before: int | None = None,
    where: AuditFilter | None = None,
) -> list[AuditView]:
    """``audit_records`` with emails and serials in place of ids (the portal's audit page)."""
    async with ctx.db.read() as session:
        records = await _audit_records(session, actor, org_id, limit, before, where)
        user_ids = {i for r in records for i in (r.actor_id, r.subject_id) if i}
        emails = dict(
            (await session.execute(select(User.id, User.email).where(User.id.in_(user_ids)))).all()
        )
        charger_ids = {r.charger_id for r in records if r.charger_id}
        serials = dict(
            (
                await session.execute(
                    select(Charger.id, Charger.serial).where(Charger.id.in_(charger_ids))
                )
            ).all()
        )
    return [
        AuditView(
            record=r,
            actor_email=emails.get(r.actor_id) if r.actor_id else None,
            subject_email=emails.get(r.subject_id) if r.subject_id else None,
            charger_serial=serials.get(r.charger_id) if r.charger_id else None,
        )
        for r in records
    ]
