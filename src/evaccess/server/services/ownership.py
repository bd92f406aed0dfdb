"""Who owns a charger: an ownership starts at registration (or a handover) and everything
derived from it (grants, invitations, phone credentials) ends with it.

``hand_over`` is the one way ownership changes hands (transfer acceptance, release, and
later an approved support claim): one call, in the caller's one transaction."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from evaccess.domain.access import GrantKind
from evaccess.domain.claim import OPEN as OPEN_CLAIMS
from evaccess.domain.claim import ClaimState
from evaccess.domain.ownership_transfer import TransferState
from evaccess.server.audit import AuditEntry
from evaccess.server.context import Context
from evaccess.server.db.models import (
    Charger,
    Grant,
    Invitation,
    Ownership,
    OwnershipClaim,
    OwnershipTransfer,
    PhoneCredential,
)
from evaccess.server.services import bluetooth_pins, local_lists, outbox
from evaccess.server.services.bluetooth_pins import NewOwnerPin
from evaccess.server.services.relations import Actor, current_ownership


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


current = current_ownership


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


class HandOverReason(StrEnum):
    TRANSFER = "transfer"
    RELEASE = "release"
    CLAIM = "claim"


UNCHANGEABLE_PIN_WARNING = (
    "this charger's Bluetooth PIN cannot be changed; people who used the charger before "
    "you may know it"
)


@dataclass(frozen=True, kw_only=True, slots=True)
class HandOver:
    """What a handover did: whose ownership ended, whose began, what it revoked."""

    previous_owner_id: str | None
    new_owner_id: str | None
    ownership: Ownership | None
    revoked: dict[str, int] = field(default_factory=dict)
    bluetooth_pin: NewOwnerPin = NewOwnerPin.NONE
    warning: str | None = None
    """Shown to the new owner (and recorded in the audit log) when the PIN cannot change."""


async def hand_over(
    session: AsyncSession,
    ctx: Context,
    charger: Charger,
    *,
    to_user_id: str | None,
    actor: Actor,
    reason: HandOverReason,
) -> HandOver:
    """Give ``charger`` to ``to_user_id`` (``None``: nobody, it becomes claimable), in the
    caller's transaction, all or nothing:

    - the current ownership ends, and with it every grant, open invitation, open transfer,
      open claim and phone credential on the charger (those of no ownership too);
    - the charger's local authorization list is replaced in full (keypad PINs of the old
      owner's people stop working offline too);
    - the charger is told to revoke every phone credential (OCPP RevokeCredentials);
    - a changeable Bluetooth PIN is rotated (pushed, active on the charger's confirmation);
      an unchangeable one yields ``warning``, recorded in the audit log;
    - the new ownership (and its owner grant) begins.

    The caller commits, then calls ``access_changed``."""
    now = ctx.clock.now()
    previous = await current(session, charger.id)
    revoked = await end(session, ctx, previous) if previous is not None else {}
    # Anything left on the charger outside that ownership (made while it had no owner).
    leftovers = (
        ("grants", update(Grant).where(Grant.charger_id == charger.id, Grant.revoked_at.is_(None))),
        (
            "invitations",
            update(Invitation).where(
                Invitation.charger_id == charger.id,
                Invitation.revoked_at.is_(None),
                Invitation.accepted_at.is_(None),
            ),
        ),
        (
            "phones",
            update(PhoneCredential).where(
                PhoneCredential.charger_id == charger.id, PhoneCredential.revoked_at.is_(None)
            ),
        ),
    )
    for name, statement in leftovers:
        result = await session.execute(statement.values(revoked_at=now))
        revoked[name] = revoked.get(name, 0) + int(result.rowcount)  # type: ignore[attr-defined]
    result = await session.execute(
        update(OwnershipTransfer)
        .where(
            OwnershipTransfer.charger_id == charger.id,
            OwnershipTransfer.state == TransferState.OPEN.value,
        )
        .values(state=TransferState.CANCELLED.value, decided_at=now, decided_by=actor.user_id)
    )
    revoked["transfers"] = int(result.rowcount)  # type: ignore[attr-defined]
    result = await session.execute(
        update(OwnershipClaim)
        .where(
            OwnershipClaim.charger_id == charger.id,
            OwnershipClaim.state.in_([state.value for state in OPEN_CLAIMS]),
        )
        .values(state=ClaimState.SUPERSEDED.value, decided_at=now)
    )
    revoked["claims"] = int(result.rowcount)  # type: ignore[attr-defined]
    new = await start(session, ctx, charger, to_user_id, actor) if to_user_id else None
    await session.flush()
    if charger.has_keypad:
        await local_lists.sync(session, ctx, charger, full=True)
    await outbox.queue(
        session, ctx, charger.id, outbox.CommandKind.REVOKE_CREDENTIALS, phone_id=None
    )
    pin = await bluetooth_pins.rotate_for_new_owner(session, ctx, charger)
    warning = UNCHANGEABLE_PIN_WARNING if pin is NewOwnerPin.UNCHANGEABLE and new else None
    await ctx.audit.append(
        session,
        actor.audit_entry(
            "ownership.handed_over",
            charger=charger,
            subject_id=to_user_id,
            details={
                "reason": reason.value,
                "previous_owner": previous.owner_id if previous else None,
                "bluetooth_pin": pin.value,
                **{f"revoked_{name}": count for name, count in sorted(revoked.items())},
            },
        ),
    )
    if warning is not None:
        await ctx.audit.append(
            session,
            AuditEntry(
                action="ownership.unchangeable_pin_warned",
                actor_id=actor.user_id,
                organisation_id=charger.organisation_id,
                charger_id=charger.id,
                subject_id=to_user_id,
                request_id=actor.request_id,
                details={"rule": bluetooth_pins.policy_of(charger).rule},
            ),
        )
    return HandOver(
        previous_owner_id=previous.owner_id if previous else None,
        new_owner_id=to_user_id,
        ownership=new,
        revoked=revoked,
        bluetooth_pin=pin,
        warning=warning,
    )
