"""Security events the chargers reported (a PIN lockout, ...), for those who may see them."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from evaccess.domain.access import ChargerAction
from evaccess.server.context import Context
from evaccess.server.db.models import SecurityEvent
from evaccess.server.services.relations import Actor, charger_for


async def of_charger(
    ctx: Context, actor: Actor, charger_id: str, limit: int = 200
) -> list[SecurityEvent]:
    async with ctx.db.read() as session:
        charger = (
            await charger_for(
                session, actor, charger_id, ChargerAction.VIEW_SECURITY_EVENTS, ctx.clock
            )
        ).charger
        return await newest(session, charger.id, limit=limit)


async def newest(session: AsyncSession, charger_id: str, *, limit: int) -> list[SecurityEvent]:
    return list(
        (
            await session.scalars(
                select(SecurityEvent)
                .where(SecurityEvent.charger_id == charger_id)
                .order_by(SecurityEvent.received_at.desc())
                .limit(limit)
            )
        ).all()
    )
