"""Claims through support: a person without access to a charger asks for it with proof
(installation address, installer, a purchase agreement); two different support agents
approve; the owner at filing is told and may object within the window; then the same
atomic handover as a transfer (``ownership.hand_over``, reason ``claim``).

The lifecycle's rules are ``domain.claim``; this module loads, decides with it and saves.
Support agents see the claim and its document, never a PIN or keypad code: nothing here
reads one, and a support agent gets no basis on the charger by reviewing a claim.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from evaccess.domain.access import StaffRole
from evaccess.domain.claim import (
    CLAIMS_PER_CHARGER,
    CLAIMS_PERIOD,
    OPEN,
    Claim,
    ClaimMove,
    ClaimParty,
    ClaimState,
)
from evaccess.domain.errors import (
    ConfigurationError,
    Conflict,
    InvalidInput,
    NotFound,
    PermissionDenied,
    Throttled,
)
from evaccess.server.audit import AuditEntry
from evaccess.server.context import Context
from evaccess.server.db.models import Charger, Ownership, OwnershipClaim, User
from evaccess.server.services import notifications, ownership
from evaccess.server.services.ownership import HandOver, HandOverReason
from evaccess.server.services.relations import Actor

DOCUMENT_TYPES = {
    b"%PDF-": "application/pdf",
    b"\x89PNG\r\n\x1a\n": "image/png",
    b"\xff\xd8\xff": "image/jpeg",
}
"""What a purchase agreement may be, by its first bytes (the name and the declared type
are the sender's word; the content is checked)."""

CLAIM_FILED = "claim.filed"
CLAIM_DECIDED = "claim.decided"


def document_type(data: bytes) -> str:
    """The MIME type of a PDF, PNG or JPEG document, or ``InvalidInput``."""
    for magic, kind in DOCUMENT_TYPES.items():
        if data.startswith(magic):
            return kind
    raise InvalidInput(
        "the purchase agreement must be a PDF, PNG or JPEG file", code="document_type"
    )


@dataclass(frozen=True, kw_only=True, slots=True)
class ClaimView:
    """A claim as its claimant, or the owner it is against, sees it."""

    id: str
    serial: str
    state: ClaimState
    role: ClaimParty
    """``claimant`` or ``owner``: why the caller sees it."""
    filed_at: datetime
    objection_until: datetime | None
    decided_at: datetime | None
    reason: str | None
    """Support's reason for a rejection (the claimant's view only)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class SupportView:
    """A claim as support reviews it: the evidence, and who approved so far."""

    id: str
    charger_id: str
    serial: str
    vendor: str
    model: str
    claimant_email: str
    installation_address: str
    installer_name: str
    document_type: str
    document_size: int
    document_sha256: str
    state: ClaimState
    charger_owned: bool
    """Whether the charger had an owner at filing (who was told and may object)."""
    filed_at: datetime
    objection_until: datetime | None
    first_approver_email: str | None
    second_approver_email: str | None
    decided_at: datetime | None
    reason: str | None


@dataclass(frozen=True, kw_only=True, slots=True)
class Decided:
    claim: SupportView
    handover: HandOver | None
    """Set when this decision handed the charger over."""


def _lifecycle(row: OwnershipClaim) -> Claim:
    return Claim(
        state=ClaimState(row.state),
        claimant_id=row.claimant_id,
        filed_at=row.filed_at,
        objection_until=row.objection_until,
        first_approver_id=row.first_approver_id,
        second_approver_id=row.second_approver_id,
        decided_at=row.decided_at,
    )


def _save(row: OwnershipClaim, claim: Claim, by: str | None) -> None:
    row.state = claim.state.value
    row.first_approver_id, row.second_approver_id = (
        claim.first_approver_id,
        claim.second_approver_id,
    )
    if claim.decided_at != row.decided_at:
        row.decided_at, row.decided_by = claim.decided_at, by


def require_support(actor: Actor) -> None:
    if actor.staff_role is not StaffRole.SUPPORT:
        raise PermissionDenied("only support agents review claims")


def _text(value: str, what: str, limit: int) -> str:
    value = " ".join(value.split())
    if not value:
        raise InvalidInput(f"a claim gives the {what}")
    if len(value) > limit:
        raise InvalidInput(f"the {what} is longer than {limit} characters")
    return value


async def _email(session: AsyncSession, user_id: str | None) -> str | None:
    if user_id is None:
        return None
    return await session.scalar(select(User.email).where(User.id == user_id))


def _view(row: OwnershipClaim, charger: Charger, role: ClaimParty) -> ClaimView:
    return ClaimView(
        id=row.id,
        serial=charger.serial,
        state=ClaimState(row.state),
        role=role,
        filed_at=row.filed_at,
        objection_until=row.objection_until,
        decided_at=row.decided_at,
        reason=row.reason if role is ClaimParty.CLAIMANT else None,
    )


async def _support_view(session: AsyncSession, row: OwnershipClaim) -> SupportView:
    charger = await session.get_one(Charger, row.charger_id)
    return SupportView(
        id=row.id,
        charger_id=charger.id,
        serial=charger.serial,
        vendor=charger.vendor,
        model=charger.model,
        claimant_email=await _email(session, row.claimant_id) or "",
        installation_address=row.installation_address,
        installer_name=row.installer_name,
        document_type=row.document_type,
        document_size=row.document_size,
        document_sha256=row.document_sha256,
        state=ClaimState(row.state),
        charger_owned=row.ownership_id is not None,
        filed_at=row.filed_at,
        objection_until=row.objection_until,
        first_approver_email=await _email(session, row.first_approver_id),
        second_approver_email=await _email(session, row.second_approver_id),
        decided_at=row.decided_at,
        reason=row.reason,
    )


async def file_claim(
    ctx: Context,
    actor: Actor,
    serial: str,
    *,
    installation_address: str,
    installer_name: str,
    document: bytes,
) -> ClaimView:
    """File a claim for the charger ``serial``. A serial is printed on the charger, so a
    claim for an unknown one is refused as such (that tells nothing a look at the charger
    would not). The document is checked and stored before the row that names it."""
    if ctx.documents is None:
        raise ConfigurationError("this server takes no claims (no document store)")
    address = _text(installation_address, "installation address", 500)
    installer = _text(installer_name, "installer's name", 200)
    if not document:
        raise InvalidInput("a claim carries the purchase agreement", code="document_missing")
    if len(document) > ctx.claim_document_max_bytes:
        limit = ctx.claim_document_max_bytes / (1024 * 1024)
        raise InvalidInput(
            f"the purchase agreement is larger than {limit:g} MB", code="document_too_large"
        )
    kind = document_type(document)
    now = ctx.clock.now()
    key: str | None = None
    try:
        async with ctx.db.transaction() as session:
            charger = await session.scalar(
                select(Charger).where(Charger.serial == serial.strip()).with_for_update()
            )
            if charger is None:
                raise NotFound(f"no charger {serial.strip()}")
            owned = await ownership.current(session, charger.id)
            if owned is not None and owned.owner_id == actor.user_id:
                raise Conflict("you own this charger already", code="claim_own_charger")
            recent = await session.scalar(
                select(func.count())
                .select_from(OwnershipClaim)
                .where(
                    OwnershipClaim.charger_id == charger.id,
                    OwnershipClaim.filed_at > now - CLAIMS_PERIOD,
                )
            )
            if (recent or 0) >= CLAIMS_PER_CHARGER:
                raise Throttled(
                    f"this charger had {CLAIMS_PER_CHARGER} claims in the last "
                    f"{CLAIMS_PERIOD.days} days; contact support",
                    retry_after=CLAIMS_PERIOD.total_seconds(),
                    code="claim_limit",
                )
            mine = await session.scalar(
                select(func.count())
                .select_from(OwnershipClaim)
                .where(
                    OwnershipClaim.charger_id == charger.id,
                    OwnershipClaim.claimant_id == actor.user_id,
                    OwnershipClaim.state.in_([s.value for s in OPEN]),
                )
            )
            if mine:
                raise Conflict("you have an open claim on this charger", code="claim_pending")
            claim = Claim.file(
                actor.user_id,
                now,
                has_owner=owned is not None,
                window=timedelta(seconds=ctx.claim_objection_s),
            )
            key = await ctx.documents.put(document)
            row = OwnershipClaim(
                charger_id=charger.id,
                ownership_id=owned.id if owned else None,
                claimant_id=actor.user_id,
                installation_address=address,
                installer_name=installer,
                document_key=key,
                document_type=kind,
                document_size=len(document),
                document_sha256=hashlib.sha256(document).hexdigest(),
                state=claim.state.value,
                filed_at=claim.filed_at,
                objection_until=claim.objection_until,
            )
            session.add(row)
            await session.flush()
            await ctx.audit.append(
                session,
                actor.audit_entry(
                    "claim.filed",
                    charger=charger,
                    details={"claim": row.id, "owned": owned is not None},
                ),
            )
            await notifications.notify(
                session,
                actor.user_id,
                CLAIM_FILED,
                f"Your claim of charger {charger.serial} was filed",
                "Support reviews it with the documents you sent; two agents must approve "
                "it. `evaccess app claim list` shows where it stands.",
                now=now,
                known=(charger.serial,),
            )
            if owned is not None:
                until = f"{claim.objection_until:%Y-%m-%d %H:%M} UTC"
                await notifications.notify(
                    session,
                    owned.owner_id,
                    CLAIM_FILED,
                    f"Someone claims your charger {charger.serial}",
                    f"A person has asked support to make them the owner of your charger "
                    f"{charger.serial}. If you did not sell or give it away, object before "
                    f"{until}: `evaccess app claim list` shows the claim and `evaccess app "
                    f"claim object` stops it.",
                    now=now,
                    known=(charger.serial, until),
                )
            view = _view(row, charger, ClaimParty.CLAIMANT)
    except BaseException:
        if key is not None:
            await ctx.documents.delete(key)  # the row did not commit: no orphan
        raise
    return view


async def list_claims(ctx: Context, actor: Actor) -> list[ClaimView]:
    """The claims the actor filed, and those against a charger they own (filed during
    their ownership), newest first."""
    async with ctx.db.read() as session:
        rows = (
            await session.execute(
                select(OwnershipClaim, Charger, Ownership.owner_id)
                .join(Charger, Charger.id == OwnershipClaim.charger_id)
                .outerjoin(Ownership, Ownership.id == OwnershipClaim.ownership_id)
                .where(
                    or_(
                        OwnershipClaim.claimant_id == actor.user_id,
                        Ownership.owner_id == actor.user_id,
                    )
                )
                .order_by(OwnershipClaim.filed_at.desc(), OwnershipClaim.id)
            )
        ).all()
        return [
            _view(
                row,
                charger,
                ClaimParty.CLAIMANT if row.claimant_id == actor.user_id else ClaimParty.OWNER,
            )
            for row, charger, _ in rows
        ]


async def _party(session: AsyncSession, actor: Actor, row: OwnershipClaim) -> ClaimParty:
    if row.claimant_id == actor.user_id:
        return ClaimParty.CLAIMANT
    if row.ownership_id is not None:
        owned = await session.get(Ownership, row.ownership_id)
        if owned is not None and owned.owner_id == actor.user_id and owned.ended_at is None:
            return ClaimParty.OWNER
    raise NotFound("no such claim for this account")


async def _locked(session: AsyncSession, claim_id: str) -> OwnershipClaim:
    row = await session.get(OwnershipClaim, claim_id, with_for_update=True)
    if row is None:
        raise NotFound("no such claim")
    return row


async def withdraw(ctx: Context, actor: Actor, claim_id: str) -> ClaimView:
    """The claimant takes the claim back."""
    return await _by_party(ctx, actor, claim_id, ClaimMove.WITHDRAW, "claim.withdrawn")


async def object_to(ctx: Context, actor: Actor, claim_id: str) -> ClaimView:
    """The owner stops a claim against their charger (within the window)."""
    return await _by_party(ctx, actor, claim_id, ClaimMove.OBJECT, "claim.objected")


async def _by_party(
    ctx: Context, actor: Actor, claim_id: str, move: ClaimMove, action: str
) -> ClaimView:
    now = ctx.clock.now()
    async with ctx.db.transaction() as session:
        row = await session.get(OwnershipClaim, claim_id, with_for_update=True)
        if row is None:
            raise NotFound("no such claim for this account")
        party = await _party(session, actor, row)
        _save(row, _lifecycle(row).move(move, party, now), actor.user_id)
        charger = await session.get_one(Charger, row.charger_id)
        await ctx.audit.append(
            session, actor.audit_entry(action, charger=charger, details={"claim": row.id})
        )
        if move is ClaimMove.OBJECT:
            await notifications.notify(
                session,
                row.claimant_id,
                CLAIM_DECIDED,
                f"Your claim of charger {charger.serial} was stopped",
                f"The owner of charger {charger.serial} objected to your claim, which ends "
                "it. Ask them to transfer the charger to you instead.",
                now=now,
                known=(charger.serial,),
            )
        return _view(row, charger, party)


async def queue(ctx: Context, actor: Actor, state: ClaimState | None = None) -> list[SupportView]:
    """Support's queue: open claims oldest first (or every claim in ``state``)."""
    require_support(actor)
    states = [state.value] if state is not None else [s.value for s in OPEN]
    async with ctx.db.read() as session:
        rows = (
            await session.scalars(
                select(OwnershipClaim)
                .where(OwnershipClaim.state.in_(states))
                .order_by(OwnershipClaim.filed_at, OwnershipClaim.id)
                .limit(500)
            )
        ).all()
        return [await _support_view(session, row) for row in rows]


async def show(ctx: Context, actor: Actor, claim_id: str) -> SupportView:
    require_support(actor)
    async with ctx.db.read() as session:
        row = await session.get(OwnershipClaim, claim_id)
        if row is None:
            raise NotFound("no such claim")
        return await _support_view(session, row)


async def document(ctx: Context, actor: Actor, claim_id: str) -> tuple[bytes, str]:
    """The claim's purchase agreement and its type, for support only; audited."""
    require_support(actor)
    if ctx.documents is None:
        raise ConfigurationError("this server takes no claims (no document store)")
    async with ctx.db.transaction() as session:
        row = await session.get(OwnershipClaim, claim_id)
        if row is None:
            raise NotFound("no such claim")
        charger = await session.get_one(Charger, row.charger_id)
        await ctx.audit.append(
            session,
            actor.audit_entry("claim.document_read", charger=charger, details={"claim": row.id}),
        )
        key, kind = row.document_key, row.document_type
    return await ctx.documents.get(key), kind


async def approve(ctx: Context, actor: Actor, claim_id: str) -> Decided:
    """One support agent's approval. The second, by a different agent, hands the charger
    over at once when nobody owned it at filing; otherwise once the objection window is
    over (``complete_due``)."""
    require_support(actor)
    now = ctx.clock.now()
    async with ctx.db.transaction() as session:
        row = await _locked(session, claim_id)
        claim = _lifecycle(row).move(
            ClaimMove.APPROVE, ClaimParty.SUPPORT, now, agent_id=actor.user_id
        )
        _save(row, claim, actor.user_id)
        charger = await session.get_one(Charger, row.charger_id)
        await ctx.audit.append(
            session,
            actor.audit_entry(
                "claim.approved",
                charger=charger,
                details={
                    "claim": row.id,
                    "approval": 1 if claim.state is ClaimState.APPROVED_ONCE else 2,
                },
            ),
        )
        handover = (
            await _complete_if_due(session, ctx, row, claim, charger) if claim.due(now) else None
        )
        view = await _support_view(session, row)
    if handover is not None:
        ownership.access_changed(ctx, charger)
    return Decided(claim=view, handover=handover)


async def reject(ctx: Context, actor: Actor, claim_id: str, reason: str) -> SupportView:
    """Support turns the claim down, with a reason the claimant is shown."""
    require_support(actor)
    text = _text(reason, "reason", 500)
    now = ctx.clock.now()
    async with ctx.db.transaction() as session:
        row = await _locked(session, claim_id)
        _save(
            row,
            _lifecycle(row).move(ClaimMove.REJECT, ClaimParty.SUPPORT, now, agent_id=actor.user_id),
            actor.user_id,
        )
        row.reason = text
        charger = await session.get_one(Charger, row.charger_id)
        await ctx.audit.append(
            session, actor.audit_entry("claim.rejected", charger=charger, details={"claim": row.id})
        )
        await notifications.notify(
            session,
            row.claimant_id,
            CLAIM_DECIDED,
            f"Your claim of charger {charger.serial} was rejected",
            "Support rejected your claim; `evaccess app claim list` shows their reason.",
            now=now,
            known=(charger.serial,),
        )
        return await _support_view(session, row)


async def _complete_if_due(
    session: AsyncSession, ctx: Context, row: OwnershipClaim, claim: Claim, charger: Charger
) -> HandOver | None:
    """Hand the charger over to the claimant (the claim is due), or supersede the claim when
    the charger changed hands since filing. Caller's transaction; caller calls
    ``access_changed`` after commit when a handover is returned."""
    now = ctx.clock.now()
    owned = await ownership.current(session, charger.id)
    if (owned.id if owned else None) != row.ownership_id:
        _save(row, claim.move(ClaimMove.SUPERSEDE, ClaimParty.SYSTEM, now), None)
        await ctx.audit.append(
            session,
            AuditEntry(
                action="claim.superseded",
                organisation_id=charger.organisation_id,
                charger_id=charger.id,
                details={"claim": row.id},
            ),
        )
        return None
    _save(row, claim.move(ClaimMove.COMPLETE, ClaimParty.SYSTEM, now), None)
    approver = row.second_approver_id or ""
    handover = await ownership.hand_over(
        session,
        ctx,
        charger,
        to_user_id=row.claimant_id,
        actor=Actor(user_id=approver, email=await _email(session, approver) or ""),
        reason=HandOverReason.CLAIM,
    )
    await notifications.notify(
        session,
        row.claimant_id,
        CLAIM_DECIDED,
        f"You own charger {charger.serial} now",
        f"Support approved your claim: you are the owner of charger {charger.serial}. The "
        "app shows its Bluetooth PIN.",
        now=now,
        known=(charger.serial,),
    )
    if handover.previous_owner_id is not None:
        await notifications.notify(
            session,
            handover.previous_owner_id,
            CLAIM_DECIDED,
            f"Charger {charger.serial} has a new owner",
            f"Support approved a claim of charger {charger.serial}; your access to it ended.",
            now=now,
            known=(charger.serial,),
        )
    return handover


async def complete_due(ctx: Context) -> int:
    """Hand over every approved claim whose objection window is over; returns how many
    claims it settled (completed or superseded). Run periodically by the server."""
    now = ctx.clock.now()
    async with ctx.db.read() as session:
        ids = (
            await session.scalars(
                select(OwnershipClaim.id).where(
                    OwnershipClaim.state == ClaimState.APPROVED.value,
                    or_(
                        OwnershipClaim.objection_until.is_(None),
                        OwnershipClaim.objection_until <= now,
                    ),
                )
            )
        ).all()
    settled = 0
    for claim_id in ids:
        async with ctx.db.transaction() as session:
            row = await _locked(session, claim_id)
            claim = _lifecycle(row)
            if not claim.due(now):
                continue  # objected or decided meanwhile
            charger = await session.get_one(Charger, row.charger_id)
            handover = await _complete_if_due(session, ctx, row, claim, charger)
        settled += 1
        if handover is not None:
            ownership.access_changed(ctx, charger)
    return settled
