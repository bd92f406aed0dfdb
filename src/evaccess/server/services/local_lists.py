"""Offline keypad use: the OCPP local authorization lists of an organisation's keypad
chargers (an organisation opt-in, off by default; docs/security.md says what it exposes).

The server knows keypad PINs only as HMAC digests, which a charger cannot check; so in
organisations that opt in, a keypad PIN is also sealed with the vault when it is set, and
each charger's list holds the codes of the people allowed at that charger, nobody else.
``local_list_entries`` records what the charger last accepted: every differential update is
computed against it, and versions only grow.
"""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Any

from sqlalchemy import delete, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from evaccess.domain.access import (
    Basis,
    ChargerAction,
    GrantKind,
    MemberAccess,
    Role,
    allowed_bases,
    member_bases,
)
from evaccess.server.context import Context
from evaccess.server.db.models import (
    Charger,
    Grant,
    IdToken,
    KeypadPin,
    LocalListCard,
    LocalListEntry,
    Membership,
    Organisation,
    OutboxCommand,
)
from evaccess.server.ocpp import backend as port
from evaccess.server.services import outbox
from evaccess.server.services.relations import active_grant, ancestors, charger_bases
from evaccess.server.vault import KEYPAD_PIN, Sealed

Code = tuple[bytes, int]  # sealed PIN, key version
CARD = "id-token"
"""The vault purpose of a card number sealed for local lists (subject ``card_subject``)."""


def card_subject(root_id: str, card_id: str) -> str:
    return f"{root_id}:card:{card_id}"


def keypad_subject(pin_space_id: str, user_id: str) -> str:
    return f"{pin_space_id}:{user_id}"


async def _desired(
    session: AsyncSession, ctx: Context, charger: Charger, org: Organisation
) -> dict[str, Code]:
    if not (charger.has_keypad and org.offline_keypad):
        return {}
    rows = (
        await session.execute(
            select(Grant.user_id, Grant.kind, KeypadPin.sealed_pin, KeypadPin.sealed_key_version)
            .join(KeypadPin, KeypadPin.user_id == Grant.user_id)
            .where(
                Grant.charger_id == charger.id,
                active_grant(ctx.clock),
                KeypadPin.pin_space_id == org.root_id,
                KeypadPin.sealed_pin.is_not(None),
            )
        )
    ).all()
    desired = {
        user_id: (sealed, version)
        for user_id, kind, sealed, version in rows
        if sealed is not None
        and version is not None
        and allowed_bases(ChargerAction.USE_KEYPAD, [Basis.of_grant(GrantKind(kind))])
    }
    policy = MemberAccess(org.member_access)
    if policy is not MemberAccess.ASSIGNED:
        chain = [o.id for o in await ancestors(session, org.id)]
        members = (
            await session.execute(
                select(
                    Membership.user_id,
                    Membership.role,
                    KeypadPin.sealed_pin,
                    KeypadPin.sealed_key_version,
                )
                .join(KeypadPin, KeypadPin.user_id == Membership.user_id)
                .where(
                    Membership.organisation_id.in_(chain),
                    KeypadPin.pin_space_id == org.root_id,
                    KeypadPin.sealed_pin.is_not(None),
                )
            )
        ).all()
        desired |= {
            user_id: (sealed, version)
            for user_id, role, sealed, version in members
            if sealed is not None
            and version is not None
            and allowed_bases(ChargerAction.USE_KEYPAD, member_bases(policy, Role(role)))
        }
    return desired


async def _desired_cards(
    session: AsyncSession, ctx: Context, charger: Charger, org: Organisation
) -> dict[str, list[Any]]:
    """The cards of the tree that work at this charger, by card id (encoded as stored in
    a command): Accepted, not expired, sealed, their user allowed here like at its keypad."""
    if not org.offline_keypad:
        return {}
    now = ctx.clock.now()
    cards = (
        await session.scalars(
            select(IdToken).where(
                IdToken.root_id == org.root_id,
                IdToken.sealed_value.is_not(None),
                IdToken.status == "Accepted",
                or_(IdToken.expires_at.is_(None), IdToken.expires_at > now),
            )
        )
    ).all()
    allowed: dict[str, bool] = {}
    desired: dict[str, list[Any]] = {}
    for card in cards:
        if card.user_id not in allowed:
            bases = await charger_bases(session, card.user_id, charger, ctx.clock)
            allowed[card.user_id] = bool(allowed_bases(ChargerAction.USE_KEYPAD, bases))
        if allowed[card.user_id] and card.sealed_value and card.sealed_key_version:
            desired[card.id] = _card_code(
                card.sealed_value,
                card.sealed_key_version,
                card.token_type,
                card.group_id_token,
                card.expires_at,
            )
    return desired


def _card_code(
    sealed: bytes, version: int, kind: str, group: str | None, expires: datetime | None
) -> list[Any]:
    return [
        base64.b64encode(sealed).decode(),
        version,
        kind,
        group,
        expires.isoformat() if expires else None,
    ]


async def sync(
    session: AsyncSession,
    ctx: Context,
    charger: Charger,
    *,
    full: bool = False,
    min_version: int = 0,
) -> OutboxCommand | None:
    """Queue the list update that brings the charger to what it should hold (``full``: the
    whole list, replacing the charger's). ``None`` when nothing needs sending."""
    org = await session.get_one(Organisation, charger.organisation_id)
    desired = await _desired(session, ctx, charger, org)
    current = {
        e.user_id: (e.sealed_pin, e.sealed_key_version)
        for e in (
            await session.scalars(
                select(LocalListEntry).where(LocalListEntry.charger_id == charger.id)
            )
        ).all()
    }
    cards = await _desired_cards(session, ctx, charger, org)
    held = {
        e.token_id: _card_code(
            e.sealed_value, e.sealed_key_version, e.token_type, e.group_id_token, e.expires_at
        )
        for e in (
            await session.scalars(
                select(LocalListCard).where(LocalListCard.charger_id == charger.id)
            )
        ).all()
    }
    if full:
        to_set, to_remove = desired, {}
        cards_set, cards_remove = cards, {}
    else:
        to_set = {u: c for u, c in desired.items() if current.get(u) != c}
        to_remove = {u: c for u, c in current.items() if desired.get(u) != c}
        cards_set = {t: c for t, c in cards.items() if held.get(t) != c}
        cards_remove = {t: c for t, c in held.items() if cards.get(t) != c}
    if not full and not to_set and not to_remove and not cards_set and not cards_remove:
        await _cancel_open(session, ctx, charger)
        return None
    version = max(charger.local_list_version, min_version) + 1
    return await outbox.queue(
        session,
        ctx,
        charger.id,
        outbox.CommandKind.SEND_LOCAL_LIST,
        version=version,
        full=full,
        set={u: _encode(c) for u, c in to_set.items()},
        remove={u: _encode(c) for u, c in to_remove.items()},
        cards_set=cards_set,
        cards_remove=cards_remove,
    )


async def _cancel_open(session: AsyncSession, ctx: Context, charger: Charger) -> None:
    for command in await outbox.open_commands(session, charger.id):
        if command.kind == outbox.CommandKind.SEND_LOCAL_LIST:
            command.completed_at = ctx.clock.now()


async def sync_for_user(
    session: AsyncSession, ctx: Context, pin_space_id: str, user_id: str
) -> list[str]:
    """After a user's keypad PIN or membership changed: update every keypad charger of the
    tree they may use (by a grant, or as a member where the policy lets all members in).
    Returns the serials to poke."""
    keypads = (
        select(Charger)
        .join(Organisation, Organisation.id == Charger.organisation_id)
        .where(
            Organisation.root_id == pin_space_id,
            Organisation.offline_keypad.is_(True),
            Charger.has_keypad.is_(True),
        )
    )
    granted = (
        await session.scalars(
            keypads.join(Grant, Grant.charger_id == Charger.id)
            .where(Grant.user_id == user_id, active_grant(ctx.clock))
            .distinct()
        )
    ).all()
    member = await session.scalar(
        select(Membership.id)
        .join(Organisation, Organisation.id == Membership.organisation_id)
        .where(Membership.user_id == user_id, Organisation.root_id == pin_space_id)
        .limit(1)
    )
    let_in = (
        (
            await session.scalars(
                keypads.where(Organisation.member_access != MemberAccess.ASSIGNED.value)
            )
        ).all()
        if member is not None
        else []
    )
    chargers = {c.id: c for c in [*granted, *let_in]}.values()
    return [c.serial for c in chargers if await sync(session, ctx, c) is not None]


async def sync_tree(session: AsyncSession, ctx: Context, root_id: str) -> list[str]:
    """After the organisation's offline setting or member access policy changed, or a card
    of the tree: every charger of the tree (cards work at chargers without a keypad too)."""
    chargers = (
        await session.scalars(
            select(Charger)
            .join(Organisation, Organisation.id == Charger.organisation_id)
            .where(Organisation.root_id == root_id)
        )
    ).all()
    return [c.serial for c in chargers if await sync(session, ctx, c) is not None]


def command_for(ctx: Context, command: OutboxCommand, org: Organisation) -> port.SendLocalList:
    args = outbox.arguments(command)

    def code(user_id: str, encoded: list[Any]) -> str:
        sealed = Sealed(ciphertext=base64.b64decode(encoded[0]), key_version=int(encoded[1]))
        return ctx.vault.open(keypad_subject(org.root_id, user_id), sealed, purpose=KEYPAD_PIN)

    def number(card_id: str, encoded: list[Any]) -> str:
        sealed = Sealed(ciphertext=base64.b64decode(encoded[0]), key_version=int(encoded[1]))
        return ctx.vault.open(card_subject(org.root_id, card_id), sealed, purpose=CARD)

    cards_set: dict[str, list[Any]] = args.get("cards_set", {})
    cards_remove: dict[str, list[Any]] = args.get("cards_remove", {})
    return port.SendLocalList(
        command_id=command.id,
        version=int(args["version"]),
        full=bool(args["full"]),
        entries=tuple(
            port.LocalListEntry(id_token=code(u, c), user_id=u)
            for u, c in sorted(args["set"].items())
        )
        + tuple(
            port.LocalListEntry(
                id_token=number(t, c),
                user_id="",
                token_type=str(c[2]),
                group_id_token=c[3],
                expires_at=datetime.fromisoformat(c[4]) if c[4] else None,
            )
            for t, c in sorted(cards_set.items())
        ),
        removed=tuple(code(u, c) for u, c in sorted(args["remove"].items())),
        removed_tokens=tuple((number(t, c), str(c[2])) for t, c in sorted(cards_remove.items())),
    )


async def accepted(session: AsyncSession, charger: Charger, command: OutboxCommand) -> None:
    """The charger accepted a list update: record what it now holds and its version."""
    args = outbox.arguments(command)
    changed = set(args["set"]) | set(args["remove"])
    if args["full"]:
        await session.execute(delete(LocalListEntry).where(LocalListEntry.charger_id == charger.id))
    elif changed:
        await session.execute(
            delete(LocalListEntry).where(
                LocalListEntry.charger_id == charger.id, LocalListEntry.user_id.in_(changed)
            )
        )
    for user_id, encoded in args["set"].items():
        sealed, version = _decode(encoded)
        session.add(
            LocalListEntry(
                charger_id=charger.id,
                user_id=user_id,
                sealed_pin=sealed,
                sealed_key_version=version,
            )
        )
    cards_set: dict[str, list[Any]] = args.get("cards_set", {})
    cards_changed = set(cards_set) | set(args.get("cards_remove", {}))
    if args["full"]:
        await session.execute(delete(LocalListCard).where(LocalListCard.charger_id == charger.id))
    elif cards_changed:
        await session.execute(
            delete(LocalListCard).where(
                LocalListCard.charger_id == charger.id, LocalListCard.token_id.in_(cards_changed)
            )
        )
    for token_id, c in cards_set.items():
        session.add(
            LocalListCard(
                charger_id=charger.id,
                token_id=token_id,
                sealed_value=base64.b64decode(c[0]),
                sealed_key_version=int(c[1]),
                token_type=str(c[2]),
                group_id_token=c[3],
                expires_at=datetime.fromisoformat(c[4]) if c[4] else None,
            )
        )
    charger.local_list_version = max(charger.local_list_version, int(args["version"]))


def _encode(code: Code) -> list[Any]:
    return [base64.b64encode(code[0]).decode(), code[1]]


def _decode(encoded: list[Any]) -> Code:
    return base64.b64decode(encoded[0]), int(encoded[1])
