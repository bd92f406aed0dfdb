"""RFID cards and other OCPP tokens of users: registry, and the answers chargers get.

A card is a token of a user like a keypad PIN (``keypad_pins``), and is treated alike:
stored only as HMAC(pepper, tree ‖ number) under a unique index of its organisation tree,
valid only at chargers its user may use (the keypad's ``USE_KEYPAD`` check), throttled by
the same per-charger keypad throttle. A card number is no secret (it is printed in every
reader's log) but it is a cloneable credential: a database dump must not list working
numbers, and people see only its last characters (``domain.tokens.mask``).

Revoking a card (block, delete) queues ClearCache to the chargers that may hold it in
their authorization cache; every answer bounds that cache (``cacheExpiryDateTime``).
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from evaccess.domain.access import (
    ChargerAction,
    MemberAccess,
    OrgAction,
    allowed_bases,
)
from evaccess.domain.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from evaccess.domain.tokens import (
    Answer,
    Purpose,
    TokenFacts,
    TokenStatus,
    TokenType,
    cache_expiry,
    check_group,
    check_label,
    decide,
    effective_status,
    mask,
    normalise,
)
from evaccess.server.audit import AuditEntry
from evaccess.server.context import Context
from evaccess.server.db.models import (
    Charger,
    Grant,
    IdToken,
    Membership,
    Organisation,
    SecurityEvent,
)
from evaccess.server.ocpp import backend as port
from evaccess.server.services import local_lists, outbox
from evaccess.server.services.relations import (
    Actor,
    active_grant,
    ancestors,
    charger_bases,
    require_credential_manager,
    require_org_action,
)

CARD_TAKEN = "this card is already registered in the organisation"


def token_digest(ctx: Context, root_id: str, normalised: str) -> bytes:
    """HMAC-SHA256(keypad pepper, tree ‖ number): the type is left out, so that an untyped
    1.6J idTag is found in one lookup, and a number is unique across types."""
    message = f"evaccess/id-token/v1|{root_id}|{normalised}".encode()
    return hmac.new(ctx.keys.load().keypad_pepper, message, hashlib.sha256).digest()


@dataclass(frozen=True, kw_only=True, slots=True)
class CardView:
    """A card as people see it: never its number, only ``masked``."""

    id: str
    organisation_id: str
    user_id: str
    token_type: TokenType
    masked: str
    status: TokenStatus
    effective_status: Answer
    expires_at: datetime | None
    group_id_token: str | None
    label: str | None
    created_at: datetime

    @classmethod
    def of(cls, row: IdToken, now: datetime) -> CardView:
        status = TokenStatus(row.status)
        return cls(
            id=row.id,
            organisation_id=row.organisation_id,
            user_id=row.user_id,
            token_type=TokenType(row.token_type),
            masked=mask(row.last_chars),
            status=status,
            effective_status=effective_status(status, row.expires_at, now),
            expires_at=row.expires_at,
            group_id_token=row.group_id_token,
            label=row.label,
            created_at=row.created_at,
        )


async def _require_manager(
    session: AsyncSession, actor: Actor, org_id: str, user_id: str
) -> Organisation:
    return await require_credential_manager(
        session,
        actor,
        org_id,
        user_id,
        refusal="you may not manage the cards of someone who outranks you",
    )


async def add_card(
    ctx: Context,
    actor: Actor,
    org_id: str,
    *,
    user_id: str,
    token_type: TokenType,
    number: str,
    group_id_token: str | None = None,
    label: str | None = None,
    expires_at: datetime | None = None,
) -> CardView:
    """Register a card of ``user_id`` in the organisation (unique in its tree)."""
    normalised = normalise(token_type, number)
    group, label = check_group(group_id_token), check_label(label)
    now = ctx.clock.now()
    try:
        async with ctx.db.transaction() as session:
            org = await _require_manager(session, actor, org_id, user_id)
            row = IdToken(
                organisation_id=org.id,
                root_id=org.root_id,
                user_id=user_id,
                token_type=token_type.value,
                digest=token_digest(ctx, org.root_id, normalised),
                last_chars=normalised[-4:],
                status=TokenStatus.ACCEPTED.value,
                expires_at=expires_at,
                group_id_token=group,
                label=label,
                created_by=actor.user_id,
                created_at=now,
                updated_at=now,
            )
            session.add(row)
            await session.flush()
            pokes: list[str] = []
            if await _offline_tree(session, org.root_id):
                # sealed for the local lists of the tree's opted-in chargers (docs/security.md)
                sealed = ctx.vault.seal(
                    local_lists.card_subject(org.root_id, row.id),
                    normalised,
                    purpose=local_lists.CARD,
                )
                row.sealed_value, row.sealed_key_version = sealed.ciphertext, sealed.key_version
                await session.flush()
                pokes = await local_lists.sync_tree(session, ctx, org.root_id)
            await ctx.audit.append(
                session,
                AuditEntry(
                    action="card.added",
                    actor_id=actor.user_id,
                    organisation_id=org.id,
                    subject_id=user_id,
                    request_id=actor.request_id,
                    details={"card_id": row.id, "type": token_type.value},
                ),
            )
            view = CardView.of(row, now)
    except IntegrityError:
        raise Conflict(CARD_TAKEN, code="card_taken") from None
    _poke(ctx, pokes)
    return view


async def _offline_tree(session: AsyncSession, root_id: str) -> bool:
    """Whether an organisation of the tree opted into offline use (local lists)."""
    found = await session.scalar(
        select(Organisation.id)
        .where(Organisation.root_id == root_id, Organisation.offline_keypad.is_(True))
        .limit(1)
    )
    return found is not None


async def _sync_lists(session: AsyncSession, ctx: Context, card: IdToken) -> list[str]:
    if card.sealed_value is None:
        return []
    await session.flush()
    return await local_lists.sync_tree(session, ctx, card.root_id)


async def list_cards(
    ctx: Context, actor: Actor, org_id: str, *, user_id: str | None = None
) -> list[CardView]:
    """The organisation's cards (admins), or the caller's own (``user_id`` the caller's)."""
    async with ctx.db.read() as session:
        if user_id is None or user_id != actor.user_id:
            await require_org_action(session, actor, org_id, OrgAction.VIEW_MEMBERS)
        else:
            await require_org_action(session, actor, org_id, OrgAction.VIEW)
        query = select(IdToken).where(IdToken.organisation_id == org_id)
        if user_id is not None:
            query = query.where(IdToken.user_id == user_id)
        rows = (await session.scalars(query.order_by(IdToken.created_at, IdToken.id))).all()
    now = ctx.clock.now()
    return [CardView.of(row, now) for row in rows]


async def _card_for(session: AsyncSession, actor: Actor, card_id: str) -> IdToken:
    card = await session.get(IdToken, card_id)
    if card is None:
        raise NotFound("no such card")
    try:
        await _require_manager(session, actor, card.organisation_id, card.user_id)
    except (NotFound, PermissionDenied):
        raise NotFound("no such card") from None  # a card one may not manage is not there
    return card


async def update_card(
    ctx: Context,
    actor: Actor,
    card_id: str,
    *,
    status: TokenStatus | None = None,
    expires_at: datetime | None = None,
    clear_expiry: bool = False,
    label: str | None = None,
    group_id_token: str | None = None,
) -> CardView:
    """Block or unblock, change expiry, label or group; a change that can only narrow
    access (block, an earlier expiry, another group) empties the chargers' caches."""
    label = check_label(label)
    group = check_group(group_id_token)
    now = ctx.clock.now()
    async with ctx.db.transaction() as session:
        card = await _card_for(session, actor, card_id)
        narrowed = False
        if status is not None and status.value != card.status:
            narrowed = status is TokenStatus.BLOCKED
            card.status = status.value
        if clear_expiry:
            card.expires_at = None
        elif expires_at is not None and expires_at != card.expires_at:
            narrowed = narrowed or card.expires_at is None or expires_at < card.expires_at
            card.expires_at = expires_at
        if label is not None:
            card.label = label
        if group is not None and group != card.group_id_token:
            narrowed = narrowed or card.group_id_token is not None
            card.group_id_token = group
        card.updated_at = now
        pokes = await clear_caches(session, ctx, [card]) if narrowed else []
        pokes += await _sync_lists(session, ctx, card)
        await ctx.audit.append(
            session,
            AuditEntry(
                action="card.updated",
                actor_id=actor.user_id,
                organisation_id=card.organisation_id,
                subject_id=card.user_id,
                request_id=actor.request_id,
                details={"card_id": card.id, "status": card.status, "narrowed": narrowed},
            ),
        )
        view = CardView.of(card, now)
    _poke(ctx, pokes)
    return view


async def delete_card(ctx: Context, actor: Actor, card_id: str) -> None:
    async with ctx.db.transaction() as session:
        card = await _card_for(session, actor, card_id)
        pokes = await clear_caches(session, ctx, [card])
        await session.delete(card)
        pokes += await _sync_lists(session, ctx, card)
        await ctx.audit.append(
            session,
            AuditEntry(
                action="card.deleted",
                actor_id=actor.user_id,
                organisation_id=card.organisation_id,
                subject_id=card.user_id,
                request_id=actor.request_id,
                details={"card_id": card.id},
            ),
        )
    _poke(ctx, pokes)


async def set_master_pass_group(
    ctx: Context, actor: Actor, org_id: str, group_id: str | None
) -> str | None:
    """The organisation's ``MasterPassGroupId`` (2.0.1 C16), or none; pushed to every
    charger of its tree (each gets the group nearest to it, ``master_pass_group_of``)."""
    group = check_group(group_id)
    async with ctx.db.transaction() as session:
        org = await require_org_action(session, actor, org_id, OrgAction.CHANGE_SETTINGS)
        changed = org.master_pass_group_id != group
        org.master_pass_group_id = group
        pokes: list[str] = []
        if changed:
            await session.flush()
            chargers = await session.scalars(
                select(Charger)
                .join(Organisation, Organisation.id == Charger.organisation_id)
                .where(Organisation.root_id == org.root_id)
            )
            for charger in chargers.all():
                await outbox.queue(
                    session, ctx, charger.id, outbox.CommandKind.SET_MASTER_PASS_GROUP
                )
                pokes.append(charger.serial)
        await ctx.audit.append(
            session,
            AuditEntry(
                action="organisation.master_pass_group",
                actor_id=actor.user_id,
                organisation_id=org.id,
                request_id=actor.request_id,
                details={"group": group},
            ),
        )
    _poke(ctx, pokes)
    return group


async def master_pass_group_of(session: AsyncSession, charger: Charger) -> str | None:
    """The ``MasterPassGroupId`` a charger holds: the nearest one of its organisation chain
    (the server's own answers honour every group of the chain)."""
    for org in await ancestors(session, charger.organisation_id):
        if org.master_pass_group_id is not None:
            return org.master_pass_group_id
    return None


def _poke(ctx: Context, serials: list[str]) -> None:
    for serial in dict.fromkeys(serials):
        ctx.notifier.poke(serial)


async def clear_caches(session: AsyncSession, ctx: Context, cards: list[IdToken]) -> list[str]:
    """Queue ClearCache to every charger of the cards' trees where their users may hold an
    answer in cache: granted chargers, and the chargers of organisations that let all
    members in. Returns the serials to poke after commit."""
    chargers: dict[str, Charger] = {}
    for card in cards:
        granted = select(Grant.charger_id).where(
            Grant.user_id == card.user_id, active_grant(ctx.clock)
        )
        member = await session.scalar(
            select(Membership.id)
            .join(Organisation, Organisation.id == Membership.organisation_id)
            .where(Membership.user_id == card.user_id, Organisation.root_id == card.root_id)
            .limit(1)
        )
        reasons: list[ColumnElement[bool]] = [Charger.id.in_(granted)]
        if member is not None:
            reasons.append(Organisation.member_access != MemberAccess.ASSIGNED.value)
        if card.group_id_token is not None:
            # a master pass may have been answered anywhere its group is the master group
            reasons.append(Organisation.master_pass_group_id == card.group_id_token)
        found = await session.scalars(
            select(Charger)
            .join(Organisation, Organisation.id == Charger.organisation_id)
            .where(Organisation.root_id == card.root_id, or_(*reasons))
        )
        chargers |= {c.id: c for c in found.all()}
    return await queue_clear_cache(session, ctx, list(chargers.values()))


async def queue_clear_cache(
    session: AsyncSession, ctx: Context, chargers: list[Charger]
) -> list[str]:
    for charger in chargers:
        await outbox.queue(session, ctx, charger.id, outbox.CommandKind.CLEAR_CACHE)
    return [c.serial for c in chargers]


async def access_revoked(
    session: AsyncSession, ctx: Context, charger: Charger, user_id: str
) -> bool:
    """After ``user_id`` lost access to ``charger``: if they hold a card in its tree, the
    charger's cache may still accept it, so queue ClearCache (``True``: poke the charger)."""
    org = await session.get_one(Organisation, charger.organisation_id)
    held = await session.scalar(
        select(IdToken.id)
        .where(IdToken.user_id == user_id, IdToken.root_id == org.root_id)
        .limit(1)
    )
    if held is None:
        return False
    await queue_clear_cache(session, ctx, [charger])
    return True


# --- answers to chargers -------------------------------------------------------------------

WIRE_TYPES = {t.value for t in TokenType}


async def resolve(
    ctx: Context,
    charger_id: str,
    id_token: str,
    token_type: str | None,
    purpose: Purpose,
    *,
    count_miss: bool = True,
) -> port.AuthorizeResult | None:
    """The answer for a card at ``charger_id`` (the row id), or ``None`` when no card of
    the charger's tree has this number. ``token_type`` None: an untyped 1.6J idTag.

    The keypad throttle of the charger applies: while locked, ``LockedOut`` before any
    lookup; an unknown number counts as a failure (``count_miss``: not when the caller
    goes on to try it as a keypad code, which counts it then)."""
    key = f"keypad:{charger_id}"
    await ctx.keypad_throttle.check(key)
    now = ctx.clock.now()
    async with ctx.db.read() as session:
        charger = await session.get(Charger, charger_id)
        card = None
        if charger is not None and (token_type is None or token_type in WIRE_TYPES):
            card = await _find(session, ctx, charger, id_token, token_type)
        if charger is None or card is None:
            found = None
        else:
            chain = await ancestors(session, charger.organisation_id)
            bases = await charger_bases(session, card.user_id, charger, ctx.clock)
            facts = TokenFacts(
                status=TokenStatus(card.status),
                expires_at=card.expires_at,
                allowed_here=bool(allowed_bases(ChargerAction.USE_KEYPAD, bases)),
                master_pass=card.group_id_token is not None
                and any(o.master_pass_group_id == card.group_id_token for o in chain),
            )
            found = (card, decide(facts, purpose, now))
    if found is None:
        if count_miss and await ctx.keypad_throttle.failure(key) is not None:
            await _record_lockout(ctx, charger_id)
        return None
    card, answer = found
    if answer is Answer.ACCEPTED:
        await ctx.keypad_throttle.success(key)
    return port.AuthorizeResult(
        accepted=answer is Answer.ACCEPTED,
        user_id=card.user_id if answer is Answer.ACCEPTED else None,
        status=answer.value,
        group_id_token=card.group_id_token,
        cache_expiry=cache_expiry(now, ctx.auth_cache_ttl_s, card.expires_at)
        if answer is Answer.ACCEPTED
        else None,
        token_type=card.token_type,
    )


async def _find(
    session: AsyncSession, ctx: Context, charger: Charger, id_token: str, token_type: str | None
) -> IdToken | None:
    org = await session.get_one(Organisation, charger.organisation_id)
    kinds = [TokenType(token_type)] if token_type is not None else list(TokenType)
    digests: set[bytes] = set()
    for kind in kinds:
        try:
            digests.add(token_digest(ctx, org.root_id, normalise(kind, id_token)))
        except InvalidInput:
            continue  # not a number of this kind: nothing to look up
    if not digests:
        return None
    card = await session.scalar(
        select(IdToken).where(IdToken.root_id == org.root_id, IdToken.digest.in_(digests))
    )
    if card is not None and token_type is not None and card.token_type != token_type:
        return None  # the same number registered as another kind of token
    return card


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
                event_type="evaccess.TokenLockout",
                at=now,
                received_at=now,
                tech_info=f"server-side token lockout for {int(retry or 0)} s",
            )
        )
