"""Invitations: the owner invites an email address; its account accepts and gets a grant."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select

from evaccess.domain.access import ChargerAction, GrantKind, grant_expiry
from evaccess.domain.errors import InvalidInput, NotFound
from evaccess.server.context import Context
from evaccess.server.db.models import Charger, Grant, Invitation
from evaccess.server.services import grants, ownership
from evaccess.server.services.accounts import normalise_email, token_digest, typed_code
from evaccess.server.services.relations import Actor, charger_for

INVITATION_TTL = timedelta(days=14)


@dataclass(frozen=True, kw_only=True, slots=True)
class IssuedInvitation:
    invitation: Invitation
    token: str
    """Shown once to the inviter, who passes it on; only its hash is stored."""


async def invite(
    ctx: Context,
    actor: Actor,
    charger_id: str,
    *,
    email: str,
    kind: GrantKind,
    service_expires_at: datetime | None = None,
) -> IssuedInvitation:
    if kind is GrantKind.OWNER:
        raise InvalidInput(
            "ownership is transferred, not invited: evaccess app transfer start SERIAL EMAIL",
            code="ownership_not_invited",
        )
    if service_expires_at is not None:
        grant_expiry(kind, service_expires_at, ctx.clock.now())  # refuses what cannot expire
    token = typed_code(ctx.rng)
    now = ctx.clock.now()
    async with ctx.db.transaction() as session:
        charger = (
            await charger_for(session, actor, charger_id, ChargerAction.MANAGE_GRANTS, ctx.clock)
        ).charger
        owned = await ownership.current(session, charger.id)
        invitation = Invitation(
            charger_id=charger.id,
            ownership_id=owned.id if owned else None,
            email=normalise_email(email),
            kind=kind,
            token_hash=token_digest(token),
            invited_by=actor.user_id,
            created_at=now,
            expires_at=now + INVITATION_TTL,
            service_expires_at=service_expires_at,
        )
        session.add(invitation)
        await session.flush()
        await ctx.audit.append(
            session,
            actor.audit_entry(
                "invitation.created",
                charger=charger,
                details={"kind": kind.value, "invitation": invitation.id},
            ),
        )
    return IssuedInvitation(invitation=invitation, token=token)


async def accept_invitation(ctx: Context, actor: Actor, token: str) -> Grant:
    """The invitee (logged in with the invited email) accepts; the grant follows. Service
    access without a chosen end lasts ``SERVICE_ACCESS_TTL`` from acceptance."""
    async with ctx.db.transaction() as session:
        invitation = await session.scalar(
            select(Invitation).where(Invitation.token_hash == token_digest(token))
        )
        if (
            invitation is None
            or invitation.email != actor.email
            or invitation.revoked_at is not None
            or invitation.accepted_at is not None
            or invitation.expires_at <= ctx.clock.now()
        ):
            raise NotFound("no such invitation for this account (or it expired)")
        charger = await session.get_one(Charger, invitation.charger_id)
        invitation.accepted_at = ctx.clock.now()
        inviter = Actor(user_id=invitation.invited_by, email="", request_id=actor.request_id)
        grant = await grants.add(
            session, ctx, inviter, charger, actor.user_id, GrantKind(invitation.kind),
            invitation.service_expires_at,
        )  # fmt: skip
        grant.ownership_id = invitation.ownership_id
    ownership.access_changed(ctx, charger)
    return grant


async def list_invitations(ctx: Context, actor: Actor, charger_id: str) -> list[Invitation]:
    async with ctx.db.read() as session:
        charger = (
            await charger_for(session, actor, charger_id, ChargerAction.MANAGE_GRANTS, ctx.clock)
        ).charger
        return list(
            (
                await session.scalars(
                    select(Invitation).where(
                        Invitation.charger_id == charger.id,
                        Invitation.accepted_at.is_(None),
                        Invitation.revoked_at.is_(None),
                        Invitation.expires_at > ctx.clock.now(),
                    )
                )
            ).all()
        )


async def revoke_invitation(
    ctx: Context, actor: Actor, charger_id: str, invitation_id: str
) -> None:
    async with ctx.db.transaction() as session:
        charger = (
            await charger_for(session, actor, charger_id, ChargerAction.MANAGE_GRANTS, ctx.clock)
        ).charger
        invitation = await session.get(Invitation, invitation_id)
        if invitation is None or invitation.charger_id != charger.id or invitation.revoked_at:
            raise NotFound("no such invitation")
        invitation.revoked_at = ctx.clock.now()
