"""How a user relates to organisations and chargers: the bases that the permission table
(``domain.access``) checks. Deny by default: no basis, no access; a charger the caller may
not see is reported exactly like one that does not exist."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    CTE,
    BindParameter,
    ColumnElement,
    and_,
    bindparam,
    literal,
    or_,
    select,
    union_all,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from evaccess.domain.access import (
    Basis,
    ChargerAction,
    GrantKind,
    MemberAccess,
    OrgAction,
    Role,
    StaffRole,
    member_bases,
    require_charger,
    require_org,
)
from evaccess.domain.clock import Clock
from evaccess.domain.errors import NotFound, PermissionDenied
from evaccess.server.audit import AuditEntry, Detail
from evaccess.server.db.models import Charger, Grant, Membership, Organisation, Ownership

ROLE_RANK = {Role.USER: 0, Role.ADMIN: 1, Role.SUPER_ADMIN: 2}


@dataclass(frozen=True, kw_only=True, slots=True)
class Actor:
    user_id: str
    email: str
    is_system_admin: bool = False
    staff_role: StaffRole | None = None
    request_id: str | None = None

    def audit_entry(
        self,
        action: str,
        *,
        charger: Charger | None = None,
        organisation_id: str | None = None,
        subject_id: str | None = None,
        basis: str | None = None,
        details: Mapping[str, Detail] | None = None,
    ) -> AuditEntry:
        """The audit record of something this actor did (about ``charger``, if given)."""
        return AuditEntry(
            action=action,
            actor_id=self.user_id,
            organisation_id=charger.organisation_id if charger else organisation_id,
            charger_id=charger.id if charger else None,
            subject_id=subject_id,
            basis=basis,
            request_id=self.request_id,
            details=details,
        )


async def current_ownership(session: AsyncSession, charger_id: str) -> Ownership | None:
    """The charger's ownership that has not ended (``None``: nobody owns it)."""
    return await session.scalar(
        select(Ownership).where(Ownership.charger_id == charger_id, Ownership.ended_at.is_(None))
    )


async def ancestors(session: AsyncSession, organisation_id: str) -> list[Organisation]:
    """The organisation and its ancestors, nearest first."""
    chain: list[Organisation] = []
    current: str | None = organisation_id
    while current is not None and len(chain) < 32:
        org = await session.get(Organisation, current)
        if org is None:
            break
        chain.append(org)
        current = org.parent_id
    return chain


async def subtree(session: AsyncSession, organisation_id: str) -> list[str]:
    """The organisation and all its subgroups, at any depth."""
    found: list[str] = []
    frontier = [organisation_id]
    while frontier and len(found) < 10_000:
        current = frontier.pop()
        if current in found:
            continue
        found.append(current)
        frontier.extend(
            (
                await session.scalars(
                    select(Organisation.id).where(Organisation.parent_id == current)
                )
            ).all()
        )
    return found


def active_grant(clock: Clock) -> ColumnElement[bool]:
    """Grants in force now: not revoked, not expired."""
    return _in_force_at(clock.now())


def _in_force_at(now: datetime | BindParameter[datetime]) -> ColumnElement[bool]:
    return and_(Grant.revoked_at.is_(None), or_(Grant.expires_at.is_(None), Grant.expires_at > now))


def _chain() -> CTE:
    """The organisation ``:org_id`` and its ancestors (at most 32, as ``ancestors``), as a
    recursive query: a role check is one statement, however deep the tree."""
    chain = (
        select(Organisation.id, Organisation.parent_id, literal(0).label("depth"))
        .where(Organisation.id == bindparam("org_id"))
        .cte("chain", recursive=True)
    )
    parent = aliased(Organisation)
    return chain.union_all(
        select(parent.id, parent.parent_id, chain.c.depth + 1).where(
            parent.id == chain.c.parent_id, chain.c.depth < 31
        )
    )


# Built once: constructing a statement costs more CPU than SQLAlchemy's cached compile of it
# (about 1 ms for these on the measuring machine, against 0.4 ms to run one).
_ROLES = select(Membership.role).where(
    Membership.user_id == bindparam("user_id"),
    Membership.organisation_id.in_(select(_chain().c.id)),
)
_BASES = union_all(
    select(literal("grant"), Grant.kind).where(
        Grant.charger_id == bindparam("charger_id"),
        Grant.user_id == bindparam("user_id"),
        _in_force_at(bindparam("now", type_=Grant.expires_at.type)),
    ),
    select(literal("role"), Membership.role).where(
        Membership.user_id == bindparam("user_id"),
        Membership.organisation_id.in_(select(_chain().c.id)),
    ),
    select(literal("policy"), Organisation.member_access).where(
        Organisation.id == bindparam("org_id")
    ),
)


def _strongest(roles: Iterable[str]) -> Role | None:
    return max((Role(r) for r in roles), key=ROLE_RANK.__getitem__, default=None)


async def org_role(session: AsyncSession, user_id: str, organisation_id: str) -> Role | None:
    """The strongest role ``user_id`` holds in the organisation or any ancestor."""
    params = {"user_id": user_id, "org_id": organisation_id}
    return _strongest((await session.scalars(_ROLES, params)).all())


async def require_org_action(
    session: AsyncSession, actor: Actor, organisation_id: str, action: OrgAction
) -> Organisation:
    org = await session.get(Organisation, organisation_id)
    role = None if org is None else await org_role(session, actor.user_id, organisation_id)
    if org is None or role is None:
        raise NotFound("no such organisation")
    require_org(action, role)
    return org


async def charger_bases(
    session: AsyncSession, user_id: str, charger: Charger, clock: Clock
) -> set[Basis]:
    """Every basis ``user_id`` has on ``charger``, in one statement: the grants in force,
    the roles in its organisation and the ancestors, and the organisation's member access
    policy (the hot path of every charger action, so not one query per tree level)."""
    rows = await session.execute(
        _BASES,
        {
            "charger_id": charger.id,
            "user_id": user_id,
            "org_id": charger.organisation_id,
            "now": clock.now(),
        },
    )
    found: dict[str, list[str]] = {"grant": [], "role": [], "policy": []}
    for what, value in rows.all():
        found[what].append(value)
    bases = {Basis.of_grant(GrantKind(k)) for k in found["grant"]}
    role = _strongest(found["role"])
    if role is not None:
        bases.add(Basis.of_role(role))
        bases |= member_bases(MemberAccess(found["policy"][0]), role)
    return bases


async def chargers_bases(
    session: AsyncSession,
    user_id: str,
    chargers: Sequence[Charger],
    charger_ids: ColumnElement[Any],
    clock: Clock,
) -> dict[str, set[Basis]]:
    """``charger_bases`` for many chargers at once (``charger_ids``: a subquery selecting
    their ids): one query for the grants, one role lookup per organisation."""
    bases: dict[str, set[Basis]] = {charger.id: set() for charger in chargers}
    grants = await session.execute(
        select(Grant.charger_id, Grant.kind).where(
            Grant.user_id == user_id, Grant.charger_id.in_(charger_ids), active_grant(clock)
        )
    )
    for charger_id, kind in grants.all():
        if charger_id in bases:
            bases[charger_id].add(Basis.of_grant(GrantKind(kind)))
    roles = {
        org_id: await org_role(session, user_id, org_id)
        for org_id in sorted({charger.organisation_id for charger in chargers})
    }
    for charger in chargers:
        role = roles[charger.organisation_id]
        if role is not None:
            bases[charger.id].add(Basis.of_role(role))
    return bases


@dataclass(frozen=True, kw_only=True, slots=True)
class ChargerAccess:
    charger: Charger
    basis: Basis
    """The basis allowing the action asked about."""
    bases: set[Basis]
    """Every basis the actor has on the charger."""


async def charger_for(
    session: AsyncSession, actor: Actor, charger_id: str, action: ChargerAction, clock: Clock
) -> ChargerAccess:
    """The charger if ``actor`` may see it (else ``NotFound``, as if it did not exist) and
    the basis allowing ``action`` (else ``PermissionDenied``)."""
    charger = await session.get(Charger, charger_id)
    bases = (
        set() if charger is None else await charger_bases(session, actor.user_id, charger, clock)
    )
    if charger is None or not (bases & _visible):
        raise NotFound("no such charger")
    return ChargerAccess(charger=charger, basis=require_charger(action, bases), bases=bases)


_visible = frozenset(
    {Basis.OWNER, Basis.USER, Basis.SERVICE, Basis.ORG_SUPER_ADMIN, Basis.ORG_ADMIN}
)


async def require_credential_manager(
    session: AsyncSession, actor: Actor, org_id: str, user_id: str, *, refusal: str
) -> Organisation:
    """The organisation, when ``actor`` may set a credential (keypad PIN, card) for
    ``user_id`` in it: anyone their own; an admin a member who does not outrank them, since
    whoever sets a credential can use it as its holder. ``refusal``: the outranked case."""
    if user_id == actor.user_id:
        return await require_org_action(session, actor, org_id, OrgAction.VIEW)
    org = await require_org_action(session, actor, org_id, OrgAction.SET_MEMBER_KEYPAD_PIN)
    target = await org_role(session, user_id, org_id)
    if target is None:
        raise NotFound("no such member")
    setter = await org_role(session, actor.user_id, org_id)
    if setter is None or ROLE_RANK[target] > ROLE_RANK[setter]:
        raise PermissionDenied(refusal)
    return org
