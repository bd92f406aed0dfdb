"""The Bluetooth PIN lifecycle on the server: each use case loads the charger's PIN row as
``domain.bluetooth_pin.PinSlots`` (the PINs sealed), applies a transition and saves it.
Which chargers need a PIN, and who may see or change it, is the policy table's decision
(``domain.policy``). Reveal writes its audit record before returning the PIN and returns
nothing if that write fails.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from sqlalchemy import ColumnElement, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession

from evaccess.domain.access import CHARGER_PERMISSIONS, Basis, ChargerAction
from evaccess.domain.bluetooth_pin import PinSlots, PinStatus
from evaccess.domain.errors import (
    AuditUnavailable,
    EvAccessError,
    InvalidInput,
    NotFound,
    PermissionDenied,
    PinRejected,
)
from evaccess.domain.pins import generate_bluetooth_pin, validate_bluetooth_pin
from evaccess.domain.policy import ChargerFacts, PinPolicy, PinRequirement, pin_policy
from evaccess.protocol.ocpp_components import SecurityEventType
from evaccess.server.audit import AuditEntry
from evaccess.server.context import Context
from evaccess.server.db.models import (
    AuditRecord,
    BluetoothPin,
    Charger,
    OutboxCommand,
    Ownership,
    PhoneCredential,
    User,
)
from evaccess.server.services import notifications, outbox
from evaccess.server.services.relations import Actor, charger_for, current_ownership
from evaccess.server.vault import Sealed

REVEALED = "bluetooth_pin.revealed"


@dataclass(frozen=True, kw_only=True, slots=True)
class PinState:
    requirement: PinRequirement
    changeable: bool
    enabled: bool
    required: bool
    status: PinStatus
    can_reveal: bool
    can_enable: bool
    can_change: bool
    rule: str
    pending_since: datetime | None
    charger_online: bool
    """Connected now: a pending PIN goes out at once (else when the charger next connects)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class RevealedPin:
    pin: str
    status: PinStatus
    basis: Basis


@dataclass(frozen=True, kw_only=True, slots=True)
class Phone:
    """A phone holding a Bluetooth credential of the charger, as the server knows it (its
    id, never a secret)."""

    phone_id: str
    since: datetime
    email: str | None
    """Whose phone, where the server knows it (a charger's report names the phone only)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class RevealEvent:
    at: datetime
    actor_email: str | None
    basis: str | None
    request_id: str | None


def facts_of(charger: Charger) -> ChargerFacts:
    """What the PIN policy table reads about a charger."""
    return ChargerFacts(
        vendor=charger.vendor,
        model=charger.model,
        firmware=charger.firmware,
        production_date=charger.production_date,
        bluetooth=charger.has_bluetooth,
    )


def policy_of(charger: Charger) -> PinPolicy:
    return pin_policy(facts_of(charger))


def _sealed(ciphertext: bytes | None, key_version: int | None) -> Sealed | None:
    if ciphertext is None or key_version is None:
        return None
    return Sealed(ciphertext=ciphertext, key_version=key_version)


def _slots(row: BluetoothPin | None) -> PinSlots[Sealed]:
    if row is None:
        return PinSlots()
    return PinSlots(
        enabled=row.enabled,
        active=_sealed(row.active_ciphertext, row.active_key_version),
        pending=_sealed(row.pending_ciphertext, row.pending_key_version),
        pending_since=row.pending_since,
    )


def _save(row: BluetoothPin, slots: PinSlots[Sealed], now: datetime) -> None:
    """Write ``slots`` to the row if they differ from what it holds."""
    if slots == _slots(row):
        return
    row.enabled = slots.enabled
    row.active_ciphertext = slots.active.ciphertext if slots.active else None
    row.active_key_version = slots.active.key_version if slots.active else None
    row.pending_ciphertext = slots.pending.ciphertext if slots.pending else None
    row.pending_key_version = slots.pending.key_version if slots.pending else None
    row.pending_since = slots.pending_since
    row.updated_at = now


async def _row(session: AsyncSession, ctx: Context, charger: Charger) -> BluetoothPin:
    row = await session.get(BluetoothPin, charger.id)
    if row is None:
        row = BluetoothPin(charger_id=charger.id, enabled=False, updated_at=ctx.clock.now())
        session.add(row)
    return row


def _new_pin(ctx: Context, charger: Charger) -> Sealed:
    """A generated PIN, sealed."""
    return ctx.vault.seal(
        charger.id, generate_bluetooth_pin(ctx.rng, avoid=(charger.serial, charger.model))
    )


def _in_line(
    ctx: Context, charger: Charger, slots: PinSlots[Sealed], policy: PinPolicy
) -> PinSlots[Sealed]:
    """``slots`` with a generated PIN pending where the policy requires one and none exists."""
    return (
        slots.with_pending(_new_pin(ctx, charger), ctx.clock.now())
        if slots.needs_pin(policy)
        else slots
    )


async def apply_policy(
    session: AsyncSession, ctx: Context, charger: Charger, *, factory_pin: str | None = None
) -> bool:
    """Bring the charger's PIN in line with its policy (at registration, and after a
    BootNotification reports new firmware). Queues a push; returns whether it did."""
    policy = policy_of(charger)
    if policy.requirement is PinRequirement.UNSUPPORTED:
        return False
    row = await _row(session, ctx, charger)
    slots = _slots(row)
    if factory_pin is not None:
        slots = slots.with_factory_pin(
            ctx.vault.seal(charger.id, validate_factory_pin(factory_pin))
        )
    else:
        slots = _in_line(ctx, charger, slots, policy)
    _save(row, slots, ctx.clock.now())
    await outbox.queue(session, ctx, charger.id, outbox.CommandKind.SET_BLUETOOTH_PIN)
    return True


def registration_rows(ctx: Context, charger: Charger) -> list[BluetoothPin | OutboxCommand]:
    """What ``apply_policy`` adds for a charger registered in this transaction (it has no
    PIN row and no command yet), built without a query so that bulk registration can add
    the rows of many chargers in one flush."""
    policy = policy_of(charger)
    if policy.requirement is PinRequirement.UNSUPPORTED:
        return []
    row = BluetoothPin(charger_id=charger.id, enabled=False, updated_at=ctx.clock.now())
    _save(row, _in_line(ctx, charger, PinSlots(), policy), ctx.clock.now())
    return [row, outbox.new_command(ctx, charger.id, outbox.CommandKind.SET_BLUETOOTH_PIN)]


def validate_factory_pin(pin: str) -> str:
    """A PIN printed by the maker: 6 digits, not 000000 (it may be any other value)."""
    if len(pin) != 6 or not pin.isascii() or not pin.isdigit() or pin == "000000":
        raise PinRejected("a factory Bluetooth PIN has 6 digits and is not 000000")
    return pin


def _may_reveal(bases: set[Basis], policy: PinPolicy) -> set[Basis]:
    return (
        bases
        & set(policy.visible_to)
        & set(CHARGER_PERMISSIONS[ChargerAction.REVEAL_BLUETOOTH_PIN])
    )


async def state(ctx: Context, actor: Actor, charger_id: str) -> PinState:
    async with ctx.db.read() as session:
        access = await charger_for(session, actor, charger_id, ChargerAction.VIEW, ctx.clock)
        charger = access.charger
        slots = _slots(await session.get(BluetoothPin, charger.id))
    policy = policy_of(charger)
    status, required = slots.status, slots.required(policy)
    return PinState(
        requirement=policy.requirement,
        changeable=policy.changeable,
        enabled=required,
        required=required,
        status=status,
        can_reveal=status is not PinStatus.NONE and bool(_may_reveal(access.bases, policy)),
        can_enable=policy.requirement is PinRequirement.OPTIONAL
        and not required
        and bool(access.bases & CHARGER_PERMISSIONS[ChargerAction.ENABLE_BLUETOOTH_PIN]),
        can_change=policy.changeable
        and status is not PinStatus.NONE
        and bool(access.bases & CHARGER_PERMISSIONS[ChargerAction.CHANGE_BLUETOOTH_PIN]),
        rule=policy.rule,
        pending_since=slots.pending_since if slots.pending else None,
        charger_online=await ctx.notifier.reaches(charger.serial, recorded=charger.online),
    )


async def enable(ctx: Context, actor: Actor, charger_id: str) -> PinState:
    """The owner turns an optional PIN on: a PIN is generated and pushed; the charger drops
    its Bluetooth links and new connections need the PIN."""
    async with ctx.db.transaction() as session:
        access = await charger_for(
            session, actor, charger_id, ChargerAction.ENABLE_BLUETOOTH_PIN, ctx.clock
        )
        charger = access.charger
        policy = policy_of(charger)
        row = await _row(session, ctx, charger)
        slots = _slots(row)
        enabled = slots.enable(policy)
        if enabled != slots:
            _save(row, enabled, ctx.clock.now())
            await apply_policy(session, ctx, charger)
            await ctx.audit.append(
                session,
                actor.audit_entry("bluetooth_pin.enabled", charger=charger, basis=access.basis),
            )
    ctx.notifier.poke(charger.serial)
    return await state(ctx, actor, charger_id)


async def change(ctx: Context, actor: Actor, charger_id: str, new_pin: str | None) -> PinState:
    """Start a PIN change (a chosen PIN, or a generated one); it becomes active when the
    charger accepts it."""
    if new_pin is not None:
        validate_bluetooth_pin(new_pin)
    async with ctx.db.transaction() as session:
        access = await charger_for(
            session, actor, charger_id, ChargerAction.CHANGE_BLUETOOTH_PIN, ctx.clock
        )
        charger = access.charger
        row = await _row(session, ctx, charger)
        slots = _slots(row).change(
            policy_of(charger),
            lambda: ctx.vault.seal(charger.id, new_pin) if new_pin else _new_pin(ctx, charger),
            ctx.clock.now(),
        )
        _save(row, slots, ctx.clock.now())
        await outbox.queue(session, ctx, charger.id, outbox.CommandKind.SET_BLUETOOTH_PIN)
        await ctx.audit.append(
            session,
            actor.audit_entry(
                "bluetooth_pin.change_requested",
                charger=charger,
                basis=access.basis,
                details={"chosen": new_pin is not None},
            ),
        )
    ctx.notifier.poke(charger.serial)
    return await state(ctx, actor, charger_id)


class NewOwnerPin(StrEnum):
    """What a change of ownership did to the charger's Bluetooth PIN."""

    ROTATED = "rotated"
    """A new PIN is pending: pushed over OCPP, active once the charger confirms it."""
    UNCHANGEABLE = "unchangeable"
    """The policy forbids changing it (Zaptec): previous users may know it."""
    NONE = "none"
    """The charger has no PIN."""


async def rotate_for_new_owner(
    session: AsyncSession, ctx: Context, charger: Charger
) -> NewOwnerPin:
    """In the caller's transaction: start the usual change (generated PIN pending, pushed,
    active on the charger's confirmation) where the policy allows one."""
    policy = policy_of(charger)
    row = await session.get(BluetoothPin, charger.id)
    slots = _slots(row)
    if row is None or slots.status is PinStatus.NONE:
        return NewOwnerPin.NONE
    if not policy.changeable:
        return NewOwnerPin.UNCHANGEABLE
    now = ctx.clock.now()
    _save(row, slots.change(policy, lambda: _new_pin(ctx, charger), now), now)
    await outbox.queue(session, ctx, charger.id, outbox.CommandKind.SET_BLUETOOTH_PIN)
    return NewOwnerPin.ROTATED


async def _tell_owner_of_reveal(
    session: AsyncSession, ctx: Context, actor: Actor, charger: Charger
) -> None:
    """The owner is told when someone else sees the PIN (who and which charger; never the
    PIN)."""
    await notifications.notify_owner(
        session,
        charger,
        notifications.Kind.PIN_REVEALED,
        f"The Bluetooth PIN of charger {charger.serial} was viewed",
        f"{actor.email} viewed the Bluetooth PIN of your charger {charger.serial}. "
        "The app's reveal history lists every view.",
        now=ctx.clock.now(),
        unless=actor.user_id,
    )


async def reveal(ctx: Context, actor: Actor, charger_id: str) -> RevealedPin:
    """Decrypt the PIN the charger enforces (or the pending one if it has none yet), write
    the audit record, commit, and only then return it."""
    try:
        async with ctx.db.transaction() as session:
            access = await charger_for(session, actor, charger_id, ChargerAction.VIEW, ctx.clock)
            charger = access.charger
            policy = policy_of(charger)
            if policy.requirement is PinRequirement.UNSUPPORTED:
                raise NotFound(
                    f"this charger has no Bluetooth PIN ({policy.rule})", code="no_bluetooth_pin"
                )
            allowed = _may_reveal(access.bases, policy)
            if not allowed:
                raise PermissionDenied("you may not see this charger's Bluetooth PIN")
            basis = min(allowed, key=list(Basis).index)
            slots = _slots(await session.get(BluetoothPin, charger.id))
            if slots.enforced is None:
                raise NotFound("this charger has no Bluetooth PIN", code="no_bluetooth_pin")
            pin = ctx.vault.open(charger.id, slots.enforced)
            try:
                await ctx.audit.append(
                    session,
                    actor.audit_entry(REVEALED, charger=charger, basis=basis),
                )
                if Basis.OWNER not in access.bases:  # (the owner grant is the ownership's)
                    await _tell_owner_of_reveal(session, ctx, actor, charger)
            except EvAccessError:
                raise
            except Exception as exc:
                raise AuditUnavailable(
                    "the reveal could not be audited; nothing was revealed"
                ) from exc
    except SQLAlchemyError as exc:
        raise AuditUnavailable("the reveal could not be audited; nothing was revealed") from exc
    return RevealedPin(pin=pin, status=slots.status, basis=basis)


async def reveal_history(ctx: Context, actor: Actor, charger_id: str) -> list[RevealEvent]:
    async with ctx.db.read() as session:
        charger = (
            await charger_for(
                session, actor, charger_id, ChargerAction.VIEW_REVEAL_HISTORY, ctx.clock
            )
        ).charger
        query = (
            select(AuditRecord, User.email)
            .outerjoin(User, User.id == AuditRecord.actor_id)
            .where(AuditRecord.charger_id == charger.id, AuditRecord.action == REVEALED)
            .order_by(AuditRecord.seq.desc())
        )
        # Only the reveals of the current ownership: the owner before sees none of the new
        # owner's, and the new owner none of the previous one's.
        since = await session.scalar(
            select(Ownership.started_at).where(
                Ownership.charger_id == charger.id, Ownership.ended_at.is_(None)
            )
        )
        if since is not None:
            query = query.where(AuditRecord.at >= since)
        rows = (await session.execute(query)).all()
    return [
        RevealEvent(at=r.at, actor_email=email, basis=r.basis, request_id=r.request_id)
        for r, email in rows
    ]


# --- called through the OCPP backend -------------------------------------------------


async def push_settings(
    session: AsyncSession, ctx: Context, charger: Charger
) -> tuple[str | None, bool, bool]:
    """(PIN to push, required, changeable) for a SetBluetoothPin command."""
    policy = policy_of(charger)
    slots = _slots(await session.get(BluetoothPin, charger.id))
    pin = None if slots.to_push is None else ctx.vault.open(charger.id, slots.to_push)
    return pin, slots.required(policy), policy.changeable


async def confirm_push(
    session: AsyncSession, ctx: Context, charger: Charger, command: OutboxCommand, accepted: bool
) -> None:
    """The charger answered a SetBluetoothPin: on Accepted the pending PIN becomes active.
    A command superseded by a newer change confirms nothing."""
    now = ctx.clock.now()
    superseded = command.completed_at is not None
    command.completed_at, command.accepted = command.completed_at or now, accepted
    row = await session.get(BluetoothPin, charger.id)
    if superseded or not accepted or row is None or _slots(row).pending is None:
        return
    _save(row, _slots(row).confirmed(), now)
    await ctx.audit.append(
        session,
        AuditEntry(
            action="bluetooth_pin.activated",
            organisation_id=charger.organisation_id,
            charger_id=charger.id,
            details={"command": command.id},
        ),
    )


PHONE_ID_PREFIX = "phone_id="


def _reported_phone(tech_info: str | None) -> str | None:
    """The phone id of a charger's credential event (``phone_id=<hex>``), if well formed."""
    if not tech_info or not tech_info.startswith(PHONE_ID_PREFIX):
        return None
    phone_id = tech_info.removeprefix(PHONE_ID_PREFIX)
    ok = 0 < len(phone_id) <= 64 and all(c in "0123456789abcdef" for c in phone_id)
    return phone_id if ok else None


async def credential_reported(
    session: AsyncSession, ctx: Context, charger: Charger, event_type: str, tech_info: str | None
) -> None:
    """A charger's security event about a phone credential, in the caller's transaction:
    one issued (a phone proved the PIN) is recorded under the current ownership, so that the
    owner sees the phone and a transfer ends it; one revoked on the charger is closed."""
    if event_type == SecurityEventType.BLUETOOTH_CREDENTIAL_ISSUED:
        phone_id = _reported_phone(tech_info)
        if phone_id is None:
            return
        known = await session.scalar(
            select(PhoneCredential.id).where(*_open_phones(charger, phone_id))
        )
        if known is not None:
            return
        owned = await current_ownership(session, charger.id)
        session.add(
            PhoneCredential(
                charger_id=charger.id,
                ownership_id=owned.id if owned is not None else None,
                phone_id=phone_id,
                created_at=ctx.clock.now(),
            )
        )
    elif event_type == SecurityEventType.BLUETOOTH_CREDENTIAL_REVOKED:
        phone_id = _reported_phone(tech_info)
        if phone_id is not None or (tech_info or "").startswith("count="):
            await _mark_revoked(session, ctx, charger, phone_id)


async def changed_on_charger(
    session: AsyncSession, ctx: Context, charger: Charger, new_pin: str
) -> bool:
    """A phone changed the PIN on the charger itself; refused where the policy forbids it."""
    policy = policy_of(charger)
    if not policy.changeable:
        return False
    try:
        validate_bluetooth_pin(new_pin)
    except EvAccessError:
        return False
    row = await _row(session, ctx, charger)
    sealed = ctx.vault.seal(charger.id, new_pin)
    _save(row, _slots(row).changed_on_charger(sealed), ctx.clock.now())
    await ctx.audit.append(
        session,
        AuditEntry(
            action="bluetooth_pin.changed_on_charger",
            organisation_id=charger.organisation_id,
            charger_id=charger.id,
        ),
    )
    return True


async def phones(ctx: Context, actor: Actor, charger_id: str) -> list[Phone]:
    """The phones holding a credential of the charger (not revoked), oldest first: for those
    who may make the charger forget them (``revoke_phones``)."""
    async with ctx.db.read() as session:
        charger = (
            await charger_for(session, actor, charger_id, ChargerAction.MANAGE_PHONES, ctx.clock)
        ).charger
        rows = (
            await session.execute(
                select(PhoneCredential, User.email)
                .outerjoin(User, User.id == PhoneCredential.user_id)
                .where(
                    PhoneCredential.charger_id == charger.id,
                    PhoneCredential.revoked_at.is_(None),
                )
                .order_by(PhoneCredential.created_at, PhoneCredential.id)
            )
        ).all()
    return [Phone(phone_id=p.phone_id, since=p.created_at, email=email) for p, email in rows]


def _open_phones(charger: Charger, phone_id: str | None) -> list[ColumnElement[bool]]:
    where = [PhoneCredential.charger_id == charger.id, PhoneCredential.revoked_at.is_(None)]
    if phone_id is not None:
        where.append(PhoneCredential.phone_id == phone_id)
    return where


async def _mark_revoked(
    session: AsyncSession, ctx: Context, charger: Charger, phone_id: str | None
) -> None:
    await session.execute(
        update(PhoneCredential)
        .where(*_open_phones(charger, phone_id))
        .values(revoked_at=ctx.clock.now())
    )


async def revoke_phones(
    ctx: Context, actor: Actor, charger_id: str, phone_id: str | None
) -> outbox.Delivery:
    """The owner makes the charger forget one phone's credential, or every phone's (OCPP
    RevokeCredentials); a phone that wants back in proves the PIN again. The server stops
    listing the phone at once (the charger forgets it when the command reaches it)."""
    if phone_id is not None and not (0 < len(phone_id) <= 64 and phone_id.isprintable()):
        raise InvalidInput("a phone id has 1 to 64 printable characters")
    async with ctx.db.transaction() as session:
        access = await charger_for(
            session, actor, charger_id, ChargerAction.MANAGE_PHONES, ctx.clock
        )
        charger = access.charger
        await _mark_revoked(session, ctx, charger, phone_id)
        command = await outbox.queue(
            session, ctx, charger.id, outbox.CommandKind.REVOKE_CREDENTIALS, phone_id=phone_id
        )
        await ctx.audit.append(
            session,
            actor.audit_entry(
                "bluetooth.phones_revoked",
                charger=charger,
                basis=access.basis,
                details={"phone": phone_id or "*"},
            ),
        )
    return await outbox.send(ctx, charger, command)


async def reenable_pairing(ctx: Context, actor: Actor, charger_id: str) -> outbox.Delivery:
    """After 100 failed PIN exchanges in a row a charger accepts no more PIN pairings until
    its owner re-enables them from here (OCPP PinPairingEnabled)."""
    async with ctx.db.transaction() as session:
        access = await charger_for(
            session, actor, charger_id, ChargerAction.MANAGE_PHONES, ctx.clock
        )
        charger = access.charger
        command = await outbox.queue(
            session, ctx, charger.id, outbox.CommandKind.REENABLE_PIN_PAIRING
        )
        await ctx.audit.append(
            session,
            actor.audit_entry("bluetooth.pairing_reenabled", charger=charger, basis=access.basis),
        )
    return await outbox.send(ctx, charger, command)
