"""Chargers as their users see them: one, or all the actor may see."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

from sqlalchemy import and_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from evaccess.domain.access import Basis, ChargerAction, Role, allowed_bases
from evaccess.domain.policy import PinPolicy
from evaccess.server.context import Context
from evaccess.server.db.models import (
    Charger,
    ChargerSetting,
    ConnectorStatus,
    Grant,
    Membership,
    SecurityEvent,
    User,
)
from evaccess.server.services import bluetooth_pins, security_events
from evaccess.server.services.relations import (
    Actor,
    active_grant,
    charger_for,
    chargers_bases,
    current_ownership,
    subtree,
)


@dataclass(frozen=True, kw_only=True, slots=True)
class ChargerView:
    charger: Charger
    bases: frozenset[Basis]
    policy: PinPolicy
    connectors: tuple[ConnectorStatus, ...] = ()
    settings: tuple[ChargerSetting, ...] = ()
    """Non-secret settings the charger reported (Wi-Fi network name, current limit, ...)."""
    recent_security_events: tuple[SecurityEvent, ...] | None = None
    """The newest security events (a PIN lockout, ...), for those who may see them; else
    ``None``."""


RECENT_SECURITY_EVENTS = 5


@dataclass(frozen=True, kw_only=True, slots=True)
class Owner:
    user_id: str
    email: str
    since: datetime


async def owner_of(ctx: Context, actor: Actor, charger_id: str) -> Owner | None:
    """Who owns the charger now (``None``: nobody, it can be claimed), for anyone who sees it."""
    async with ctx.db.read() as session:
        charger = (
            await charger_for(session, actor, charger_id, ChargerAction.VIEW, ctx.clock)
        ).charger
        owned = await current_ownership(session, charger.id)
        owner = await session.get(User, owned.owner_id) if owned is not None else None
    if owned is None or owner is None:
        return None
    return Owner(user_id=owner.id, email=owner.email, since=owned.started_at)


async def list_chargers(
    ctx: Context, actor: Actor, *, serial: str | None = None
) -> list[ChargerView]:
    """Chargers the actor has a grant on, or that belong to an organisation where the actor
    is an admin (or to its subgroups); each as ``get_charger`` shows it. A fixed number of
    queries however many chargers (plus one role lookup per organisation among them)."""
    async with ctx.db.read() as session:
        granted = select(Grant.charger_id).where(
            Grant.user_id == actor.user_id, active_grant(ctx.clock)
        )
        admin_orgs = await _admin_org_ids(session, actor)
        visible = or_(Charger.id.in_(granted), Charger.organisation_id.in_(admin_orgs))
        if serial is not None:
            visible = and_(visible, Charger.serial == serial)
        chargers = (
            await session.scalars(select(Charger).where(visible).order_by(Charger.serial))
        ).all()
        if not chargers:
            return []
        ids = select(Charger.id).where(visible).scalar_subquery()
        bases = await chargers_bases(session, actor.user_id, chargers, ids, ctx.clock)
        connectors = _by_charger(
            await session.scalars(
                select(ConnectorStatus)
                .where(ConnectorStatus.charger_id.in_(ids))
                .order_by(ConnectorStatus.evse_id, ConnectorStatus.connector_id)
            )
        )
        settings = _by_charger(
            await session.scalars(
                select(ChargerSetting)
                .where(ChargerSetting.charger_id.in_(ids))
                .order_by(ChargerSetting.key)
            )
        )
    return [
        ChargerView(
            charger=charger,
            bases=frozenset(bases[charger.id]),
            policy=bluetooth_pins.policy_of(charger),
            connectors=tuple(connectors.get(charger.id, ())),
            settings=tuple(settings.get(charger.id, ())),
        )
        for charger in chargers
    ]


_Row = TypeVar("_Row", ConnectorStatus, ChargerSetting)


def _by_charger(rows: Iterable[_Row]) -> dict[str, list[_Row]]:
    grouped: dict[str, list[_Row]] = {}
    for row in rows:
        grouped.setdefault(row.charger_id, []).append(row)
    return grouped


async def _admin_org_ids(session: AsyncSession, actor: Actor) -> list[str]:
    roots = (
        await session.scalars(
            select(Membership.organisation_id).where(
                Membership.user_id == actor.user_id,
                Membership.role.in_([Role.ADMIN, Role.SUPER_ADMIN]),
            )
        )
    ).all()
    found: set[str] = set()
    for root in roots:
        found.update(await subtree(session, root))
    return sorted(found)


async def get_charger(ctx: Context, actor: Actor, charger_id: str) -> ChargerView:
    async with ctx.db.read() as session:
        access = await charger_for(session, actor, charger_id, ChargerAction.VIEW, ctx.clock)
        charger = access.charger
        connectors = (
            await session.scalars(
                select(ConnectorStatus)
                .where(ConnectorStatus.charger_id == charger.id)
                .order_by(ConnectorStatus.evse_id, ConnectorStatus.connector_id)
            )
        ).all()
        settings = (
            await session.scalars(
                select(ChargerSetting)
                .where(ChargerSetting.charger_id == charger.id)
                .order_by(ChargerSetting.key)
            )
        ).all()
        events = None
        if allowed_bases(ChargerAction.VIEW_SECURITY_EVENTS, access.bases):
            events = tuple(
                await security_events.newest(session, charger.id, limit=RECENT_SECURITY_EVENTS)
            )
    return ChargerView(
        charger=charger,
        bases=frozenset(access.bases),
        policy=bluetooth_pins.policy_of(charger),
        connectors=tuple(connectors),
        settings=tuple(settings),
        recent_security_events=events,
    )
