"""Keypad PINs (the Commander per-user PIN): one per user and PIN space (a group and its
subgroups), stored only as HMAC(pepper, space ‖ PIN) under a unique index.

Setting a PIN another member holds must not reveal that fact: a taken PIN gets the very
answer a blocked one gets, is audited, and counts against the setter's rejection budget
(``PIN_SET_RULES``); a server-generated PIN avoids the question altogether."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError

from evaccess.domain.access import Basis, ChargerAction, GrantKind, OrgAction, allowed_bases
from evaccess.domain.errors import (
    EvAccessError,
    NotFound,
    PermissionDenied,
    PinRejected,
    Throttled,
)
from evaccess.domain.pins import KeypadPinRules, PinSpaceCrowding, trivial_reasons
from evaccess.server.context import Context
from evaccess.server.db.models import Charger, Grant, KeypadPin, Organisation
from evaccess.server.keypad_index import ChargerKeypad
from evaccess.server.services import local_lists
from evaccess.server.services.audit import AuditEntry
from evaccess.server.services.relations import (
    ROLE_RANK,
    Actor,
    active_grant,
    org_role,
    require_org_action,
)
from evaccess.server.vault import KEYPAD_PIN

REJECTED = "this keypad PIN cannot be used; choose another, or let the server generate one"
GENERATE_ATTEMPTS = 20


@dataclass(frozen=True, kw_only=True, slots=True)
class KeypadPinSet:
    user_id: str
    digits: int
    generated_pin: str | None = None
    """Only for a server-generated PIN: shown once to the person who asked."""


async def _target_org(ctx: Context, actor: Actor, org_id: str, user_id: str) -> Organisation:
    async with ctx.db.read() as session:
        if user_id == actor.user_id:
            org = await require_org_action(session, actor, org_id, OrgAction.VIEW)
        else:
            org = await require_org_action(session, actor, org_id, OrgAction.SET_MEMBER_KEYPAD_PIN)
            target = await org_role(session, user_id, org_id)
            if target is None:
                raise NotFound("no such member")
            # Whoever sets a PIN knows it and could use a keypad as its holder: never for
            # someone who outranks the setter.
            setter = await org_role(session, actor.user_id, org_id)
            if setter is None or ROLE_RANK[target] > ROLE_RANK[setter]:
                raise PermissionDenied("you may not set the keypad PIN of someone who outranks you")
    return org


async def set_pin(
    ctx: Context, actor: Actor, org_id: str, user_id: str, pin: str | None
) -> KeypadPinSet:
    """Set ``user_id``'s keypad PIN in the organisation's PIN space (``pin=None``: generate)."""
    setter = f"setter:{actor.user_id}"
    ctx.pin_set_throttle.check(setter)
    org = await _target_org(ctx, actor, org_id, user_id)
    rules = KeypadPinRules(digits=org.keypad_pin_digits)
    if pin is None:
        return await _generate(ctx, actor, org, rules, user_id)
    if not pin.isascii() or not pin.isdigit() or len(pin) != rules.digits:
        rules.validate(pin)  # raises the specific format error: it reveals nothing
    if trivial_reasons(pin) or not await _store(ctx, actor, org, rules, user_id, pin):
        _count_rejection(ctx, setter)
        raise PinRejected(REJECTED)
    return KeypadPinSet(user_id=user_id, digits=rules.digits)


def _count_rejection(ctx: Context, setter: str) -> None:
    if ctx.pin_set_throttle.failure(setter) is not None:
        retry = ctx.pin_set_throttle.is_locked(setter) or 0.0
        raise Throttled("too many rejected keypad PINs; try again later", retry_after=retry)


async def _generate(
    ctx: Context, actor: Actor, org: Organisation, rules: KeypadPinRules, user_id: str
) -> KeypadPinSet:
    for _ in range(GENERATE_ATTEMPTS):
        pin = rules.generate(ctx.rng)
        if await _store(ctx, actor, org, rules, user_id, pin, generated=True):
            return KeypadPinSet(user_id=user_id, digits=rules.digits, generated_pin=pin)
    raise EvAccessError("the PIN space is too crowded to generate a PIN", code="pin_space_full")


async def _store(
    ctx: Context,
    actor: Actor,
    org: Organisation,
    rules: KeypadPinRules,
    user_id: str,
    pin: str,
    *,
    generated: bool = False,
) -> bool:
    """Insert or replace the user's PIN; ``False`` if another member holds it (audited)."""
    digest = ctx.keypad_hasher.digest(org.root_id, pin)
    for _attempt in range(3):
        try:
            async with ctx.db.transaction() as session:
                holder = await session.scalar(
                    select(KeypadPin.user_id).where(
                        KeypadPin.pin_space_id == org.root_id, KeypadPin.digest == digest
                    )
                )
                if holder is not None and holder != user_id:
                    break
                await session.execute(
                    delete(KeypadPin).where(
                        KeypadPin.pin_space_id == org.root_id, KeypadPin.user_id == user_id
                    )
                )
                sealed = (
                    ctx.vault.seal(
                        local_lists.keypad_subject(org.root_id, user_id), pin, purpose=KEYPAD_PIN
                    )
                    if org.offline_keypad
                    else None
                )
                session.add(
                    KeypadPin(
                        pin_space_id=org.root_id,
                        user_id=user_id,
                        digest=digest,
                        digits=rules.digits,
                        set_by=actor.user_id,
                        updated_at=ctx.clock.now(),
                        sealed_pin=sealed.ciphertext if sealed else None,
                        sealed_key_version=sealed.key_version if sealed else None,
                    )
                )
                await session.flush()
                pokes = await local_lists.sync_for_user(session, ctx, org.root_id, user_id)
                await ctx.audit.append(
                    session,
                    AuditEntry(
                        action="keypad_pin.set",
                        actor_id=actor.user_id,
                        organisation_id=org.id,
                        subject_id=user_id,
                        request_id=actor.request_id,
                        details={"generated": generated},
                    ),
                )
            ctx.keypad_index.invalidate()
            for serial in pokes:
                ctx.notifier.poke(serial)
            return True
        except IntegrityError:
            continue  # a concurrent writer won a unique index: look again
    if not generated:
        async with ctx.db.transaction() as session:
            await ctx.audit.append(
                session,
                AuditEntry(
                    action="keypad_pin.collision",
                    actor_id=actor.user_id,
                    organisation_id=org.id,
                    subject_id=user_id,
                    request_id=actor.request_id,
                ),
            )
    return False


async def delete_pin(ctx: Context, actor: Actor, org_id: str, user_id: str) -> None:
    org = await _target_org(ctx, actor, org_id, user_id)
    async with ctx.db.transaction() as session:
        result = await session.execute(
            delete(KeypadPin).where(
                KeypadPin.pin_space_id == org.root_id, KeypadPin.user_id == user_id
            )
        )
        if not result.rowcount:  # type: ignore[attr-defined]
            raise NotFound("no keypad PIN to delete")
        pokes = await local_lists.sync_for_user(session, ctx, org.root_id, user_id)
        await ctx.audit.append(
            session,
            AuditEntry(
                action="keypad_pin.deleted",
                actor_id=actor.user_id,
                organisation_id=org.id,
                subject_id=user_id,
                request_id=actor.request_id,
            ),
        )
    ctx.keypad_index.invalidate()
    for serial in pokes:
        ctx.notifier.poke(serial)


async def crowding(ctx: Context, actor: Actor, org_id: str) -> PinSpaceCrowding:
    async with ctx.db.read() as session:
        org = await require_org_action(session, actor, org_id, OrgAction.VIEW_MEMBERS)
        count = await session.scalar(
            select(func.count()).select_from(KeypadPin).where(KeypadPin.pin_space_id == org.root_id)
        )
    return PinSpaceCrowding(members_with_pin=int(count or 0), digits=org.keypad_pin_digits)


async def resolve(ctx: Context, charger_id: str, pin: str) -> str | None:
    """The user whose keypad PIN this is, if they may use this charger; else ``None``.

    Throttled per charger: while the keypad is locked this raises ``LockedOut`` before any
    database lookup. Lockouts are recorded as security events by the caller's hook."""
    key = f"keypad:{charger_id}"
    ctx.keypad_throttle.check(key)
    user_id = await _lookup(ctx, charger_id, pin)
    if user_id is None:
        event = ctx.keypad_throttle.failure(key)
        if event is not None:
            await _record_lockout(ctx, charger_id)
        return None
    ctx.keypad_throttle.success(key)
    return user_id


async def _lookup(ctx: Context, charger_id: str, pin: str) -> str | None:
    if not pin.isascii() or not pin.isdigit() or not 4 <= len(pin) <= 8:
        return None
    index = ctx.keypad_index
    keypad = index.get(charger_id)
    if keypad is None:
        # One load at a time, for a whole organisation tree: a fleet of chargers that all
        # miss at once (a restart, a reconnect storm) costs one query, not one each.
        async with index.loading:
            keypad = index.get(charger_id)
            if keypad is None:
                await _load_tree(ctx, charger_id)
                keypad = index.get(charger_id)
        if keypad is None:
            return None
    elif index.is_stale(keypad):
        index.refresh_soon(lambda: _refresh_tree(ctx, charger_id))
    return keypad.users.get(ctx.keypad_hasher.digest(keypad.root_id, pin))


async def _refresh_tree(ctx: Context, charger_id: str) -> None:
    async with ctx.keypad_index.loading:
        await _load_tree(ctx, charger_id)


TREE_CHUNK = 1000


async def _load_tree(ctx: Context, charger_id: str) -> None:
    """Index who may use each keypad of the charger's organisation tree, by PIN digest.
    Rows arrive in chunks, so that a large fleet's reload never holds the event loop."""
    epoch, loaded_at = ctx.keypad_index.epoch, ctx.clock.monotonic()
    users: dict[str, dict[bytes, str]] = {}
    expiries: dict[str, list[datetime]] = {}
    async with ctx.db.read() as session:
        root_id = await session.scalar(
            select(Organisation.root_id)
            .join(Charger, Charger.organisation_id == Organisation.id)
            .where(Charger.id == charger_id)
        )
        if root_id is None:
            return
        in_tree = (
            select(Charger.id)
            .join(Organisation, Organisation.id == Charger.organisation_id)
            .where(Organisation.root_id == root_id)
        )
        async for chunk in (await session.stream_scalars(in_tree)).partitions(TREE_CHUNK):
            users.update((charger, {}) for charger in chunk)
        rows = await session.stream(
            select(Grant.charger_id, KeypadPin.digest, Grant.user_id, Grant.kind, Grant.expires_at)
            .join(KeypadPin, KeypadPin.user_id == Grant.user_id)
            .where(
                Grant.charger_id.in_(in_tree),
                active_grant(ctx.clock),
                KeypadPin.pin_space_id == root_id,
            )
        )
        async for partition in rows.partitions(TREE_CHUNK):
            for charger, digest, user_id, kind, expires in partition:
                if allowed_bases(ChargerAction.USE_KEYPAD, [Basis.of_grant(GrantKind(kind))]):
                    users.setdefault(charger, {})[digest] = user_id
                    if expires is not None:
                        expiries.setdefault(charger, []).append(expires)
            await asyncio.sleep(0)
    for charger, by_digest in users.items():
        ctx.keypad_index.put(
            charger,
            ChargerKeypad(
                epoch=epoch,
                loaded_at=loaded_at,
                valid_until=min(expiries.get(charger, ()), default=None),
                root_id=root_id,
                users=by_digest,
            ),
        )


async def _record_lockout(ctx: Context, charger_id: str) -> None:
    from evaccess.protocol.ocpp_components import SecurityEventType
    from evaccess.server.db.models import SecurityEvent

    now = ctx.clock.now()
    retry = ctx.keypad_throttle.is_locked(f"keypad:{charger_id}")
    async with ctx.db.transaction() as session:
        charger = await session.get(Charger, charger_id)
        if charger is None:
            return
        session.add(
            SecurityEvent(
                charger_id=charger_id,
                event_type=SecurityEventType.KEYPAD_LOCKOUT,
                at=now,
                received_at=now,
                tech_info=f"server-side keypad lockout for {int(retry or 0)} s",
            )
        )
        await ctx.audit.append(
            session,
            AuditEntry(
                action="keypad.locked",
                organisation_id=charger.organisation_id,
                charger_id=charger_id,
                details={"seconds": int(retry or 0)},
            ),
        )
