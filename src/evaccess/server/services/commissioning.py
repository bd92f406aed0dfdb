"""Commissioning by QR sticker.

A charger gets a one-time commissioning code when it is registered (or when the
manufacturer re-issues one while the charger has no owner); only HMAC(pepper, charger ‖
code) is stored, so the code exists in clear only on the sticker. Scanning the sticker with
a logged-in account makes that account the owner, voids the code and reveals the Bluetooth
PIN (audited like any reveal). The QR alone never reveals anything: the scan needs an
account, works only while the charger has no owner, and failed scans lock the account and
the charger for 24 h after 5 (``COMMISSIONING_RULES``), each failure audited.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from evaccess.domain.access import OrgAction, Role, StaffRole
from evaccess.domain.errors import (
    AuditUnavailable,
    Conflict,
    EvAccessError,
    LockedOut,
    NotFound,
    PermissionDenied,
    PolicyViolation,
)
from evaccess.domain.lockout import wait_text
from evaccess.domain.policy import PinRequirement
from evaccess.protocol import sticker
from evaccess.server.context import Context
from evaccess.server.db.models import BluetoothPin, Charger, CommissioningCode, Ownership
from evaccess.server.services import bluetooth_pins, notifications, ownership
from evaccess.server.services.bluetooth_pins import RevealedPin
from evaccess.server.services.relations import Actor, org_role, require_org_action

ISSUED = "commissioning_code.issued"
COMMISSIONED = "charger.commissioned"
SCAN_FAILED = "commissioning.scan_failed"
LABEL_PRINTED = "bluetooth_pin.revealed"
"""The packaging label shows the PIN: it is audited as the reveal it is."""


class ScanRefused(PermissionDenied):
    """A scanned sticker that does not commission (forged, used, expired)."""

    code = "commissioning_refused"


@dataclass(frozen=True, kw_only=True, slots=True)
class IssuedSticker:
    serial: str
    payload: str
    """``EVA1:<serial>:<code>``: goes on the sticker, nowhere else."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Commissioned:
    charger_id: str
    serial: str
    pin: RevealedPin | None
    """The Bluetooth PIN, revealed at once (``None``: the charger has none)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class PackagingLabel:
    serial: str
    payload: str
    pin: str


def _digest(ctx: Context, charger_id: str, code: str) -> bytes:
    message = f"evaccess/commissioning-code/v1|{charger_id}|{code}".encode()
    return hmac.new(ctx.keys.load().keypad_pepper, message, hashlib.sha256).digest()


def new_code(ctx: Context, charger: Charger) -> tuple[CommissioningCode, IssuedSticker]:
    """A fresh code for ``charger``: the row to store (its digest) and the sticker payload."""
    code = sticker.code_from_bytes(ctx.rng.token_bytes(sticker.CODE_BYTES))
    now = ctx.clock.now()
    row = CommissioningCode(
        charger_id=charger.id,
        digest=_digest(ctx, charger.id, code),
        issued_at=now,
        expires_at=now + timedelta(seconds=ctx.commissioning_code_ttl_s),
    )
    payload = sticker.StickerPayload(serial=charger.serial, code=code).format()
    return row, IssuedSticker(serial=charger.serial, payload=payload)


async def _store(session: AsyncSession, row: CommissioningCode) -> None:
    existing = await session.get(CommissioningCode, row.charger_id)
    if existing is None:
        session.add(row)
        return
    existing.digest, existing.issued_at, existing.expires_at = (
        row.digest,
        row.issued_at,
        row.expires_at,
    )
    existing.used_at = existing.used_by = None


async def on_registered(session: AsyncSession, ctx: Context, charger: Charger) -> IssuedSticker:
    """Registration's hook: the new charger's first code (shown once, like its password)."""
    row, issued = new_code(ctx, charger)
    await _store(session, row)
    return issued


async def _charger_by_serial(session: AsyncSession, serial: str) -> Charger:
    charger = await session.scalar(select(Charger).where(Charger.serial == serial))
    if charger is None:
        raise NotFound(f"no charger {serial}")
    return charger


async def _manufacturer(session: AsyncSession, actor: Actor, charger: Charger) -> None:
    await require_org_action(session, actor, charger.organisation_id, OrgAction.REGISTER_CHARGER)


async def issue(ctx: Context, actor: Actor, serial: str) -> IssuedSticker:
    """A new code for a charger that has no owner (the previous one stops working), for the
    organisation that registers its chargers (the manufacturer)."""
    async with ctx.db.transaction() as session:
        charger = await _charger_by_serial(session, serial)
        await _manufacturer(session, actor, charger)
        if await ownership.current(session, charger.id) is not None:
            raise Conflict(
                f"charger {serial} has an owner; a commissioning code is issued only before",
                code="has_owner",
            )
        row, issued = new_code(ctx, charger)
        await _store(session, row)
        await ctx.audit.append(session, actor.audit_entry(ISSUED, charger=charger))
    return issued


async def packaging_label(ctx: Context, actor: Actor, serial: str) -> PackagingLabel:
    """The packaging label's content (serial, a new sticker code, the Bluetooth PIN): only
    for the manufacturer (an account with the ``manufacturer`` staff role that is also a
    super-admin of the charger's organisation), only while the charger has never had an
    owner, only where the vendor prints the PIN (``prints_pin``). Audited as a reveal,
    committed before the PIN is returned."""
    try:
        async with ctx.db.transaction() as session:
            charger = await _charger_by_serial(session, serial)
            role = await org_role(session, actor.user_id, charger.organisation_id)
            if role is not Role.SUPER_ADMIN or actor.staff_role is not StaffRole.MANUFACTURER:
                raise PermissionDenied(
                    "packaging labels are printed by the manufacturer: a super-admin of the "
                    "charger's organisation with the manufacturer staff role"
                )
            policy = bluetooth_pins.policy_of(charger)
            if not policy.prints_pin:
                raise PolicyViolation(
                    f"this vendor does not print the Bluetooth PIN on packaging ({policy.rule})",
                    code="pin_not_printed",
                )
            owned = await session.scalar(
                select(func.count())
                .select_from(Ownership)
                .where(Ownership.charger_id == charger.id)
            )
            if owned:
                raise Conflict(
                    f"charger {serial} has had an owner; its label is printed at manufacturing "
                    "only",
                    code="has_had_owner",
                )
            slots = bluetooth_pins._slots(await session.get(BluetoothPin, charger.id))
            sealed = slots.enforced or slots.pending
            if policy.requirement is PinRequirement.UNSUPPORTED or sealed is None:
                raise NotFound("this charger has no Bluetooth PIN", code="no_bluetooth_pin")
            pin = ctx.vault.open(charger.id, sealed)
            row, issued = new_code(ctx, charger)
            await _store(session, row)
            await ctx.audit.append(session, actor.audit_entry(ISSUED, charger=charger))
            await ctx.audit.append(
                session,
                actor.audit_entry(
                    LABEL_PRINTED,
                    charger=charger,
                    basis="manufacturer",
                    details={"for": "packaging_label"},
                ),
            )
    except EvAccessError:
        raise
    except Exception as exc:
        raise AuditUnavailable("the label could not be audited; nothing was revealed") from exc
    return PackagingLabel(serial=charger.serial, payload=issued.payload, pin=pin)


_USED = (
    "used",
    "commissioning_code_used",
    "this sticker has been used: the charger has an owner (ask them to transfer it)",
)


def _throttle_keys(actor: Actor, serial: str) -> tuple[str, str]:
    return f"account:{actor.user_id}", f"charger:{serial}"


async def _check_throttle(ctx: Context, actor: Actor, serial: str) -> None:
    for key in _throttle_keys(actor, serial):
        try:
            await ctx.commissioning_throttle.check(key)
        except LockedOut as exc:
            what = "this account" if key.startswith("account:") else "this charger"
            raise LockedOut(
                f"too many failed sticker scans for {what}; try again in "
                f"{wait_text(exc.retry_after)}",
                retry_after=exc.retry_after,
                code="commissioning_throttled",
            ) from None


async def _failed(
    ctx: Context, actor: Actor, serial: str, charger: Charger | None, reason: str
) -> None:
    """Count one failed scan against the account and the charger; audit it; tell the
    account when it (or the charger) is now locked."""
    locked = False
    for key in _throttle_keys(actor, serial):
        if await ctx.commissioning_throttle.failure(key) is not None:
            locked = True
    async with ctx.db.transaction() as session:
        await ctx.audit.append(
            session,
            actor.audit_entry(
                SCAN_FAILED,
                charger=charger,
                details={"reason": reason, "serial": serial, "locked": locked},
            ),
        )
        if locked:
            await notifications.notify(
                session,
                actor.user_id,
                notifications.Kind.LOCKOUT,
                "Sticker scans paused for 24 hours",
                "Five sticker scans from your account failed in a row, so scanning is paused "
                "for 24 hours. If this was not you, change your password.",
                now=ctx.clock.now(),
            )


async def scan(ctx: Context, actor: Actor, text: str) -> Commissioned:
    """Commission the charger on the sticker to ``actor`` (its owner from now on) and reveal
    its Bluetooth PIN."""
    payload = sticker.parse(text)
    await _check_throttle(ctx, actor, payload.serial)
    refusal: tuple[str, str, str] | None = None
    charger: Charger | None = None
    try:
        async with ctx.db.transaction() as session:
            charger = await session.scalar(select(Charger).where(Charger.serial == payload.serial))
            row = await session.get(CommissioningCode, charger.id) if charger else None
            if charger is None or row is None:
                refusal = (
                    "unknown",
                    "commissioning_code_invalid",
                    "this sticker's code is not valid",
                )
            elif not hmac.compare_digest(row.digest, _digest(ctx, charger.id, payload.code)):
                refusal = (
                    "forged",
                    "commissioning_code_invalid",
                    "this sticker's code is not valid",
                )
            elif row.used_at is not None or await ownership.current(session, charger.id):
                refusal = _USED
            elif row.expires_at <= ctx.clock.now():
                refusal = (
                    "expired",
                    "commissioning_code_expired",
                    "this sticker's code has expired; ask the manufacturer for a new sticker",
                )
            else:
                await ownership.start(session, ctx, charger, actor.user_id, actor)
                row.used_at, row.used_by = ctx.clock.now(), actor.user_id
                await ctx.audit.append(session, actor.audit_entry(COMMISSIONED, charger=charger))
    except IntegrityError:  # another scan of the same sticker won the race
        refusal, charger = _USED, None  # (the rolled-back row is not read again)
    if refusal is not None:
        reason, code, message = refusal
        await _failed(ctx, actor, payload.serial, charger, reason)
        raise ScanRefused(message, code=code)
    assert charger is not None
    for key in _throttle_keys(actor, payload.serial):
        await ctx.commissioning_throttle.success(key)
    ownership.access_changed(ctx, charger)
    pin: RevealedPin | None
    try:
        pin = await bluetooth_pins.reveal(ctx, actor, charger.id)
    except NotFound:
        pin = None
    return Commissioned(charger_id=charger.id, serial=charger.serial, pin=pin)
