"""Ownership transfers: the owner offers a charger to an email address, its account
accepts (the atomic ``ownership.hand_over``), the owner cancels, or the offer expires. The
lifecycle's rules are ``domain.ownership_transfer``; this module loads, decides with it and
saves. Releasing a charger (moving out, no buyer) is the same handover to nobody."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from evaccess.domain.access import ChargerAction, GrantKind
from evaccess.domain.errors import Conflict, InvalidInput, NotFound
from evaccess.domain.ownership_transfer import (
    TRANSFER_TTL,
    Transfer,
    TransferMove,
    TransferParty,
    TransferState,
)
from evaccess.server.context import Context
from evaccess.server.db.models import Charger, OwnershipTransfer, User
from evaccess.server.services import grants, notifications, ownership
from evaccess.server.services.accounts import normalise_email
from evaccess.server.services.ownership import HandOver, HandOverReason
from evaccess.server.services.relations import Actor, charger_for

TRANSFER_OFFERED = "ownership_transfer.offered"
TRANSFER_DECIDED = "ownership_transfer.decided"


@dataclass(frozen=True, kw_only=True, slots=True)
class TransferView:
    id: str
    charger_id: str
    serial: str
    from_email: str
    to_email: str
    keep_service_access: bool
    state: TransferState
    """As of now: an open transfer past its time shows as expired."""
    created_at: datetime
    expires_at: datetime
    decided_at: datetime | None


@dataclass(frozen=True, kw_only=True, slots=True)
class Accepted:
    transfer: TransferView
    handover: HandOver


def _lifecycle(row: OwnershipTransfer) -> Transfer:
    return Transfer(
        state=TransferState(row.state),
        created_at=row.created_at,
        expires_at=row.expires_at,
        decided_at=row.decided_at,
    )


def _save(row: OwnershipTransfer, transfer: Transfer, by: str | None) -> None:
    row.state, row.decided_at, row.decided_by = transfer.state.value, transfer.decided_at, by


async def _view(session: AsyncSession, ctx: Context, row: OwnershipTransfer) -> TransferView:
    serial = await session.scalar(select(Charger.serial).where(Charger.id == row.charger_id))
    sender = await session.scalar(select(User.email).where(User.id == row.from_user_id))
    return TransferView(
        id=row.id,
        charger_id=row.charger_id,
        serial=serial or "",
        from_email=sender or "",
        to_email=row.to_email,
        keep_service_access=row.keep_service_access,
        state=_lifecycle(row).state_at(ctx.clock.now()),
        created_at=row.created_at,
        expires_at=row.expires_at,
        decided_at=row.decided_at,
    )


async def _open_of(
    session: AsyncSession, ctx: Context, charger_id: str
) -> OwnershipTransfer | None:
    """The charger's open transfer, recording the lapse of one whose time is up."""
    for row in (
        await session.scalars(
            select(OwnershipTransfer).where(
                OwnershipTransfer.charger_id == charger_id,
                OwnershipTransfer.state == TransferState.OPEN.value,
            )
        )
    ).all():
        lifecycle = _lifecycle(row)
        if lifecycle.is_open(ctx.clock.now()):
            return row
        _save(row, lifecycle.expired(ctx.clock.now()), None)
    return None


async def start_transfer(
    ctx: Context,
    actor: Actor,
    charger_id: str,
    email: str,
    *,
    ttl: timedelta = TRANSFER_TTL,
    keep_service_access: bool = False,
) -> TransferView:
    """The owner offers the charger to ``email``; they keep full access until it is accepted.
    One open transfer per charger (cancel it to offer the charger to someone else).

    ``keep_service_access``: the installer's handover (they commissioned the charger by its
    sticker for a customer): on acceptance they keep a service grant under the customer's
    ownership, which expires like any (14 days) and which the customer extends or ends."""
    to_email = normalise_email(email)
    if not to_email or "@" not in to_email:
        raise InvalidInput("a transfer goes to an email address")
    if to_email == normalise_email(actor.email):
        raise InvalidInput("you own this charger already", code="transfer_to_self")
    now = ctx.clock.now()
    async with ctx.db.transaction() as session:
        access = await charger_for(
            session, actor, charger_id, ChargerAction.TRANSFER_OWNERSHIP, ctx.clock
        )
        charger = access.charger
        owned = await ownership.current(session, charger.id)
        if owned is None or owned.owner_id != actor.user_id:  # the OWNER basis says it is
            raise NotFound("no such charger")
        if await _open_of(session, ctx, charger.id) is not None:
            raise Conflict(
                "this charger has an open transfer: cancel it first", code="transfer_pending"
            )
        lifecycle = Transfer.start(now, ttl)
        row = OwnershipTransfer(
            charger_id=charger.id,
            ownership_id=owned.id,
            from_user_id=actor.user_id,
            to_email=to_email,
            keep_service_access=keep_service_access,
            state=lifecycle.state.value,
            created_at=lifecycle.created_at,
            expires_at=lifecycle.expires_at,
        )
        session.add(row)
        await session.flush()
        await notifications.notify(
            session,
            to_email,
            TRANSFER_OFFERED,
            f"You are offered charger {charger.serial}",
            f"{actor.email} offers you the ownership of charger {charger.serial}. Log in to "
            "the app and run `evaccess app transfer list` to accept it (open for "
            f"{ttl.days} days). If you do not know this, ignore this message.",
            now=now,
            known=(charger.serial,),
        )
        await ctx.audit.append(
            session,
            actor.audit_entry(
                "ownership_transfer.started",
                charger=charger,
                basis=access.basis,
                details={
                    "transfer": row.id,
                    "expires_at": row.expires_at.isoformat(),
                    "keep_service_access": keep_service_access,
                },
            ),
        )
        return await _view(session, ctx, row)


async def _row_for(
    session: AsyncSession, actor: Actor, transfer_id: str
) -> tuple[OwnershipTransfer, TransferParty]:
    """The transfer if the actor is its owner or its recipient (else: it does not exist),
    locked for the rest of the transaction (two acceptances at once: one waits, then finds
    it accepted)."""
    row = await session.get(OwnershipTransfer, transfer_id, with_for_update=True)
    if row is not None and row.from_user_id == actor.user_id:
        return row, TransferParty.OWNER
    if row is not None and row.to_email == normalise_email(actor.email):
        return row, TransferParty.RECIPIENT
    raise NotFound("no such transfer for this account")


async def accept_transfer(ctx: Context, actor: Actor, transfer_id: str) -> Accepted:
    """The recipient accepts: the handover, in this one transaction."""
    now = ctx.clock.now()
    async with ctx.db.transaction() as session:
        row, party = await _row_for(session, actor, transfer_id)
        moved = _lifecycle(row).move(TransferMove.ACCEPT, party, now)
        charger = await session.get_one(Charger, row.charger_id)
        owned = await ownership.current(session, charger.id)
        if owned is None or owned.id != row.ownership_id:
            raise Conflict("this transfer is cancelled", code="transfer_cancelled")
        _save(row, moved, actor.user_id)
        await session.flush()
        handover = await ownership.hand_over(
            session, ctx, charger, to_user_id=actor.user_id, actor=actor,
            reason=HandOverReason.TRANSFER,
        )  # fmt: skip
        await notifications.notify(
            session,
            row.from_user_id,
            TRANSFER_DECIDED,
            f"Charger {charger.serial} has a new owner",
            f"{actor.email} accepted your transfer of charger {charger.serial}; your access "
            "to it, and that of everyone you shared it with, ended.",
            now=now,
            known=(charger.serial,),
        )
        if row.keep_service_access:
            await grants.add(
                session, ctx, actor, charger, row.from_user_id, GrantKind.SERVICE, None
            )
        view = await _view(session, ctx, row)
    ownership.access_changed(ctx, charger)
    return Accepted(transfer=view, handover=handover)


async def cancel_transfer(ctx: Context, actor: Actor, transfer_id: str) -> TransferView:
    """The owner withdraws an open transfer; nothing else changes."""
    now = ctx.clock.now()
    async with ctx.db.transaction() as session:
        row, party = await _row_for(session, actor, transfer_id)
        _save(row, _lifecycle(row).move(TransferMove.CANCEL, party, now), actor.user_id)
        charger = await session.get_one(Charger, row.charger_id)
        await ctx.audit.append(
            session,
            actor.audit_entry(
                "ownership_transfer.cancelled", charger=charger, details={"transfer": row.id}
            ),
        )
        await notifications.notify(
            session,
            row.to_email,
            TRANSFER_DECIDED,
            f"The offer of charger {charger.serial} was withdrawn",
            f"{actor.email} withdrew the transfer of charger {charger.serial} to you.",
            now=now,
            known=(charger.serial,),
        )
        return await _view(session, ctx, row)


async def list_transfers(ctx: Context, actor: Actor) -> list[TransferView]:
    """Transfers the actor started or was offered, newest first."""
    async with ctx.db.read() as session:
        rows = (
            await session.scalars(
                select(OwnershipTransfer)
                .where(
                    or_(
                        OwnershipTransfer.from_user_id == actor.user_id,
                        OwnershipTransfer.to_email == normalise_email(actor.email),
                    )
                )
                .order_by(OwnershipTransfer.created_at.desc(), OwnershipTransfer.id)
            )
        ).all()
        return [await _view(session, ctx, row) for row in rows]


async def expire_transfers(ctx: Context) -> int:
    """Record the lapse of every open transfer whose time is up; returns how many."""
    now = ctx.clock.now()
    async with ctx.db.transaction() as session:
        rows = (
            await session.scalars(
                select(OwnershipTransfer).where(
                    OwnershipTransfer.state == TransferState.OPEN.value,
                    OwnershipTransfer.expires_at <= now,
                )
            )
        ).all()
        for row in rows:
            _save(row, _lifecycle(row).move(TransferMove.EXPIRE, TransferParty.SYSTEM, now), None)
    return len(rows)


async def release(ctx: Context, actor: Actor, charger_id: str) -> HandOver:
    """The owner gives the charger up without a buyer (moving out): the same revocations as
    a transfer, and the charger has no owner (it can be claimed again)."""
    async with ctx.db.transaction() as session:
        charger = (
            await charger_for(
                session, actor, charger_id, ChargerAction.TRANSFER_OWNERSHIP, ctx.clock
            )
        ).charger
        handover = await ownership.hand_over(
            session, ctx, charger, to_user_id=None, actor=actor, reason=HandOverReason.RELEASE
        )
    ownership.access_changed(ctx, charger)
    return handover
