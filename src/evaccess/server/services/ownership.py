"""Who owns a charger: an ownership starts at registration (or a transfer) and everything
derived from it (grants, invitations, phone credentials) ends with it."""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from evaccess.domain.access import GrantKind
from evaccess.server.context import Context
from evaccess.server.db.models import Charger, Grant, Invitation, Ownership, PhoneCredential
from evaccess.server.services.relations import Actor


async def start(
    session: AsyncSession, ctx: Context, charger: Charger, owner_id: str, actor: Actor
) -> Ownership:
    now = ctx.clock.now()
    ownership = Ownership(charger_id=charger.id, owner_id=owner_id, started_at=now)
    session.add(ownership)
    await session.flush()
    session.add(
        Grant(
            charger_id=charger.id,
            user_id=owner_id,
            kind=GrantKind.OWNER,
            ownership_id=ownership.id,
            granted_by=actor.user_id,
            created_at=now,
        )
    )
    return ownership


async def current(session: AsyncSession, charger_id: str) -> Ownership | None:
    return await session.scalar(
        select(Ownership).where(Ownership.charger_id == charger_id, Ownership.ended_at.is_(None))
    )


def access_changed(ctx: Context, charger: Charger, *, list_changed: bool = True) -> None:
    """After a commit that changed who may use a charger: drop the keypad index (so nobody
    loads the old state under a new epoch) and let the charger fetch its list update."""
    ctx.keypad_index.invalidate()
    if list_changed:
        ctx.notifier.poke(charger.serial)


async def end(session: AsyncSession, ctx: Context, ownership: Ownership) -> dict[str, int]:
    """End one ownership and everything derived from it, in the caller's transaction: one
    UPDATE per table (grants, open invitations, phone credentials). Returns how many rows
    each revoked, for the audit record. The caller calls ``access_changed`` after commit."""
    now = ctx.clock.now()
    ownership.ended_at = now
    derived = (
        (
            "grants",
            update(Grant).where(Grant.ownership_id == ownership.id, Grant.revoked_at.is_(None)),
        ),
        (
            "invitations",
            update(Invitation).where(
                Invitation.ownership_id == ownership.id,
                Invitation.revoked_at.is_(None),
                Invitation.accepted_at.is_(None),  # an accepted one lives on as its grant
            ),
        ),
        (
            "phones",
            update(PhoneCredential).where(
                PhoneCredential.ownership_id == ownership.id, PhoneCredential.revoked_at.is_(None)
            ),
        ),
    )
    counts: dict[str, int] = {}
    for name, statement in derived:
        result = await session.execute(statement.values(revoked_at=now))
        counts[name] = int(result.rowcount)  # type: ignore[attr-defined]
    return counts
