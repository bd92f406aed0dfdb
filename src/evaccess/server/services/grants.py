"""Who may use a charger besides its owner: assignment by a super-admin and grants made by
the owner (directly or through an invitation)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from evaccess.domain.access import ChargerAction, GrantKind, grant_expiry
from evaccess.domain.errors import Conflict, NotFound
from evaccess.server.context import Context
from evaccess.server.db.models import Charger, Grant, Membership, PhoneCredential, User
from evaccess.server.services import local_lists, outbox, ownership, tokens
from evaccess.server.services.relations import Actor, active_grant, ancestors, charger_for, subtree


@dataclass(frozen=True, kw_only=True, slots=True)
class GrantView:
    grant: Grant
    email: str


async def assign(ctx: Context, actor: Actor, charger_id: str, user_id: str) -> GrantView:
    """A super-admin assigns a charger to a member of its organisation or of an ancestor."""
    async with ctx.db.transaction() as session:
        charger = (
            await charger_for(session, actor, charger_id, ChargerAction.ASSIGN, ctx.clock)
        ).charger
        # The group the charger belongs to, the groups above it and its subgroups (Wallbox portal:
        # "assign chargers to users in a group or a subgroup").
        org_ids = [o.id for o in await ancestors(session, charger.organisation_id)]
        org_ids += await subtree(session, charger.organisation_id)
        email = await session.scalar(
            select(User.email)
            .join(Membership, Membership.user_id == User.id)
            .where(Membership.user_id == user_id, Membership.organisation_id.in_(org_ids))
        )
        if email is None:
            raise NotFound("no such member in this charger's organisation")
        grant = await add(session, ctx, actor, charger, user_id, GrantKind.USER, None)
    ownership.access_changed(ctx, charger)
    return GrantView(grant=grant, email=email)


async def add(
    session: AsyncSession,
    ctx: Context,
    actor: Actor,
    charger: Charger,
    user_id: str,
    kind: GrantKind,
    expires_at: datetime | None,
) -> Grant:
    existing = await session.scalar(
        select(Grant).where(
            Grant.charger_id == charger.id,
            Grant.user_id == user_id,
            Grant.kind == kind,
            active_grant(ctx.clock),
        )
    )
    if existing is not None:
        return existing
    expires_at = grant_expiry(kind, expires_at, ctx.clock.now())
    owned = await ownership.current(session, charger.id)
    grant = Grant(
        charger_id=charger.id,
        user_id=user_id,
        kind=kind,
        ownership_id=owned.id if owned else None,
        granted_by=actor.user_id,
        created_at=ctx.clock.now(),
        expires_at=expires_at,
    )
    session.add(grant)
    await session.flush()
    await local_lists.sync(session, ctx, charger)  # the caller pokes after commit
    await ctx.audit.append(
        session,
        actor.audit_entry(
            "grant.created",
            charger=charger,
            subject_id=user_id,
            details={
                "kind": kind.value,
                "expires_at": expires_at.isoformat() if expires_at else None,
            },
        ),
    )
    return grant


async def list_grants(ctx: Context, actor: Actor, charger_id: str) -> list[GrantView]:
    async with ctx.db.read() as session:
        charger = (
            await charger_for(session, actor, charger_id, ChargerAction.MANAGE_GRANTS, ctx.clock)
        ).charger
        rows = (
            await session.execute(
                select(Grant, User.email)
                .join(User, User.id == Grant.user_id)
                .where(Grant.charger_id == charger.id, active_grant(ctx.clock))
                .order_by(Grant.created_at)
            )
        ).all()
    return [GrantView(grant=g, email=e) for g, e in rows]


async def revoke_grant(ctx: Context, actor: Actor, charger_id: str, grant_id: str) -> None:
    async with ctx.db.transaction() as session:
        charger = (
            await charger_for(session, actor, charger_id, ChargerAction.MANAGE_GRANTS, ctx.clock)
        ).charger
        grant = await session.get(Grant, grant_id)
        if grant is None or grant.charger_id != charger.id or grant.revoked_at is not None:
            raise NotFound("no such grant")
        if grant.kind == GrantKind.OWNER:
            raise Conflict(
                "ownership ends by transfer, not by revoking a grant", code="owner_grant"
            )
        grant.revoked_at = ctx.clock.now()
        await session.flush()
        list_changed = await local_lists.sync(session, ctx, charger) is not None
        # a card of theirs may sit in the charger's authorization cache
        list_changed |= await tokens.access_revoked(session, ctx, charger, grant.user_id)
        await _forget_phones(session, ctx, charger, grant.user_id)
        await ctx.audit.append(
            session,
            actor.audit_entry(
                "grant.revoked",
                charger=charger,
                subject_id=grant.user_id,
                details={"kind": grant.kind},
            ),
        )
    ownership.access_changed(ctx, charger, list_changed=list_changed)


async def _forget_phones(
    session: AsyncSession, ctx: Context, charger: Charger, user_id: str
) -> None:
    """A person whose last grant on the charger ended: the charger forgets the phones the
    server knows as theirs (OCPP RevokeCredentials, one per phone)."""
    still = await session.scalar(
        select(Grant.id).where(
            Grant.charger_id == charger.id, Grant.user_id == user_id, active_grant(ctx.clock)
        )
    )
    if still is not None:
        return
    phones = (
        await session.scalars(
            select(PhoneCredential).where(
                PhoneCredential.charger_id == charger.id,
                PhoneCredential.user_id == user_id,
                PhoneCredential.revoked_at.is_(None),
            )
        )
    ).all()
    for phone in phones:
        phone.revoked_at = ctx.clock.now()
        await outbox.queue(
            session, ctx, charger.id, outbox.CommandKind.REVOKE_CREDENTIALS, phone_id=phone.phone_id
        )


async def extend_grant(
    ctx: Context, actor: Actor, charger_id: str, grant_id: str, until: datetime
) -> GrantView:
    """The owner moves the end of someone's service access (later or sooner, never into the
    past: ending it now is ``revoke_grant``). An expired grant is gone: invite again."""
    async with ctx.db.transaction() as session:
        charger = (
            await charger_for(session, actor, charger_id, ChargerAction.MANAGE_GRANTS, ctx.clock)
        ).charger
        grant = await session.get(Grant, grant_id)
        if (
            grant is None
            or grant.charger_id != charger.id
            or grant.revoked_at is not None
            or (grant.expires_at is not None and grant.expires_at <= ctx.clock.now())
        ):
            raise NotFound("no such grant (or it expired)")
        if grant.kind != GrantKind.SERVICE:
            raise Conflict("only service access has an end to move", code="not_service_grant")
        previous = grant.expires_at
        grant.expires_at = grant_expiry(GrantKind.SERVICE, until, ctx.clock.now())
        await session.flush()
        list_changed = await local_lists.sync(session, ctx, charger) is not None
        await ctx.audit.append(
            session,
            actor.audit_entry(
                "grant.extended",
                charger=charger,
                subject_id=grant.user_id,
                details={
                    "grant": grant.id,
                    "from": previous.isoformat() if previous else None,
                    "until": grant.expires_at.isoformat() if grant.expires_at else None,
                },
            ),
        )
        email = await session.scalar(select(User.email).where(User.id == grant.user_id))
    ownership.access_changed(ctx, charger, list_changed=list_changed)
    return GrantView(grant=grant, email=email or "")
