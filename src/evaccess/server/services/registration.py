"""Registering chargers in an organisation, one or many at once, each with its OCPP
password (shown once)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from evaccess.domain.access import OrgAction
from evaccess.domain.errors import Conflict, InvalidInput, NotFound
from evaccess.domain.versions import firmware_version
from evaccess.server.context import Context
from evaccess.server.db.models import Charger, User
from evaccess.server.db.types import new_id
from evaccess.server.services import bluetooth_pins, chargers, commissioning, ownership
from evaccess.server.services.accounts import normalise_email
from evaccess.server.services.chargers import ChargerView
from evaccess.server.services.commissioning import IssuedSticker
from evaccess.server.services.ocpp_passwords import hash_ocpp_password, new_ocpp_password
from evaccess.server.services.relations import Actor, require_org_action


@dataclass(frozen=True, kw_only=True, slots=True)
class Registration:
    charger: Charger
    ocpp_password: str
    """Shown once; only its hash is stored."""
    sticker: IssuedSticker | None = None
    """The commissioning sticker's payload (shown once, like the password; only its
    digest is stored). ``None`` for chargers registered in bulk and for those registered
    with an owner: ``evaccess admin sticker`` issues one."""


@dataclass(frozen=True, kw_only=True, slots=True)
class RegisteredCharger:
    view: ChargerView
    """The new charger as ``chargers.get_charger`` shows it to the registering actor."""
    ocpp_password: str


def _firmware(firmware: str) -> str:
    """The firmware as given (trimmed), once it reads as a version: the PIN policy reads it."""
    firmware = firmware.strip()
    firmware_version(firmware)
    return firmware


def _serial(serial: str) -> str:
    serial = serial.strip()
    if not serial or len(serial) > 64 or not all(c.isalnum() or c in "-_." for c in serial):
        raise InvalidInput("a serial number has 1-64 letters, digits, '-', '_' or '.'")
    return serial


async def register(
    ctx: Context,
    actor: Actor,
    *,
    organisation_id: str,
    serial: str,
    vendor: str,
    model: str,
    firmware: str,
    production_date: date | None = None,
    bluetooth: bool = True,
    keypad: bool = False,
    owner_email: str | None = None,
    factory_pin: str | None = None,
) -> Registration:
    """Register a charger in an organisation, optionally with its owner and, for vendors
    that print a factory PIN (Zaptec), that PIN (active at once: the charger has it)."""
    serial = _serial(serial)
    firmware = _firmware(firmware)
    password = new_ocpp_password()
    now = ctx.clock.now()
    async with ctx.db.transaction() as session:
        await require_org_action(session, actor, organisation_id, OrgAction.REGISTER_CHARGER)
        charger = Charger(
            serial=serial,
            organisation_id=organisation_id,
            vendor=vendor.strip(),
            model=model.strip(),
            firmware=firmware,
            production_date=production_date,
            has_bluetooth=bluetooth,
            has_keypad=keypad,
            ocpp_password_hash=hash_ocpp_password(password),
            created_at=now,
        )
        session.add(charger)
        try:
            await session.flush()
        except IntegrityError:
            raise Conflict(
                "a charger with this serial is registered", code="serial_taken"
            ) from None
        if owner_email is not None:
            owner = await session.scalar(
                select(User).where(User.email == normalise_email(owner_email))
            )
            if owner is None:
                raise NotFound("no user with the owner's email")
            await ownership.start(session, ctx, charger, owner.id, actor)
        issued = (
            None
            if owner_email is not None
            else await commissioning.on_registered(session, ctx, charger)
        )
        await bluetooth_pins.apply_policy(session, ctx, charger, factory_pin=factory_pin)
        await ctx.audit.append(
            session,
            actor.audit_entry(
                "charger.registered",
                charger=charger,
                details={"serial": serial, "vendor": vendor, "model": model, "firmware": firmware},
            ),
        )
    ctx.notifier.poke(charger.serial)
    return Registration(charger=charger, ocpp_password=password, sticker=issued)


async def register_and_view(
    ctx: Context,
    actor: Actor,
    *,
    organisation_id: str,
    serial: str,
    vendor: str,
    model: str,
    firmware: str,
    production_date: date | None = None,
    bluetooth: bool = True,
    keypad: bool = False,
    owner_email: str | None = None,
    factory_pin: str | None = None,
) -> RegisteredCharger:
    """``register``, then the new charger as the registering actor sees it."""
    reg = await register(
        ctx, actor, organisation_id=organisation_id, serial=serial, vendor=vendor,
        model=model, firmware=firmware, production_date=production_date,
        bluetooth=bluetooth, keypad=keypad, owner_email=owner_email, factory_pin=factory_pin,
    )  # fmt: skip
    view = await chargers.get_charger(ctx, actor, reg.charger.id)
    return RegisteredCharger(view=view, ocpp_password=reg.ocpp_password)


BULK_CHUNK = 250
"""Rows flushed at a time by ``register_many`` (one transaction throughout)."""


async def register_many(
    ctx: Context,
    actor: Actor,
    *,
    organisation_id: str,
    serials: Sequence[str],
    vendor: str,
    model: str,
    firmware: str,
    production_date: date | None = None,
    bluetooth: bool = True,
    keypad: bool = False,
    keep: Callable[[Sequence[Registration]], None] | None = None,
    progress: Callable[[int], None] | None = None,
) -> list[Registration]:
    """Register many chargers of one kind in one transaction, each as ``register`` does
    (row, Bluetooth PIN per the policy, its push, a ``charger.registered`` audit record).

    A serial that is malformed, listed twice or already registered is refused by name
    before anything is written. ``keep`` receives the registrations inside the
    transaction, before it commits: the passwords are shown once, so if keeping them fails,
    nothing is registered. ``progress`` is told how many chargers are written so far."""
    cleaned = _serials(serials)
    vendor, model, firmware = vendor.strip(), model.strip(), _firmware(firmware)
    details = {"vendor": vendor, "model": model, "firmware": firmware}
    registrations: list[Registration] = []
    async with ctx.db.transaction() as session:
        await require_org_action(session, actor, organisation_id, OrgAction.REGISTER_CHARGER)
        for start in range(0, len(cleaned), BULK_CHUNK):
            chunk = cleaned[start : start + BULK_CHUNK]
            taken = await session.scalar(
                select(Charger.serial).where(Charger.serial.in_(chunk)).limit(1)
            )
            if taken is not None:
                raise Conflict(f"charger {taken} is already registered", code="serial_taken")
        now = ctx.clock.now()
        for start in range(0, len(cleaned), BULK_CHUNK):
            batch = [
                Registration(
                    charger=Charger(
                        id=new_id(),
                        serial=serial,
                        organisation_id=organisation_id,
                        vendor=vendor,
                        model=model,
                        firmware=firmware,
                        production_date=production_date,
                        has_bluetooth=bluetooth,
                        has_keypad=keypad,
                        ocpp_password_hash=hash_ocpp_password(password),
                        created_at=now,
                    ),
                    ocpp_password=password,
                )
                for serial in cleaned[start : start + BULK_CHUNK]
                for password in (new_ocpp_password(),)
            ]
            session.add_all(reg.charger for reg in batch)
            try:
                await session.flush()  # the chargers first: the other rows refer to them
            except IntegrityError:  # registered by someone else since the check above
                raise Conflict(
                    "one of these serials was registered meanwhile; nothing was registered",
                    code="serial_taken",
                ) from None
            for reg in batch:
                session.add_all(bluetooth_pins.registration_rows(ctx, reg.charger))
            await ctx.audit.append_many(
                session,
                [
                    actor.audit_entry(
                        "charger.registered",
                        charger=reg.charger,
                        details={"serial": reg.charger.serial, **details},
                    )
                    for reg in batch
                ],
            )
            registrations.extend(batch)
            if progress is not None:
                progress(len(registrations))
        if keep is not None:
            keep(registrations)
    for reg in registrations:
        ctx.notifier.poke(reg.charger.serial)
    return registrations


def _serials(serials: Sequence[str]) -> list[str]:
    """Cleaned serials, or the first bad one named."""
    cleaned: list[str] = []
    seen: set[str] = set()
    for raw in serials:
        try:
            serial = _serial(raw)
        except InvalidInput as exc:
            raise InvalidInput(f"serial {raw.strip()!r}: {exc.message}") from None
        if serial in seen:
            raise InvalidInput(f"serial {serial} is listed twice")
        seen.add(serial)
        cleaned.append(serial)
    if not cleaned:
        raise InvalidInput("no serial numbers given")
    return cleaned
