"""What the operator's ``evaccess admin`` commands look up: organisations by id or name,
and the lists of organisations, users and chargers. System scope: no actor, no tenant
filter, so nothing here is reachable from the API."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, or_, select

from evaccess.domain.errors import InvalidInput, NotFound
from evaccess.server.context import Context
from evaccess.server.db.models import Charger, Membership, Organisation, User


async def organisation(ctx: Context, ref: str) -> Organisation:
    """An organisation by its id or by its name, which must then be unique."""
    async with ctx.db.read() as session:
        found = (
            await session.scalars(
                select(Organisation).where(or_(Organisation.id == ref, Organisation.name == ref))
            )
        ).all()
    by_id = [org for org in found if org.id == ref]
    if by_id:
        return by_id[0]
    if not found:
        raise NotFound(f"no organisation with the id or name {ref!r}")
    if len(found) > 1:
        raise InvalidInput(f"{len(found)} organisations are named {ref!r}: give its id")
    return found[0]


@dataclass(frozen=True, kw_only=True, slots=True)
class OrganisationRow:
    id: str
    name: str
    parent_id: str | None
    members: int
    chargers: int


@dataclass(frozen=True, kw_only=True, slots=True)
class UserRow:
    id: str
    email: str
    system_admin: bool
    organisations: int


@dataclass(frozen=True, kw_only=True, slots=True)
class ChargerRow:
    id: str
    serial: str
    organisation: str
    vendor: str
    model: str
    firmware: str
    online: bool


async def organisations(ctx: Context) -> list[OrganisationRow]:
    members = (
        select(func.count()).where(Membership.organisation_id == Organisation.id).scalar_subquery()
    )
    chargers = (
        select(func.count()).where(Charger.organisation_id == Organisation.id).scalar_subquery()
    )
    async with ctx.db.read() as session:
        rows = (
            await session.execute(
                select(Organisation, members, chargers).order_by(
                    Organisation.created_at, Organisation.name
                )
            )
        ).all()
    return [
        OrganisationRow(id=o.id, name=o.name, parent_id=o.parent_id, members=m, chargers=c)
        for o, m, c in rows
    ]


async def users(ctx: Context) -> list[UserRow]:
    memberships = select(func.count()).where(Membership.user_id == User.id).scalar_subquery()
    async with ctx.db.read() as session:
        rows = (await session.execute(select(User, memberships).order_by(User.email))).all()
    return [
        UserRow(id=u.id, email=u.email, system_admin=u.is_system_admin, organisations=n)
        for u, n in rows
    ]


async def chargers(ctx: Context) -> list[ChargerRow]:
    async with ctx.db.read() as session:
        rows = (
            await session.execute(
                select(Charger, Organisation.name)
                .join(Organisation, Organisation.id == Charger.organisation_id)
                .order_by(Charger.serial)
            )
        ).all()
    return [
        ChargerRow(
            id=c.id,
            serial=c.serial,
            organisation=name,
            vendor=c.vendor,
            model=c.model,
            firmware=c.firmware,
            online=c.online,
        )
        for c, name in rows
    ]
