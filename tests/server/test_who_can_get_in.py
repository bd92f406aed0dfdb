"""The services behind the portal's Who can get in page: the charger's owner, the phones
holding a Bluetooth credential (as the charger reports them over OCPP) and the people whose
keypad PIN opens the charger; each for exactly the people the permission table allows."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from evaccess.domain.access import MemberAccess
from evaccess.domain.errors import InvalidInput, NotFound, PermissionDenied
from evaccess.protocol.ocpp_components import SecurityEventType
from evaccess.server.context import Context
from evaccess.server.db.models import OutboxCommand, PhoneCredential
from evaccess.server.services import (
    bluetooth_pins,
    chargers,
    grants,
    keypad_pins,
    organisations,
    outbox,
    transfers,
)
from evaccess.server.services.ocpp_backend import DbOcppBackend
from tests.conftest import Canaries
from tests.server.support import World, build_world

PHONE_A = "a1b2c3d4e5f60718293a4b5c6d7e8f90"
PHONE_B = "0f1e2d3c4b5a69788796a5b4c3d2e1f0"
OWNER_PIN, MEMBER_PIN = "6083", "7302"


@pytest.fixture
async def world(ctx: Context) -> World:
    return await build_world(ctx)


async def report(ctx: Context, world: World, event_type: str, tech_info: str | None) -> None:
    """The charger's SecurityEventNotification, as the OCPP endpoint hands it on."""
    await DbOcppBackend(ctx).security_event(
        world.chargers["wallbox"].serial,
        event_type=event_type,
        at=ctx.clock.now(),
        tech_info=tech_info,
    )


async def test_a_phone_the_charger_reports_is_listed_until_it_is_forgotten(ctx, world):
    charger = world.chargers["wallbox"]
    issued = SecurityEventType.BLUETOOTH_CREDENTIAL_ISSUED
    await report(ctx, world, issued, f"phone_id={PHONE_A}")
    await report(ctx, world, issued, f"phone_id={PHONE_A}")  # a resend: one phone still
    ctx.clock.advance(60)
    await report(ctx, world, issued, f"phone_id={PHONE_B}")
    await report(ctx, world, issued, "phone_id=not hex at all")  # ignored
    await report(ctx, world, issued, None)
    for who in ("owner", "service"):
        listed = await bluetooth_pins.phones(ctx, world.actor(who), charger.id)
        assert [p.phone_id for p in listed] == [PHONE_A, PHONE_B], who
        assert [p.since for p in listed] == [
            ctx.clock.now() - timedelta(seconds=60),
            ctx.clock.now(),
        ]
        assert all(p.email is None for p in listed)
    for who in ("invited", "admin", "super_admin"):
        with pytest.raises(PermissionDenied):
            await bluetooth_pins.phones(ctx, world.actor(who), charger.id)
    for who in ("member", "stranger", "other_admin"):
        with pytest.raises(NotFound):
            await bluetooth_pins.phones(ctx, world.actor(who), charger.id)

    # The owner forgets one phone: the server lists it no more, the charger is told.
    await bluetooth_pins.revoke_phones(ctx, world.actor("owner"), charger.id, PHONE_A)
    listed = await bluetooth_pins.phones(ctx, world.actor("owner"), charger.id)
    assert [p.phone_id for p in listed] == [PHONE_B]
    async with ctx.db.read() as session:
        commands = await outbox.open_commands(session, charger.id)
    revokes = [c for c in commands if c.kind == outbox.CommandKind.REVOKE_CREDENTIALS]
    assert [outbox.arguments(c).get("phone_id") for c in revokes] == [PHONE_A]

    # The charger reports the other one revoked (every phone, say, from its own menu).
    await report(ctx, world, SecurityEventType.BLUETOOTH_CREDENTIAL_REVOKED, "count=1")
    assert await bluetooth_pins.phones(ctx, world.actor("owner"), charger.id) == []
    # Paired again: listed again, as a new credential.
    await report(ctx, world, issued, f"phone_id={PHONE_B}")
    listed = await bluetooth_pins.phones(ctx, world.actor("owner"), charger.id)
    assert [p.phone_id for p in listed] == [PHONE_B]
    await report(ctx, world, SecurityEventType.BLUETOOTH_CREDENTIAL_REVOKED, f"phone_id={PHONE_B}")
    assert await bluetooth_pins.phones(ctx, world.actor("owner"), charger.id) == []
    async with ctx.db.read() as session:
        rows = (await session.scalars(select(PhoneCredential))).all()
    assert len(rows) == 3 and all(r.revoked_at is not None for r in rows)


async def test_a_reported_phone_belongs_to_the_ownership_and_ends_with_it(ctx, world):
    charger = world.chargers["wallbox"]
    issued = SecurityEventType.BLUETOOTH_CREDENTIAL_ISSUED
    await report(ctx, world, issued, f"phone_id={PHONE_A}")
    offer = await transfers.start_transfer(
        ctx, world.actor("owner"), charger.id, world.users["stranger"].email
    )
    await transfers.accept_transfer(ctx, world.actor("stranger"), offer.id)
    assert await bluetooth_pins.phones(ctx, world.actor("stranger"), charger.id) == []


async def test_revoking_every_phone_ends_every_listed_phone(ctx, world):
    charger = world.chargers["wallbox"]
    for phone in (PHONE_A, PHONE_B):
        await report(ctx, world, SecurityEventType.BLUETOOTH_CREDENTIAL_ISSUED, f"phone_id={phone}")
    await bluetooth_pins.revoke_phones(ctx, world.actor("service"), charger.id, None)
    assert await bluetooth_pins.phones(ctx, world.actor("owner"), charger.id) == []
    with pytest.raises(InvalidInput):
        await bluetooth_pins.revoke_phones(ctx, world.actor("owner"), charger.id, "x" * 65)
    async with ctx.db.read() as session:
        kinds = (await session.scalars(select(OutboxCommand.kind))).all()
    assert outbox.CommandKind.REVOKE_CREDENTIALS in kinds


async def test_the_owner_is_shown_to_whoever_sees_the_charger(ctx, world):
    charger = world.chargers["wallbox"]
    for who in ("owner", "invited", "service", "admin", "super_admin"):
        owner = await chargers.owner_of(ctx, world.actor(who), charger.id)
        assert owner is not None and owner.email == world.users["owner"].email, who
    with pytest.raises(NotFound):
        await chargers.owner_of(ctx, world.actor("stranger"), charger.id)
    await transfers.release(ctx, world.actor("owner"), charger.id)
    assert await chargers.owner_of(ctx, world.actor("super_admin"), charger.id) is None


async def test_keypad_holders_are_who_the_keypad_lets_in_without_their_pins(
    ctx, world, canaries: Canaries
):
    canaries.add(OWNER_PIN, MEMBER_PIN)
    assert world.org is not None
    charger = world.chargers["old"]  # a Commander 2: it has a keypad
    owner, member = world.actor("owner"), world.actor("member")

    async def holders(who: str = "owner") -> dict[str, tuple[str, ...]]:
        found = await keypad_pins.holders(ctx, world.actor(who), charger.id)
        assert all(OWNER_PIN not in repr(h) and MEMBER_PIN not in repr(h) for h in found)
        return {h.email: h.reasons for h in found}

    assert await holders() == {}
    await keypad_pins.set_pin(ctx, owner, world.org.id, owner.user_id, OWNER_PIN)
    await keypad_pins.set_pin(ctx, member, world.org.id, member.user_id, MEMBER_PIN)
    # The member holds a PIN of the organisation, but the charger is not assigned to them.
    assert await holders() == {"owner@example.com": ("owner",)}
    await keypad_pins.set_personal_pin(ctx, owner, None)
    assert await holders() == {"owner@example.com": ("owner", "personal")}
    # Every member of the organisation may use every charger of it: the member is let in.
    await organisations.set_member_access(
        ctx, world.actor("super_admin"), world.org.id, MemberAccess.ALL
    )
    assert await holders("admin") == {
        "member@example.com": ("member",),
        "owner@example.com": ("member", "owner", "personal"),
    }
    await organisations.set_member_access(
        ctx, world.actor("super_admin"), world.org.id, MemberAccess.ASSIGNED
    )
    await grants.assign(ctx, world.actor("super_admin"), charger.id, member.user_id)
    assert (await holders("super_admin"))["member@example.com"] == ("user",)
    # What the keypad really does agrees.
    assert await keypad_pins.resolve(ctx, charger.id, MEMBER_PIN) == member.user_id
    assert await keypad_pins.resolve(ctx, charger.id, OWNER_PIN) == owner.user_id

    for who in ("invited", "service"):
        with pytest.raises(PermissionDenied):
            await holders(who)
    with pytest.raises(NotFound):
        await holders("stranger")
    # A charger without a keypad has nobody.
    assert await keypad_pins.holders(ctx, owner, world.chargers["wallbox"].id) == []
