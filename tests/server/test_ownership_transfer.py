"""Ownership transfer, release and expiring service access, at the service level: every
rule of the handover (one transaction: new owner, everything of the old ownership revoked,
local list replaced in full, phones revoked, PIN rotated or the Zaptec warning recorded)."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from sqlalchemy import select

from evaccess.domain.access import SERVICE_ACCESS_TTL, ChargerAction, GrantKind, Role
from evaccess.domain.bluetooth_pin import PinStatus
from evaccess.domain.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from evaccess.domain.ownership_transfer import TRANSFER_TTL, TransferState
from evaccess.server.context import Context
from evaccess.server.db.models import (
    AuditRecord,
    Grant,
    Invitation,
    Notification,
    OutboxCommand,
    Ownership,
    Transaction,
)
from evaccess.server.services import (
    bluetooth_pins,
    grants,
    invitations,
    keypad_pins,
    organisations,
    ownership,
    transactions,
    transfers,
)
from evaccess.server.services.bluetooth_pins import NewOwnerPin
from evaccess.server.services.relations import charger_for
from tests.conftest import Canaries, ManualClock
from tests.server.support import World, build_world, confirm_pin_push, share


@pytest.fixture
async def world(ctx: Context) -> World:
    return await build_world(ctx)


def cid(world: World, key: str) -> str:
    return world.chargers[key].id


async def owner_of(ctx: Context, charger_id: str) -> str | None:
    async with ctx.db.read() as session:
        owned = await ownership.current(session, charger_id)
        return owned.owner_id if owned else None


async def commands(ctx: Context, charger_id: str) -> list[OutboxCommand]:
    async with ctx.db.read() as session:
        return list(
            (
                await session.scalars(
                    select(OutboxCommand)
                    .where(OutboxCommand.charger_id == charger_id)
                    .order_by(OutboxCommand.created_at, OutboxCommand.id)
                )
            ).all()
        )


async def active_grants(ctx: Context, charger_id: str) -> list[tuple[str, str]]:
    async with ctx.db.read() as session:
        rows = await session.execute(
            select(Grant.user_id, Grant.kind).where(
                Grant.charger_id == charger_id, Grant.revoked_at.is_(None)
            )
        )
        return sorted((u, k) for u, k in rows.all())


async def transfer_to(world: World, key: str, person: str) -> transfers.Accepted:
    started = await transfers.start_transfer(
        world.ctx, world.actor("owner"), cid(world, key), world.users[person].email
    )
    return await transfers.accept_transfer(world.ctx, world.actor(person), started.id)


# --- the transfer lifecycle ----------------------------------------------------------------


async def test_the_owner_keeps_full_access_until_the_recipient_accepts(
    ctx: Context, world: World
) -> None:
    started = await transfers.start_transfer(
        ctx, world.actor("owner"), cid(world, "wallbox"), "Stranger@Example.com"
    )
    assert (started.state, started.to_email) == (TransferState.OPEN, "stranger@example.com")
    assert started.expires_at == ctx.clock.now() + TRANSFER_TTL
    assert await owner_of(ctx, cid(world, "wallbox")) == world.users["owner"].id
    await bluetooth_pins.reveal(ctx, world.actor("owner"), cid(world, "wallbox"))
    await bluetooth_pins.reveal(ctx, world.actor("invited"), cid(world, "wallbox"))
    with pytest.raises(NotFound):  # the recipient has nothing yet
        await bluetooth_pins.reveal(ctx, world.actor("stranger"), cid(world, "wallbox"))
    [listed] = await transfers.list_transfers(ctx, world.actor("stranger"))
    assert (listed.id, listed.serial, listed.from_email) == (
        started.id,
        "WB-100001",
        "owner@example.com",
    )
    assert [t.id for t in await transfers.list_transfers(ctx, world.actor("owner"))] == [started.id]
    assert await transfers.list_transfers(ctx, world.actor("invited")) == []


async def test_acceptance_hands_over_and_revokes_everything_of_the_old_ownership(
    ctx: Context, world: World
) -> None:
    wallbox = cid(world, "wallbox")
    await invitations.invite(
        ctx, world.actor("owner"), wallbox, email="later@example.com", kind=GrantKind.USER
    )
    await confirm_pin_push(ctx, "WB-100001")  # the charger holds its first PIN
    old_pin = (await bluetooth_pins.reveal(ctx, world.actor("owner"), wallbox)).pin
    accepted = await transfer_to(world, "wallbox", "stranger")

    assert accepted.transfer.state is TransferState.ACCEPTED
    assert await owner_of(ctx, wallbox) == world.users["stranger"].id
    assert await active_grants(ctx, wallbox) == [(world.users["stranger"].id, "owner")]
    assert accepted.handover.revoked["grants"] == 3  # owner, invited, service
    assert accepted.handover.revoked["invitations"] == 1
    async with ctx.db.read() as session:
        open_invitations = await session.scalar(
            select(Invitation.id).where(
                Invitation.charger_id == wallbox,
                Invitation.revoked_at.is_(None),
                Invitation.accepted_at.is_(None),
            )
        )
        ownerships = (
            await session.scalars(select(Ownership).where(Ownership.charger_id == wallbox))
        ).all()
    assert open_invitations is None
    assert sorted(o.ended_at is None for o in ownerships) == [False, True]
    for name in ("owner", "invited", "service"):
        with pytest.raises(NotFound):
            await bluetooth_pins.reveal(ctx, world.actor(name), wallbox)
        with pytest.raises(NotFound):
            await bluetooth_pins.change(ctx, world.actor(name), wallbox, None)

    # The charger forgets every phone and gets a new PIN, active once it confirms.
    kinds = [(c.kind, json.loads(c.arguments)) for c in await commands(ctx, wallbox)]
    assert ("revoke_credentials", {"phone_id": None}) in kinds
    assert accepted.handover.bluetooth_pin is NewOwnerPin.ROTATED
    assert accepted.handover.warning is None
    state = await bluetooth_pins.state(ctx, world.actor("stranger"), wallbox)
    assert state.status is PinStatus.CHANGING
    assert await confirm_pin_push(ctx, "WB-100001") is not None
    new_pin = (await bluetooth_pins.reveal(ctx, world.actor("stranger"), wallbox)).pin
    assert new_pin != old_pin

    async with ctx.db.read() as session:
        record = await session.scalar(
            select(AuditRecord).where(AuditRecord.action == "ownership.handed_over")
        )
    assert record is not None and record.subject_id == world.users["stranger"].id
    details = json.loads(record.details)
    assert details["reason"] == "transfer" and details["bluetooth_pin"] == "rotated"
    assert details["previous_owner"] == world.users["owner"].id


async def test_an_unchangeable_pin_is_kept_and_the_new_owner_is_warned_on_record(
    ctx: Context, world: World
) -> None:
    accepted = await transfer_to(world, "zaptec", "stranger")
    assert accepted.handover.bluetooth_pin is NewOwnerPin.UNCHANGEABLE
    assert accepted.handover.warning is not None
    assert "may know it" in accepted.handover.warning
    state = await bluetooth_pins.state(ctx, world.actor("stranger"), cid(world, "zaptec"))
    assert state.status is not PinStatus.CHANGING
    async with ctx.db.read() as session:
        warned = await session.scalar(
            select(AuditRecord).where(AuditRecord.action == "ownership.unchangeable_pin_warned")
        )
    assert warned is not None and warned.subject_id == world.users["stranger"].id


async def test_the_owner_cancels_before_acceptance_and_nothing_changes(
    ctx: Context, world: World
) -> None:
    started = await transfers.start_transfer(
        ctx, world.actor("owner"), cid(world, "wallbox"), world.users["stranger"].email
    )
    with pytest.raises(PermissionDenied):  # the recipient accepts or lets it lapse
        await transfers.cancel_transfer(ctx, world.actor("stranger"), started.id)
    with pytest.raises(PermissionDenied):  # the owner cannot accept on the recipient's behalf
        await transfers.accept_transfer(ctx, world.actor("owner"), started.id)
    cancelled = await transfers.cancel_transfer(ctx, world.actor("owner"), started.id)
    assert cancelled.state is TransferState.CANCELLED
    with pytest.raises(Conflict) as caught:
        await transfers.accept_transfer(ctx, world.actor("stranger"), started.id)
    assert caught.value.code == "transfer_cancelled"
    assert await owner_of(ctx, cid(world, "wallbox")) == world.users["owner"].id
    assert len(await active_grants(ctx, cid(world, "wallbox"))) == 3


async def test_an_open_transfer_expires_after_14_days(ctx: Context, world: World) -> None:
    started = await transfers.start_transfer(
        ctx, world.actor("owner"), cid(world, "wallbox"), world.users["stranger"].email
    )
    ctx.clock.advance(TRANSFER_TTL.total_seconds())  # type: ignore[attr-defined]
    with pytest.raises(Conflict) as caught:
        await transfers.accept_transfer(ctx, world.actor("stranger"), started.id)
    assert caught.value.code == "transfer_expired"
    [listed] = await transfers.list_transfers(ctx, world.actor("owner"))
    assert listed.state is TransferState.EXPIRED
    assert await transfers.expire_transfers(ctx) == 1
    assert await transfers.expire_transfers(ctx) == 0
    # The charger can be offered again.
    again = await transfers.start_transfer(
        ctx, world.actor("owner"), cid(world, "wallbox"), world.users["stranger"].email
    )
    assert again.state is TransferState.OPEN


async def test_who_may_start_a_transfer_and_to_whom(ctx: Context, world: World) -> None:
    wallbox = cid(world, "wallbox")
    with pytest.raises(PermissionDenied):
        await transfers.start_transfer(ctx, world.actor("invited"), wallbox, "x@example.com")
    with pytest.raises(PermissionDenied):  # an org super-admin does not own it
        await transfers.start_transfer(ctx, world.actor("super_admin"), wallbox, "x@example.com")
    with pytest.raises(NotFound):
        await transfers.start_transfer(ctx, world.actor("stranger"), wallbox, "x@example.com")
    with pytest.raises(InvalidInput) as self_transfer:
        await transfers.start_transfer(ctx, world.actor("owner"), wallbox, "OWNER@example.com")
    assert self_transfer.value.code == "transfer_to_self"
    with pytest.raises(InvalidInput):
        await transfers.start_transfer(ctx, world.actor("owner"), wallbox, "not an address")
    await transfers.start_transfer(ctx, world.actor("owner"), wallbox, "x@example.com")
    with pytest.raises(Conflict) as pending:
        await transfers.start_transfer(ctx, world.actor("owner"), wallbox, "y@example.com")
    assert pending.value.code == "transfer_pending"
    [mine] = await transfers.list_transfers(ctx, world.actor("owner"))
    with pytest.raises(NotFound):  # not the recipient: the transfer does not exist for them
        await transfers.accept_transfer(ctx, world.actor("stranger"), mine.id)


async def test_inviting_as_owner_points_at_the_transfer_command(ctx: Context, world: World) -> None:
    with pytest.raises(InvalidInput) as caught:
        await invitations.invite(
            ctx, world.actor("owner"), cid(world, "wallbox"), email="x@example.com",
            kind=GrantKind.OWNER,
        )  # fmt: skip
    assert caught.value.code == "ownership_not_invited"
    assert "evaccess app transfer start" in caught.value.message


# --- release ----------------------------------------------------------------------------------


async def test_release_revokes_the_same_and_leaves_the_charger_without_owner(
    ctx: Context, world: World
) -> None:
    wallbox = cid(world, "wallbox")
    await transfers.start_transfer(ctx, world.actor("owner"), wallbox, "x@example.com")
    with pytest.raises(PermissionDenied):
        await transfers.release(ctx, world.actor("invited"), wallbox)
    released = await transfers.release(ctx, world.actor("owner"), wallbox)
    assert (released.new_owner_id, released.previous_owner_id) == (None, world.users["owner"].id)
    assert released.revoked["grants"] == 3 and released.revoked["transfers"] == 1
    assert released.bluetooth_pin is NewOwnerPin.ROTATED and released.warning is None
    assert await owner_of(ctx, wallbox) is None
    assert await active_grants(ctx, wallbox) == []
    for name in ("owner", "invited", "service"):
        with pytest.raises(NotFound):
            await bluetooth_pins.reveal(ctx, world.actor(name), wallbox)
    kinds = [c.kind for c in await commands(ctx, wallbox) if c.completed_at is None]
    assert "revoke_credentials" in kinds and "set_bluetooth_pin" in kinds


# --- keypad, online and offline --------------------------------------------------------------


async def test_keypad_pins_of_the_old_ownership_stop_working_online_and_offline(
    ctx: Context, world: World, canaries: Canaries
) -> None:
    assert world.org is not None
    old = cid(world, "old")
    canaries.add("4817", "5928")
    await keypad_pins.set_personal_pin(ctx, world.actor("owner"), "4817")
    await organisations.update_settings(
        ctx, world.actor("super_admin"), world.org.id, offline_keypad=True
    )
    member = world.users["member"].id
    await grants.assign(ctx, world.actor("super_admin"), old, member)
    await keypad_pins.set_pin(ctx, world.actor("admin"), world.org.id, member, "5928")
    assert await keypad_pins.resolve(ctx, old, "4817") == world.users["owner"].id
    assert await keypad_pins.resolve(ctx, old, "5928") == member

    await transfer_to(world, "old", "stranger")

    assert await keypad_pins.resolve(ctx, old, "4817") is None
    assert await keypad_pins.resolve(ctx, old, "5928") is None
    lists = [
        json.loads(c.arguments)
        for c in await commands(ctx, old)
        if c.kind == "send_local_list" and c.completed_at is None
    ]
    assert len(lists) == 1
    assert lists[0]["full"] is True and lists[0]["set"] == {}


# --- each ownership sees only its own period ---------------------------------------------------


async def test_sessions_and_reveals_of_one_ownership_are_invisible_to_the_other(
    ctx: Context, world: World
) -> None:
    wallbox = cid(world, "wallbox")
    async with ctx.db.transaction() as session:
        session.add(
            Transaction(
                charger_id=wallbox,
                transaction_id="before",
                user_id=world.users["invited"].id,
                started_at=ctx.clock.now(),
            )
        )
    await bluetooth_pins.reveal(ctx, world.actor("owner"), wallbox)
    ctx.clock.advance(60)  # type: ignore[attr-defined]
    await transfer_to(world, "wallbox", "stranger")
    ctx.clock.advance(60)  # type: ignore[attr-defined]
    async with ctx.db.transaction() as session:
        session.add(
            Transaction(
                charger_id=wallbox,
                transaction_id="after",
                user_id=world.users["stranger"].id,
                started_at=ctx.clock.now(),
            )
        )
    await bluetooth_pins.reveal(ctx, world.actor("stranger"), wallbox)

    seen = await transactions.for_charger(ctx, world.actor("stranger"), wallbox)
    assert [t.transaction_id for t in seen] == ["after"]
    history = await bluetooth_pins.reveal_history(ctx, world.actor("stranger"), wallbox)
    assert [e.actor_email for e in history] == ["stranger@example.com"]
    # The previous owner and their users no longer see the charger at all.
    for name in ("owner", "invited"):
        with pytest.raises(NotFound):
            await transactions.for_charger(ctx, world.actor(name), wallbox)
        with pytest.raises(NotFound):
            await bluetooth_pins.reveal_history(ctx, world.actor(name), wallbox)
    # Their own sessions stay theirs; the new owner's are not among them.
    mine = await transactions.for_user(ctx, world.actor("invited"))
    assert [t.transaction_id for t in mine] == ["before"]
    # The organisation's admins see every session, of every ownership.
    admin = await transactions.for_charger(ctx, world.actor("admin"), wallbox)
    assert sorted(t.transaction_id for t in admin) == ["after", "before"]


# --- service access expires ----------------------------------------------------------------------


async def service_grant(ctx: Context, world: World, key: str, person: str) -> Grant:
    async with ctx.db.read() as session:
        grant = await session.scalar(
            select(Grant).where(
                Grant.charger_id == cid(world, key),
                Grant.user_id == world.users[person].id,
                Grant.kind == GrantKind.SERVICE,
                Grant.revoked_at.is_(None),
            )
        )
    assert grant is not None
    return grant


async def test_service_access_lasts_14_days_by_default_and_is_then_refused(
    ctx: Context, world: World
) -> None:
    grant = await service_grant(ctx, world, "wallbox", "service")
    assert SERVICE_ACCESS_TTL == timedelta(days=14)
    assert grant.expires_at is not None
    assert grant.expires_at - ctx.clock.now() <= SERVICE_ACCESS_TTL
    await bluetooth_pins.reveal(ctx, world.actor("service"), cid(world, "wallbox"))
    ctx.clock.advance(SERVICE_ACCESS_TTL.total_seconds())  # type: ignore[attr-defined]
    with pytest.raises(NotFound):
        await bluetooth_pins.reveal(ctx, world.actor("service"), cid(world, "wallbox"))
    async with ctx.db.read() as session:
        with pytest.raises(NotFound):
            await charger_for(
                session, world.actor("service"), cid(world, "wallbox"),
                ChargerAction.VIEW,
                ctx.clock,
            )  # fmt: skip
    # An invited user's access does not expire.
    await bluetooth_pins.reveal(ctx, world.actor("invited"), cid(world, "wallbox"))


async def test_the_owner_extends_or_ends_service_access(ctx: Context, world: World) -> None:
    wallbox = cid(world, "wallbox")
    grant = await service_grant(ctx, world, "wallbox", "service")
    until = ctx.clock.now() + timedelta(days=30)
    with pytest.raises(PermissionDenied):
        await grants.extend_grant(ctx, world.actor("invited"), wallbox, grant.id, until)
    with pytest.raises(PermissionDenied):  # service cannot extend itself
        await grants.extend_grant(ctx, world.actor("service"), wallbox, grant.id, until)
    extended = await grants.extend_grant(ctx, world.actor("owner"), wallbox, grant.id, until)
    assert (extended.grant.expires_at, extended.email) == (until, "service@example.com")
    with pytest.raises(InvalidInput):
        await grants.extend_grant(
            ctx, world.actor("owner"), wallbox, grant.id, ctx.clock.now() - timedelta(days=1)
        )
    ctx.clock.advance(timedelta(days=20).total_seconds())  # type: ignore[attr-defined]
    await bluetooth_pins.reveal(ctx, world.actor("service"), wallbox)
    user_grant = next(
        g.grant for g in await grants.list_grants(ctx, world.actor("owner"), wallbox)
        if g.grant.kind == GrantKind.USER
    )  # fmt: skip
    with pytest.raises(Conflict) as not_service:
        await grants.extend_grant(ctx, world.actor("owner"), wallbox, user_grant.id, until)
    assert not_service.value.code == "not_service_grant"
    await grants.revoke_grant(ctx, world.actor("owner"), wallbox, grant.id)
    with pytest.raises(NotFound):
        await bluetooth_pins.reveal(ctx, world.actor("service"), wallbox)
    with pytest.raises(NotFound):  # ended: nothing to extend
        await grants.extend_grant(ctx, world.actor("owner"), wallbox, grant.id, until)


async def test_an_expired_service_grant_is_refused_at_the_keypad(
    ctx: Context, world: World, canaries: Canaries
) -> None:
    assert world.org is not None
    await organisations.add_member(
        ctx, world.actor("super_admin"), world.org.id, "service@example.com",
        Role.USER,
    )  # fmt: skip
    canaries.add("3916")
    await keypad_pins.set_pin(
        ctx, world.actor("admin"), world.org.id, world.users["service"].id, "3916"
    )
    old = cid(world, "old")
    assert await keypad_pins.resolve(ctx, old, "3916") == world.users["service"].id
    ctx.clock.advance(SERVICE_ACCESS_TTL.total_seconds())  # type: ignore[attr-defined]
    assert await keypad_pins.resolve(ctx, old, "3916") is None
    # Invited again, with the default: a fresh 14 days from acceptance.
    await share(world, "old", "service", GrantKind.SERVICE)
    assert await keypad_pins.resolve(ctx, old, "3916") == world.users["service"].id


async def test_the_people_concerned_are_told_of_each_step_of_a_transfer(
    ctx: Context, world: World, clock: ManualClock
) -> None:
    async def subjects(email: str) -> list[str]:
        async with ctx.db.read() as session:
            rows = await session.scalars(
                select(Notification.subject)
                .where(Notification.email == email)
                .order_by(Notification.created_at, Notification.id)
            )
            return list(rows.all())

    offered = await transfers.start_transfer(
        ctx, world.actor("owner"), cid(world, "wallbox"), "Buyer@Example.com"
    )
    clock.advance(60)  # the frozen clock stamps both alike otherwise: order by time
    await transfers.cancel_transfer(ctx, world.actor("owner"), offered.id)
    assert await subjects("buyer@example.com") == [
        "You are offered charger WB-100001",
        "The offer of charger WB-100001 was withdrawn",
    ]
    await transfer_to(world, "wallbox", "stranger")
    assert await subjects("stranger@example.com") == ["You are offered charger WB-100001"]
    assert await subjects("owner@example.com") == ["Charger WB-100001 has a new owner"]
