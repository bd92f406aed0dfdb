"""Chargers: registration (with the charger's OCPP password, shown once), listing,
ownership, assignment, grants and invitations."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import TypeVar

from sqlalchemy import and_, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from evaccess.domain.access import (
    Basis,
    ChargerAction,
    GrantKind,
    OrgAction,
    Role,
    allowed_bases,
)
from evaccess.domain.errors import Conflict, InvalidInput, NotFound
from evaccess.domain.policy import ChargerFacts, PinPolicy, pin_policy
from evaccess.domain.versions import firmware_version
from evaccess.server.context import Context
from evaccess.server.db.models import (
    Charger,
    ChargerSetting,
    ConnectorStatus,
    Grant,
    Invitation,
    Membership,
    Organisation,
    Ownership,
    PhoneCredential,
    SecurityEvent,
    User,
)
from evaccess.server.db.types import new_id
from evaccess.server.services import bluetooth_pins, local_lists
from evaccess.server.services.accounts import normalise_email, token_digest
from evaccess.server.services.audit import AuditEntry
from evaccess.server.services.relations import (
    Actor,
    active_grant,
    ancestors,
    charger_for,
    chargers_bases,
    require_org_action,
    subtree,
)

INVITATION_TTL = timedelta(days=14)
OCPP_PASSWORD_BYTES = 24  # 32 URL-safe characters: within OCPP's 16-40 (A00.FR.205)


def hash_ocpp_password(password: str) -> str:
    """A charger password carries 192 random bits: SHA-256 is enough and keeps 10,000
    reconnecting chargers cheap to authenticate (argon2 is for human passwords)."""
    return "sha256$" + hashlib.sha256(password.encode()).hexdigest()


def verify_ocpp_password(stored: str, password: str) -> bool:
    return hmac.compare_digest(stored, hash_ocpp_password(password))


def facts_of(charger: Charger) -> ChargerFacts:
    return ChargerFacts(
        vendor=charger.vendor,
        model=charger.model,
        firmware=charger.firmware,
        production_date=charger.production_date,
        bluetooth=charger.has_bluetooth,
    )


def policy_of(charger: Charger) -> PinPolicy:
    return pin_policy(facts_of(charger))


@dataclass(frozen=True, kw_only=True, slots=True)
class Registration:
    charger: Charger
    ocpp_password: str
    """Shown once; only its hash is stored."""


@dataclass(frozen=True, kw_only=True, slots=True)
class ChargerView:
    charger: Charger
    bases: frozenset[Basis]
    policy: PinPolicy
    connectors: tuple[ConnectorStatus, ...] = ()
    settings: tuple[ChargerSetting, ...] = ()
    """Non-secret settings the charger reported (Wi-Fi network name, current limit, ...)."""
    recent_security_events: tuple[SecurityEvent, ...] | None = None
    """The newest security events (a PIN lockout, ...), for those who may see them; else
    ``None``."""


RECENT_SECURITY_EVENTS = 5


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
    password = secrets.token_urlsafe(OCPP_PASSWORD_BYTES)
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
            await _start_ownership(session, ctx, charger, owner.id, actor)
        await bluetooth_pins.apply_policy(session, ctx, charger, factory_pin=factory_pin)
        await ctx.audit.append(
            session,
            AuditEntry(
                action="charger.registered",
                actor_id=actor.user_id,
                organisation_id=organisation_id,
                charger_id=charger.id,
                request_id=actor.request_id,
                details={"serial": serial, "vendor": vendor, "model": model, "firmware": firmware},
            ),
        )
    ctx.notifier.poke(charger.serial)
    return Registration(charger=charger, ocpp_password=password)


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
                for password in (secrets.token_urlsafe(OCPP_PASSWORD_BYTES),)
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
                    AuditEntry(
                        action="charger.registered",
                        actor_id=actor.user_id,
                        organisation_id=organisation_id,
                        charger_id=reg.charger.id,
                        request_id=actor.request_id,
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


async def _start_ownership(
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


async def current_ownership(session: AsyncSession, charger_id: str) -> Ownership | None:
    return await session.scalar(
        select(Ownership).where(Ownership.charger_id == charger_id, Ownership.ended_at.is_(None))
    )


def _access_changed(ctx: Context, charger: Charger, *, list_changed: bool = True) -> None:
    """After a commit that changed who may use a charger: drop the keypad index (so nobody
    loads the old state under a new epoch) and let the charger fetch its list update."""
    ctx.keypad_index.invalidate()
    if list_changed:
        ctx.notifier.poke(charger.serial)


async def end_ownership(
    session: AsyncSession, ctx: Context, ownership: Ownership
) -> dict[str, int]:
    """End one ownership and everything derived from it, in the caller's transaction: one
    UPDATE per table (grants, open invitations, phone credentials). Returns how many rows
    each revoked, for the audit record. The caller calls ``_access_changed`` after commit."""
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


async def list_chargers(
    ctx: Context, actor: Actor, *, serial: str | None = None
) -> list[ChargerView]:
    """Chargers the actor has a grant on, or that belong to an organisation where the actor
    is an admin (or to its subgroups); each as ``get_charger`` shows it. A fixed number of
    queries however many chargers (plus one role lookup per organisation among them)."""
    async with ctx.db.read() as session:
        granted = select(Grant.charger_id).where(
            Grant.user_id == actor.user_id, active_grant(ctx.clock)
        )
        admin_orgs = await _admin_org_ids(session, actor)
        visible = or_(Charger.id.in_(granted), Charger.organisation_id.in_(admin_orgs))
        if serial is not None:
            visible = and_(visible, Charger.serial == serial)
        chargers = (
            await session.scalars(select(Charger).where(visible).order_by(Charger.serial))
        ).all()
        if not chargers:
            return []
        ids = select(Charger.id).where(visible).scalar_subquery()
        bases = await chargers_bases(session, actor.user_id, chargers, ids, ctx.clock)
        connectors = _by_charger(
            await session.scalars(
                select(ConnectorStatus)
                .where(ConnectorStatus.charger_id.in_(ids))
                .order_by(ConnectorStatus.evse_id, ConnectorStatus.connector_id)
            )
        )
        settings = _by_charger(
            await session.scalars(
                select(ChargerSetting)
                .where(ChargerSetting.charger_id.in_(ids))
                .order_by(ChargerSetting.key)
            )
        )
    return [
        ChargerView(
            charger=charger,
            bases=frozenset(bases[charger.id]),
            policy=policy_of(charger),
            connectors=tuple(connectors.get(charger.id, ())),
            settings=tuple(settings.get(charger.id, ())),
        )
        for charger in chargers
    ]


_Row = TypeVar("_Row", ConnectorStatus, ChargerSetting)


def _by_charger(rows: Iterable[_Row]) -> dict[str, list[_Row]]:
    grouped: dict[str, list[_Row]] = {}
    for row in rows:
        grouped.setdefault(row.charger_id, []).append(row)
    return grouped


async def _admin_org_ids(session: AsyncSession, actor: Actor) -> list[str]:
    roots = (
        await session.scalars(
            select(Membership.organisation_id).where(
                Membership.user_id == actor.user_id,
                Membership.role.in_([Role.ADMIN, Role.SUPER_ADMIN]),
            )
        )
    ).all()
    found: set[str] = set()
    frontier = list(roots)
    while frontier:
        org_id = frontier.pop()
        if org_id in found:
            continue
        found.add(org_id)
        frontier.extend(
            (
                await session.scalars(
                    select(Organisation.id).where(Organisation.parent_id == org_id)
                )
            ).all()
        )
    return sorted(found)


async def get_charger(ctx: Context, actor: Actor, charger_id: str) -> ChargerView:
    async with ctx.db.read() as session:
        charger, _basis, bases = await charger_for(
            session, actor, charger_id, ChargerAction.VIEW, ctx.clock
        )
        connectors = (
            await session.scalars(
                select(ConnectorStatus)
                .where(ConnectorStatus.charger_id == charger.id)
                .order_by(ConnectorStatus.evse_id, ConnectorStatus.connector_id)
            )
        ).all()
        settings = (
            await session.scalars(
                select(ChargerSetting)
                .where(ChargerSetting.charger_id == charger.id)
                .order_by(ChargerSetting.key)
            )
        ).all()
        events = None
        if allowed_bases(ChargerAction.VIEW_SECURITY_EVENTS, bases):
            events = tuple(
                await _security_events(session, charger.id, limit=RECENT_SECURITY_EVENTS)
            )
    return ChargerView(
        charger=charger,
        bases=frozenset(bases),
        policy=policy_of(charger),
        connectors=tuple(connectors),
        settings=tuple(settings),
        recent_security_events=events,
    )


async def assign(ctx: Context, actor: Actor, charger_id: str, user_id: str) -> Grant:
    """A super-admin assigns a charger to a member of its organisation or of an ancestor."""
    async with ctx.db.transaction() as session:
        charger, _basis, _ = await charger_for(
            session, actor, charger_id, ChargerAction.ASSIGN, ctx.clock
        )
        # The group the charger belongs to, the groups above it and its subgroups (Wallbox's
        # portal: "assign chargers to users in a group or a subgroup").
        org_ids = [o.id for o in await ancestors(session, charger.organisation_id)]
        org_ids += await subtree(session, charger.organisation_id)
        member = await session.scalar(
            select(Membership.id).where(
                Membership.user_id == user_id, Membership.organisation_id.in_(org_ids)
            )
        )
        if member is None:
            raise NotFound("no such member in this charger's organisation")
        grant = await _grant(session, ctx, actor, charger, user_id, GrantKind.USER, None)
    _access_changed(ctx, charger)
    return grant


async def _grant(
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
    ownership = await current_ownership(session, charger.id)
    grant = Grant(
        charger_id=charger.id,
        user_id=user_id,
        kind=kind,
        ownership_id=ownership.id if ownership else None,
        granted_by=actor.user_id,
        created_at=ctx.clock.now(),
        expires_at=expires_at,
    )
    session.add(grant)
    await session.flush()
    await local_lists.sync(session, ctx, charger)  # the caller pokes after commit
    await ctx.audit.append(
        session,
        AuditEntry(
            action="grant.created",
            actor_id=actor.user_id,
            organisation_id=charger.organisation_id,
            charger_id=charger.id,
            subject_id=user_id,
            request_id=actor.request_id,
            details={
                "kind": kind.value,
                "expires_at": expires_at.isoformat() if expires_at else None,
            },
        ),
    )
    return grant


@dataclass(frozen=True, kw_only=True, slots=True)
class GrantView:
    grant: Grant
    email: str


async def list_grants(ctx: Context, actor: Actor, charger_id: str) -> list[GrantView]:
    async with ctx.db.read() as session:
        charger, _basis, _ = await charger_for(
            session, actor, charger_id, ChargerAction.MANAGE_GRANTS, ctx.clock
        )
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
        charger, _basis, _ = await charger_for(
            session, actor, charger_id, ChargerAction.MANAGE_GRANTS, ctx.clock
        )
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
        await ctx.audit.append(
            session,
            AuditEntry(
                action="grant.revoked",
                actor_id=actor.user_id,
                organisation_id=charger.organisation_id,
                charger_id=charger.id,
                subject_id=grant.user_id,
                request_id=actor.request_id,
                details={"kind": grant.kind},
            ),
        )
    _access_changed(ctx, charger, list_changed=list_changed)


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
        raise InvalidInput("ownership is transferred, not invited")
    if service_expires_at is not None and kind is not GrantKind.SERVICE:
        raise InvalidInput("only service access expires")
    if service_expires_at is not None and service_expires_at <= ctx.clock.now():
        raise InvalidInput("the service access would already have expired")
    token = secrets.token_urlsafe(32)
    now = ctx.clock.now()
    async with ctx.db.transaction() as session:
        charger, _basis, _ = await charger_for(
            session, actor, charger_id, ChargerAction.MANAGE_GRANTS, ctx.clock
        )
        ownership = await current_ownership(session, charger.id)
        invitation = Invitation(
            charger_id=charger.id,
            ownership_id=ownership.id if ownership else None,
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
            AuditEntry(
                action="invitation.created",
                actor_id=actor.user_id,
                organisation_id=charger.organisation_id,
                charger_id=charger.id,
                request_id=actor.request_id,
                details={"kind": kind.value, "invitation": invitation.id},
            ),
        )
    return IssuedInvitation(invitation=invitation, token=token)


async def accept_invitation(ctx: Context, actor: Actor, token: str) -> Grant:
    """The invitee (logged in with the invited email) accepts; the grant follows."""
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
        grant = await _grant(
            session, ctx, inviter, charger, actor.user_id, GrantKind(invitation.kind),
            invitation.service_expires_at,
        )  # fmt: skip
        grant.ownership_id = invitation.ownership_id
    _access_changed(ctx, charger)
    return grant


async def list_invitations(ctx: Context, actor: Actor, charger_id: str) -> list[Invitation]:
    async with ctx.db.read() as session:
        charger, _basis, _ = await charger_for(
            session, actor, charger_id, ChargerAction.MANAGE_GRANTS, ctx.clock
        )
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
        charger, _basis, _ = await charger_for(
            session, actor, charger_id, ChargerAction.MANAGE_GRANTS, ctx.clock
        )
        invitation = await session.get(Invitation, invitation_id)
        if invitation is None or invitation.charger_id != charger.id or invitation.revoked_at:
            raise NotFound("no such invitation")
        invitation.revoked_at = ctx.clock.now()


async def security_events(
    ctx: Context, actor: Actor, charger_id: str, limit: int = 200
) -> list[SecurityEvent]:
    async with ctx.db.read() as session:
        charger, _basis, _ = await charger_for(
            session, actor, charger_id, ChargerAction.VIEW_SECURITY_EVENTS, ctx.clock
        )
        return await _security_events(session, charger.id, limit=limit)


async def _security_events(
    session: AsyncSession, charger_id: str, *, limit: int
) -> list[SecurityEvent]:
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
