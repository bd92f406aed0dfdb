"""Keypad PINs (the Commander per-user PIN): one per user and PIN space, stored only as
HMAC(pepper, space ‖ PIN) under a unique index. A PIN space is an organisation tree (a group
and its subgroups), or the personal space of a charger owner (who needs no organisation):
that PIN works at the chargers they own.

A charger's keypad checks its organisation's space and its current owner's personal space,
so a PIN must also differ from the PINs of the other space a keypad checks; a PIN that
matches two people at one keypad (possible only after an ownership change) opens nothing.

Setting a PIN another member holds must not reveal that fact: a taken PIN gets the very
answer a blocked one gets, is audited, and counts against the setter's rejection budget
(``PIN_SET_RULES``); a server-generated PIN avoids the question altogether."""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from evaccess.domain.access import (
    PERSONAL_KEYPAD_GRANTS,
    Basis,
    ChargerAction,
    GrantKind,
    MemberAccess,
    OrgAction,
    Role,
    allowed_bases,
    member_bases,
)
from evaccess.domain.errors import (
    Conflict,
    EvAccessError,
    NotFound,
    PermissionDenied,
    PinRejected,
    Throttled,
)
from evaccess.domain.pins import (
    DEFAULT_KEYPAD_DIGITS,
    KeypadPinRules,
    PinSpaceCrowding,
    trivial_reasons,
)
from evaccess.protocol.ocpp_components import SecurityEventType
from evaccess.server.audit import AuditEntry
from evaccess.server.context import Context
from evaccess.server.db.models import (
    Charger,
    Grant,
    KeypadPin,
    Membership,
    Organisation,
    SecurityEvent,
    User,
)
from evaccess.server.keypad_index import ChargerKeypad
from evaccess.server.services import local_lists, notifications
from evaccess.server.services.relations import (
    Actor,
    active_grant,
    charger_for,
    require_credential_manager,
    require_org_action,
)
from evaccess.server.vault import KEYPAD_PIN

REJECTED = "this keypad PIN cannot be used; choose another, or let the server generate one"
GENERATE_ATTEMPTS = 20
NOT_AN_OWNER = "a personal keypad PIN is for charger owners, and you own no charger"


def personal_key(owner_id: str) -> str:
    """The PIN space key (HMAC domain) of an owner's personal space; an organisation's is
    its root id, which never has this prefix."""
    return f"owner:{owner_id}"


@dataclass(frozen=True, kw_only=True, slots=True)
class PinSpace:
    """Where a keypad PIN lives and is unique: an organisation tree or one owner's space."""

    root_id: str | None = None
    owner_id: str | None = None
    organisation_id: str | None = None
    """For the audit record: the organisation the PIN was set in (none: personal)."""
    digits: int = DEFAULT_KEYPAD_DIGITS
    offline: bool = False
    """Sealed copies for local lists: an organisation opt-in. Personal PINs are online only."""

    @classmethod
    def of(cls, org: Organisation) -> PinSpace:
        return cls(
            root_id=org.root_id,
            organisation_id=org.id,
            digits=org.keypad_pin_digits,
            offline=org.offline_keypad,
        )

    @classmethod
    def personal(cls, owner_id: str) -> PinSpace:
        return cls(owner_id=owner_id)

    @property
    def key(self) -> str:
        if self.root_id is not None:
            return self.root_id
        assert self.owner_id is not None
        return personal_key(self.owner_id)

    def rows(self) -> ColumnElement[bool]:
        if self.root_id is not None:
            return KeypadPin.pin_space_id == self.root_id
        return KeypadPin.owner_id == self.owner_id

    def audit_details(self, **details: Any) -> dict[str, Any]:
        return details if self.root_id is not None else details | {"personal": True}


@dataclass(frozen=True, kw_only=True, slots=True)
class KeypadPinSet:
    user_id: str
    digits: int
    generated_pin: str | None = None
    """Only for a server-generated PIN: shown once to the person who asked."""


async def _target_org(ctx: Context, actor: Actor, org_id: str, user_id: str) -> Organisation:
    async with ctx.db.read() as session:
        return await require_credential_manager(
            session,
            actor,
            org_id,
            user_id,
            refusal="you may not set the keypad PIN of someone who outranks you",
        )


async def set_pin(
    ctx: Context, actor: Actor, org_id: str, user_id: str, pin: str | None
) -> KeypadPinSet:
    """Set ``user_id``'s keypad PIN in the organisation's PIN space (``pin=None``: generate)."""
    await ctx.pin_set_throttle.check(f"setter:{actor.user_id}")
    org = await _target_org(ctx, actor, org_id, user_id)
    return await _set(ctx, actor, PinSpace.of(org), user_id, pin)


async def set_personal_pin(ctx: Context, actor: Actor, pin: str | None) -> KeypadPinSet:
    """Set the actor's PIN in their personal space (``pin=None``: generate). Only for a
    charger owner; it works at the chargers they own."""
    await ctx.pin_set_throttle.check(f"setter:{actor.user_id}")
    async with ctx.db.read() as session:
        if not await _owned_roots(session, ctx, actor.user_id):
            raise PermissionDenied(NOT_AN_OWNER)
    return await _set(ctx, actor, PinSpace.personal(actor.user_id), actor.user_id, pin)


async def _set(
    ctx: Context, actor: Actor, space: PinSpace, user_id: str, pin: str | None
) -> KeypadPinSet:
    setter = f"setter:{actor.user_id}"
    rules = KeypadPinRules(digits=space.digits)
    if pin is None:
        return await _generate(ctx, actor, space, rules, user_id)
    if not pin.isascii() or not pin.isdigit() or len(pin) != rules.digits:
        rules.validate(pin)  # raises the specific format error: it reveals nothing
    if trivial_reasons(pin) or not await _store(ctx, actor, space, rules, user_id, pin):
        await _count_rejection(ctx, setter)
        raise PinRejected(REJECTED)
    return KeypadPinSet(user_id=user_id, digits=rules.digits)


async def _owned_roots(session: AsyncSession, ctx: Context, owner_id: str) -> list[str]:
    """The organisation trees of the chargers where a personal PIN of ``owner_id`` works."""
    return list(
        (
            await session.scalars(
                select(Organisation.root_id)
                .join(Charger, Charger.organisation_id == Organisation.id)
                .join(Grant, Grant.charger_id == Charger.id)
                .where(
                    Grant.user_id == owner_id,
                    Grant.kind.in_(PERSONAL_KEYPAD_GRANTS),
                    active_grant(ctx.clock),
                )
                .distinct()
            )
        ).all()
    )


async def _clashes(
    session: AsyncSession, ctx: Context, space: PinSpace, user_id: str, pin: str
) -> bool:
    """Whether someone else holds this PIN in a space that a keypad checks together with
    ``space`` (the answer is the same as for a PIN taken within the space)."""
    hasher = ctx.keypad_hasher
    if space.owner_id is not None:
        for root in await _owned_roots(session, ctx, space.owner_id):
            holder = await session.scalar(
                select(KeypadPin.user_id).where(
                    KeypadPin.pin_space_id == root,
                    KeypadPin.digest == hasher.digest(root, pin),
                    KeypadPin.user_id != user_id,
                )
            )
            if holder is not None:
                return True
        return False
    owners = (
        select(Grant.user_id)
        .join(Charger, Charger.id == Grant.charger_id)
        .join(Organisation, Organisation.id == Charger.organisation_id)
        .where(
            Organisation.root_id == space.root_id,
            Grant.kind.in_(PERSONAL_KEYPAD_GRANTS),
            active_grant(ctx.clock),
        )
    )
    rows = await session.execute(
        select(KeypadPin.owner_id, KeypadPin.digest).where(
            KeypadPin.owner_id.in_(owners), KeypadPin.owner_id != user_id
        )
    )
    return any(
        hmac.compare_digest(hasher.digest(personal_key(owner), pin), digest)
        for owner, digest in rows
        if owner is not None
    )


async def _count_rejection(ctx: Context, setter: str) -> None:
    if await ctx.pin_set_throttle.failure(setter) is not None:
        retry = await ctx.pin_set_throttle.is_locked(setter) or 0.0
        raise Throttled("too many rejected keypad PINs; try again later", retry_after=retry)


async def _generate(
    ctx: Context, actor: Actor, space: PinSpace, rules: KeypadPinRules, user_id: str
) -> KeypadPinSet:
    for _ in range(GENERATE_ATTEMPTS):
        pin = rules.generate(ctx.rng)
        if await _store(ctx, actor, space, rules, user_id, pin, generated=True):
            return KeypadPinSet(user_id=user_id, digits=rules.digits, generated_pin=pin)
    raise EvAccessError("the PIN space is too crowded to generate a PIN", code="pin_space_full")


STORE_ATTEMPTS = 3


async def _store(
    ctx: Context,
    actor: Actor,
    space: PinSpace,
    rules: KeypadPinRules,
    user_id: str,
    pin: str,
    *,
    generated: bool = False,
) -> bool:
    """Insert or replace the user's PIN; ``False`` if someone else holds it (audited).

    ``Conflict`` when three attempts in a row lost a unique index to concurrent writers
    without finding the PIN held by someone else (the same person's PIN set several times
    at once): the PIN was not refused, so it is neither audited as a collision nor counted
    against the setter's rejection budget."""
    digest = ctx.keypad_hasher.digest(space.key, pin)
    for _attempt in range(STORE_ATTEMPTS):
        try:
            async with ctx.db.transaction() as session:
                holder = await session.scalar(
                    select(KeypadPin.user_id).where(space.rows(), KeypadPin.digest == digest)
                )
                if holder is not None and holder != user_id:
                    break
                if await _clashes(session, ctx, space, user_id, pin):
                    break
                await session.execute(
                    delete(KeypadPin).where(space.rows(), KeypadPin.user_id == user_id)
                )
                sealed = (
                    ctx.vault.seal(
                        local_lists.keypad_subject(space.key, user_id), pin, purpose=KEYPAD_PIN
                    )
                    if space.offline
                    else None
                )
                session.add(
                    KeypadPin(
                        pin_space_id=space.root_id,
                        owner_id=space.owner_id,
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
                pokes = await _sync_lists(session, ctx, space, user_id)
                await ctx.audit.append(
                    session,
                    actor.audit_entry(
                        "keypad_pin.set",
                        organisation_id=space.organisation_id,
                        subject_id=user_id,
                        details=space.audit_details(generated=generated),
                    ),
                )
            ctx.keypad_index.invalidate()
            for serial in pokes:
                ctx.notifier.poke(serial)
            return True
        except IntegrityError:
            continue  # a concurrent writer won a unique index: look again
    else:
        raise Conflict("this keypad PIN was being changed at the same time; try again")
    if not generated:
        async with ctx.db.transaction() as session:
            await ctx.audit.append(
                session,
                actor.audit_entry(
                    "keypad_pin.collision",
                    organisation_id=space.organisation_id,
                    subject_id=user_id,
                    details=space.audit_details(),
                ),
            )
    return False


async def _sync_lists(
    session: AsyncSession, ctx: Context, space: PinSpace, user_id: str
) -> list[str]:
    if space.root_id is None:
        return []  # personal PINs are never sealed, so never on a local list
    if not space.offline:
        # The setting is the tree's (``organisations.update_settings``); turning it off
        # emptied the tree's local lists, so no charger of it carries a keypad PIN.
        return []
    return await local_lists.sync_for_user(session, ctx, space.root_id, user_id)


async def delete_pin(ctx: Context, actor: Actor, org_id: str, user_id: str) -> None:
    org = await _target_org(ctx, actor, org_id, user_id)
    await _delete(ctx, actor, PinSpace.of(org), user_id)


async def delete_personal_pin(ctx: Context, actor: Actor) -> None:
    await _delete(ctx, actor, PinSpace.personal(actor.user_id), actor.user_id)


async def _delete(ctx: Context, actor: Actor, space: PinSpace, user_id: str) -> None:
    async with ctx.db.transaction() as session:
        result = await session.execute(
            delete(KeypadPin).where(space.rows(), KeypadPin.user_id == user_id)
        )
        if not result.rowcount:  # type: ignore[attr-defined]
            raise NotFound("no keypad PIN to delete")
        pokes = await _sync_lists(session, ctx, space, user_id)
        await ctx.audit.append(
            session,
            actor.audit_entry(
                "keypad_pin.deleted",
                organisation_id=space.organisation_id,
                subject_id=user_id,
                details=space.audit_details(),
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

    Throttled per charger: while the keypad is locked this raises ``LockedOut`` without a
    database lookup. When this charger's keypad is in memory (the index), the code is looked
    up first and the lock check and the count of the outcome are one step (``settle``: one
    Redis round trip per code in cluster mode); otherwise the lock is checked before the
    database is read. Lockouts are recorded as security events by the caller's hook."""
    key = f"keypad:{charger_id}"
    if ctx.keypad_index.get(charger_id) is None:
        await ctx.keypad_throttle.check(key)
    user_id = await _lookup(ctx, charger_id, pin)
    event = await ctx.keypad_throttle.settle(key, succeeded=user_id is not None)
    if event is not None:
        await _record_lockout(ctx, charger_id)
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
                # Answered from what was loaded even when the index may not keep it (it is
                # suspended in cluster mode while changes made elsewhere may go unseen).
                keypad = await _load_tree(ctx, charger_id)
        if keypad is None:
            return None
    elif index.is_stale(keypad):
        index.refresh_soon(lambda: _refresh_tree(ctx, charger_id))
    digests = {key: ctx.keypad_hasher.digest(key, pin) for key, _ in keypad.spaces}
    matches = {u for key, users in keypad.spaces if (u := users.get(digests[key])) is not None}
    # Two people behind one code at one keypad (PIN spaces that met through an ownership
    # change): neither may start a session as the other.
    return matches.pop() if len(matches) == 1 else None


async def _refresh_tree(ctx: Context, charger_id: str) -> None:
    async with ctx.keypad_index.loading:
        await _load_tree(ctx, charger_id)


TREE_CHUNK = 1000


async def _load_tree(ctx: Context, charger_id: str) -> ChargerKeypad | None:
    """Index who may use each keypad of the charger's organisation tree, by PIN digest;
    the entry of ``charger_id`` (``None``: no such charger, or none may use it).
    Rows arrive in chunks, so that a large fleet's reload never holds the event loop."""
    epoch, loaded_at = ctx.keypad_index.epoch, ctx.clock.monotonic()
    users: dict[str, dict[bytes, str]] = {}
    org_of: dict[str, str] = {}
    personal: dict[str, list[tuple[str, Mapping[bytes, str]]]] = {}
    expiries: dict[str, list[datetime]] = {}
    async with ctx.db.snapshot() as session:
        root_id = await session.scalar(
            select(Organisation.root_id)
            .join(Charger, Charger.organisation_id == Organisation.id)
            .where(Charger.id == charger_id)
        )
        if root_id is None:
            return None
        in_tree = (
            select(Charger.id)
            .join(Organisation, Organisation.id == Charger.organisation_id)
            .where(Organisation.root_id == root_id)
        )
        tree_chargers = (
            select(Charger.id, Charger.organisation_id)
            .join(Organisation, Organisation.id == Charger.organisation_id)
            .where(Organisation.root_id == root_id)
        )
        async for chunk in (await session.stream(tree_chargers)).partitions(TREE_CHUNK):
            for charger, org_id in chunk:
                users[charger] = {}
                org_of[charger] = org_id
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
        members = await _members_let_in(session, root_id)
        owned = await session.stream(
            select(Grant.charger_id, KeypadPin.digest, Grant.user_id, Grant.kind, Grant.expires_at)
            .join(KeypadPin, KeypadPin.owner_id == Grant.user_id)
            .where(Grant.charger_id.in_(in_tree), active_grant(ctx.clock))
        )
        async for partition in owned.partitions(TREE_CHUNK):
            for charger, digest, owner_id, kind, expires in partition:
                if GrantKind(kind) in PERSONAL_KEYPAD_GRANTS:
                    personal.setdefault(charger, []).append(
                        (personal_key(owner_id), {digest: owner_id})
                    )
                    if expires is not None:
                        expiries.setdefault(charger, []).append(expires)
            await asyncio.sleep(0)
    found: ChargerKeypad | None = None
    for charger, by_digest in users.items():
        spaces: list[tuple[str, Mapping[bytes, str]]] = [(root_id, by_digest)]
        if (let_in := members.get(org_of.get(charger, ""))) is not None:
            spaces.append((root_id, let_in))
        spaces += personal.get(charger, [])
        entry = ChargerKeypad(
            epoch=epoch,
            loaded_at=loaded_at,
            valid_until=min(expiries.get(charger, ()), default=None),
            spaces=tuple(spaces),
        )
        ctx.keypad_index.put(charger, entry)
        if charger == charger_id:
            found = entry
    return found


async def _members_let_in(session: AsyncSession, root_id: str) -> dict[str, dict[bytes, str]]:
    """By organisation of the tree: the members its member access policy lets use all its
    chargers' keypads (members of it or of an organisation above it), by PIN digest."""
    orgs = (
        await session.execute(
            select(Organisation.id, Organisation.parent_id, Organisation.member_access).where(
                Organisation.root_id == root_id
            )
        )
    ).all()
    policy = {org_id: MemberAccess(access) for org_id, _, access in orgs}
    if all(p is MemberAccess.ASSIGNED for p in policy.values()):
        return {}
    parent = {org_id: parent_id for org_id, parent_id, _ in orgs}
    by_org: dict[str, list[tuple[str, Role, bytes]]] = {}
    rows = await session.stream(
        select(Membership.organisation_id, Membership.user_id, Membership.role, KeypadPin.digest)
        .join(KeypadPin, KeypadPin.user_id == Membership.user_id)
        .where(Membership.organisation_id.in_(policy), KeypadPin.pin_space_id == root_id)
    )
    async for partition in rows.partitions(TREE_CHUNK):
        for org_id, user_id, role, digest in partition:
            by_org.setdefault(org_id, []).append((user_id, Role(role), digest))
        await asyncio.sleep(0)
    let_in: dict[str, dict[bytes, str]] = {}
    for org_id, access in policy.items():
        chain: list[str] = []
        current: str | None = org_id
        while current is not None and current not in chain:
            chain.append(current)
            current = parent.get(current)
        let_in[org_id] = {
            digest: user_id
            for member_of in chain
            for user_id, role, digest in by_org.get(member_of, ())
            if allowed_bases(ChargerAction.USE_KEYPAD, member_bases(access, role))
        }
    return {org_id: found for org_id, found in let_in.items() if found}


@dataclass(frozen=True, kw_only=True, slots=True)
class KeypadHolder:
    """Someone whose keypad PIN opens a charger: who, and why (never the PIN)."""

    user_id: str
    email: str
    reasons: tuple[str, ...]
    """``owner``, ``user`` or ``service`` (a grant on the charger, with a PIN of the
    organisation's space), ``personal`` (the owner's personal PIN), ``member`` (the
    organisation lets all its members in)."""


async def holders(ctx: Context, actor: Actor, charger_id: str) -> list[KeypadHolder]:
    """The people whose keypad PIN works at the charger, as its keypad index lets them in
    (``_load_tree``): for its owner and the organisation's admins. Names only: no PIN, no
    digest leaves this function. A charger without a keypad has none."""
    found: dict[str, set[str]] = {}
    async with ctx.db.snapshot() as session:
        charger = (
            await charger_for(
                session, actor, charger_id, ChargerAction.VIEW_KEYPAD_HOLDERS, ctx.clock
            )
        ).charger
        if not charger.has_keypad:
            return []
        org = await session.get_one(Organisation, charger.organisation_id)
        granted = await session.execute(
            select(Grant.user_id, Grant.kind)
            .join(KeypadPin, KeypadPin.user_id == Grant.user_id)
            .where(
                Grant.charger_id == charger.id,
                active_grant(ctx.clock),
                KeypadPin.pin_space_id == org.root_id,
            )
        )
        for user_id, kind in granted.all():
            if allowed_bases(ChargerAction.USE_KEYPAD, [Basis.of_grant(GrantKind(kind))]):
                found.setdefault(user_id, set()).add(str(kind))
        personal = await session.scalars(
            select(Grant.user_id)
            .join(KeypadPin, KeypadPin.owner_id == Grant.user_id)
            .where(
                Grant.charger_id == charger.id,
                active_grant(ctx.clock),
                Grant.kind.in_(PERSONAL_KEYPAD_GRANTS),
            )
        )
        for user_id in personal.all():
            found.setdefault(user_id, set()).add("personal")
        members = (await _members_let_in(session, org.root_id)).get(charger.organisation_id, {})
        for user_id in members.values():
            found.setdefault(user_id, set()).add("member")
        emails = dict(
            (await session.execute(select(User.id, User.email).where(User.id.in_(found)))).all()
        )
    return sorted(
        (
            KeypadHolder(user_id=user_id, email=emails[user_id], reasons=tuple(sorted(why)))
            for user_id, why in found.items()
            if user_id in emails
        ),
        key=lambda holder: holder.email,
    )


async def _record_lockout(ctx: Context, charger_id: str) -> None:
    now = ctx.clock.now()
    retry = await ctx.keypad_throttle.is_locked(f"keypad:{charger_id}")
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
        await notifications.tell_owner_of_lockout(
            session, charger, SecurityEventType.KEYPAD_LOCKOUT, now=now
        )
