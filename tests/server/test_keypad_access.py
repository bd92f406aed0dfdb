"""Who a keypad lets in beyond per-charger grants: a charger owner's personal PIN space (no
organisation needed) and an organisation's member access policy ("all" members may use all
its chargers). Service level, then over real OCPP-J (Authorize and TransactionEvent)."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import pytest
from sqlalchemy import select
from websockets.asyncio.client import ClientConnection, connect

from evaccess.domain.access import MemberAccess, Role
from evaccess.domain.errors import NotFound, PermissionDenied, PinRejected
from evaccess.server.context import Context
from evaccess.server.db.models import AuditRecord, KeypadPin, Organisation, Transaction
from evaccess.server.ocpp.backend import SendLocalList
from evaccess.server.ocpp.server import serve_ocpp
from evaccess.server.services import accounts, keypad_pins, organisations
from evaccess.server.services.ocpp_backend import DbOcppBackend
from tests.conftest import Canaries
from tests.server.ocpp_boot import _accepted
from tests.server.support import PASSWORD, World, add_charger, build_world, client_for

HOME_PIN, MEMBER_PIN = "6083", "7302"


async def home_world(ctx: Context) -> World:
    """The usual world, plus ``home``: an account in no organisation that owns a Commander
    registered by Acme (its installer), with a keypad."""
    world = await build_world(ctx)
    world.users["home"] = await accounts.create_user(ctx, "home@example.com", PASSWORD)
    await add_charger(
        world,
        "home",
        serial="WB-700007",
        vendor="Wallbox",
        model="Commander 2",
        firmware="6.11.4",
        owner="home",
        keypad=True,
    )
    return world


@pytest.fixture
async def world(ctx: Context) -> World:
    return await home_world(ctx)


def user(world: World, name: str) -> str:
    return world.users[name].id


# --- the personal PIN space --------------------------------------------------------------------


async def test_an_owner_without_organisation_sets_a_personal_pin_that_opens_only_their_keypad(
    ctx: Context, world: World, canaries: Canaries
) -> None:
    canaries.add(HOME_PIN)
    result = await keypad_pins.set_personal_pin(ctx, world.actor("home"), HOME_PIN)
    assert (result.user_id, result.digits, result.generated_pin) == (user(world, "home"), 4, None)
    async with ctx.db.read() as session:
        row = await session.scalar(
            select(KeypadPin).where(KeypadPin.user_id == user(world, "home"))
        )
    assert row is not None
    assert (row.pin_space_id, row.owner_id, row.sealed_pin) == (None, user(world, "home"), None)
    assert row.digest == ctx.keypad_hasher.digest(f"owner:{user(world, 'home')}", HOME_PIN)

    assert await keypad_pins.resolve(ctx, world.chargers["home"].id, HOME_PIN) == user(
        world, "home"
    )
    assert await keypad_pins.resolve(ctx, world.chargers["old"].id, HOME_PIN) is None

    await keypad_pins.delete_personal_pin(ctx, world.actor("home"))
    assert await keypad_pins.resolve(ctx, world.chargers["home"].id, HOME_PIN) is None
    with pytest.raises(NotFound):
        await keypad_pins.delete_personal_pin(ctx, world.actor("home"))


async def test_only_charger_owners_have_a_personal_pin(ctx: Context, world: World) -> None:
    with pytest.raises(PermissionDenied, match="you own no charger"):
        await keypad_pins.set_personal_pin(ctx, world.actor("stranger"), None)
    # A user grant (shared by the owner) is not ownership: the keypad checks only the
    # personal space of the charger's owner.
    with pytest.raises(PermissionDenied):
        await keypad_pins.set_personal_pin(ctx, world.actor("invited"), None)


async def test_a_generated_personal_pin_is_shown_once_and_works(
    ctx: Context, world: World, canaries: Canaries
) -> None:
    async with client_for(ctx) as client:
        response = await client.post(
            "/api/me/keypad-pin/generate", headers=await world.headers("home")
        )
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    pin = response.json()["pin"]
    canaries.add(pin)
    assert await keypad_pins.resolve(ctx, world.chargers["home"].id, pin) == user(world, "home")


async def test_a_pin_taken_in_the_other_space_of_a_keypad_answers_like_a_blocked_one(
    ctx: Context, world: World, canaries: Canaries
) -> None:
    """The home keypad checks Acme's space and the owner's: a PIN must be unambiguous there,
    and asking must not tell the owner more than a blocked PIN would."""
    canaries.add(MEMBER_PIN, HOME_PIN)
    member, home = world.actor("member"), world.actor("home")
    await keypad_pins.set_pin(ctx, member, world.org.id, member.user_id, MEMBER_PIN)
    async with client_for(ctx) as client:
        headers = await world.headers("home")
        taken = await client.put("/api/me/keypad-pin", json={"pin": MEMBER_PIN}, headers=headers)
        blocked = await client.put("/api/me/keypad-pin", json={"pin": "1234"}, headers=headers)
    assert taken.status_code == blocked.status_code == 422
    strip = lambda body: {k: v for k, v in body.items() if k != "request_id"}  # noqa: E731
    assert strip(taken.json()) == strip(blocked.json())
    assert MEMBER_PIN not in taken.text

    # And the other way round: a member cannot take the home owner's personal PIN.
    await keypad_pins.set_personal_pin(ctx, home, HOME_PIN)
    with pytest.raises(PinRejected):
        await keypad_pins.set_pin(ctx, member, world.org.id, member.user_id, HOME_PIN)
    async with ctx.db.read() as session:
        collisions = (
            await session.scalars(
                select(AuditRecord.details).where(AuditRecord.action == "keypad_pin.collision")
            )
        ).all()
    assert sorted(json.loads(d).get("personal", False) for d in collisions) == [False, True]


async def test_two_people_behind_one_code_at_one_keypad_open_nothing(
    ctx: Context, world: World, canaries: Canaries
) -> None:
    """A clash the set-time checks could not see (an owner whose personal PIN was checked
    against one tree takes over a charger in another, where a member holds that code):
    neither starts a session as the other."""
    canaries.add(HOME_PIN)
    member = world.actor("member")
    await keypad_pins.set_personal_pin(ctx, world.actor("home"), HOME_PIN)
    async with ctx.db.transaction() as session:  # what no service would write
        session.add(
            KeypadPin(
                pin_space_id=world.org.root_id,
                user_id=member.user_id,
                digest=ctx.keypad_hasher.digest(world.org.root_id, HOME_PIN),
                digits=4,
                set_by=member.user_id,
                updated_at=ctx.clock.now(),
            )
        )
    ctx.keypad_index.invalidate()
    await organisations.set_member_access(
        ctx, world.actor("super_admin"), world.org.id, MemberAccess.ALL
    )
    assert await keypad_pins.resolve(ctx, world.chargers["home"].id, HOME_PIN) is None
    assert await keypad_pins.resolve(ctx, world.chargers["old"].id, HOME_PIN) == member.user_id


# --- the member access policy ------------------------------------------------------------------


async def test_policy_all_lets_every_member_use_every_keypad_of_the_organisation(
    ctx: Context, world: World, canaries: Canaries
) -> None:
    canaries.add(MEMBER_PIN)
    member, admin = world.actor("member"), world.actor("admin")
    await keypad_pins.set_pin(ctx, member, world.org.id, member.user_id, MEMBER_PIN)
    old = world.chargers["old"].id  # Acme's keypad charger, never assigned to the member
    assert await keypad_pins.resolve(ctx, old, MEMBER_PIN) is None

    org = await organisations.set_member_access(ctx, admin, world.org.id, MemberAccess.ALL)
    assert org.member_access == MemberAccess.ALL
    assert await keypad_pins.resolve(ctx, old, MEMBER_PIN) == member.user_id
    async with ctx.db.read() as session:
        subgroup = await session.get_one(Organisation, world.subgroup.id)
        record = await session.scalar(
            select(AuditRecord).where(AuditRecord.action == "organisation.member_access_changed")
        )
    assert subgroup.member_access == MemberAccess.ALL  # the subgroups follow
    assert record is not None and record.actor_id == admin.user_id
    assert json.loads(record.details) == {"member_access": "all", "organisations": 2}

    await organisations.set_member_access(ctx, admin, world.org.id, MemberAccess.ASSIGNED)
    assert await keypad_pins.resolve(ctx, old, MEMBER_PIN) is None


async def test_policy_all_reaches_subgroup_chargers_but_not_other_organisations(
    ctx: Context, world: World, canaries: Canaries
) -> None:
    canaries.add(MEMBER_PIN, "8147")
    member = world.actor("member")
    depot = await add_charger(
        world,
        "depot",
        serial="WB-800008",
        vendor="Wallbox",
        model="Commander 2",
        firmware="6.11.4",
        keypad=True,
        organisation=world.subgroup.id,
    )
    await keypad_pins.set_pin(ctx, member, world.org.id, member.user_id, MEMBER_PIN)
    rival = world.actor("other_admin")
    await keypad_pins.set_pin(ctx, rival, world.other_org.id, rival.user_id, "8147")
    await organisations.set_member_access(
        ctx, world.actor("super_admin"), world.org.id, MemberAccess.ALL
    )
    assert await keypad_pins.resolve(ctx, depot.id, MEMBER_PIN) == member.user_id
    assert await keypad_pins.resolve(ctx, depot.id, "8147") is None
    # The subgroup alone back to assigned: its chargers only.
    await organisations.set_member_access(
        ctx, world.actor("super_admin"), world.subgroup.id, MemberAccess.ASSIGNED
    )
    assert await keypad_pins.resolve(ctx, depot.id, MEMBER_PIN) is None
    assert await keypad_pins.resolve(ctx, world.chargers["old"].id, MEMBER_PIN) == member.user_id


async def test_only_admins_set_the_policy(ctx: Context, world: World) -> None:
    with pytest.raises(PermissionDenied):
        await organisations.set_member_access(
            ctx, world.actor("member"), world.org.id, MemberAccess.ALL
        )
    with pytest.raises(NotFound):
        await organisations.set_member_access(
            ctx, world.actor("other_admin"), world.org.id, MemberAccess.ALL
        )
    async with client_for(ctx) as client:
        response = await client.put(
            f"/api/organisations/{world.org.id}/member-access",
            json={"member_access": "everyone"},
            headers=await world.headers("super_admin"),
        )
        assert response.status_code == 422
        response = await client.put(
            f"/api/organisations/{world.org.id}/member-access",
            json={"member_access": "all"},
            headers=await world.headers("admin"),
        )
        assert response.status_code == 200
        assert response.json()["member_access"] == "all"


async def test_changing_the_policy_updates_the_local_lists(
    ctx: Context, world: World, canaries: Canaries
) -> None:
    canaries.add(MEMBER_PIN)
    backend = DbOcppBackend(ctx)
    serial = world.chargers["old"].serial
    sa, member = world.actor("super_admin"), world.actor("member")
    await organisations.update_settings(ctx, sa, world.org.id, offline_keypad=True)
    await keypad_pins.set_pin(ctx, member, world.org.id, member.user_id, MEMBER_PIN)

    async def pending() -> list[SendLocalList]:
        return [c for c in await backend.pending_commands(serial) if isinstance(c, SendLocalList)]

    assert await pending() == []  # not assigned: not on the list
    await organisations.set_member_access(ctx, sa, world.org.id, MemberAccess.ALL)
    [added] = await pending()
    assert [(e.id_token, e.user_id) for e in added.entries] == [(MEMBER_PIN, member.user_id)]
    await backend.command_result(serial, added.command_id, accepted=True)

    # A member who joins later, and sets a PIN, is added too.
    newcomer = await accounts.create_user(ctx, "newcomer@example.com", PASSWORD)
    await organisations.add_member(ctx, sa, world.org.id, newcomer.email, Role.USER)
    canaries.add("5926")
    await keypad_pins.set_pin(ctx, world.actor("admin"), world.org.id, newcomer.id, "5926")
    [joined] = await pending()
    assert [e.user_id for e in joined.entries] == [newcomer.id]
    await backend.command_result(serial, joined.command_id, accepted=True)

    await organisations.set_member_access(ctx, sa, world.org.id, MemberAccess.ASSIGNED)
    [removed] = await pending()
    assert sorted(removed.removed) == sorted([MEMBER_PIN, "5926"])
    assert removed.entries == ()


# --- over OCPP ---------------------------------------------------------------------------------


class Keypads:
    """Chargers connected over real OCPP-J to the endpoint on the database backend."""

    def __init__(self, ctx: Context, world: World) -> None:
        self.ctx, self.world = ctx, world
        self.sockets: dict[str, ClientConnection] = {}
        self.counter = 0

    async def __aenter__(self) -> Keypads:
        self.server = await serve_ocpp(DbOcppBackend(self.ctx), port=0, clock=self.ctx.clock)
        self.ctx.notifier.target = self.server.notifier
        return self

    async def __aexit__(self, *exc: object) -> None:
        for ws in self.sockets.values():
            await ws.close()
        self.ctx.notifier.target = None
        await self.server.close()

    async def connect(self, key: str) -> None:
        charger = self.world.chargers[key]
        token = f"{charger.serial}:{self.world.ocpp_passwords[key]}"
        ws = await connect(
            f"ws://127.0.0.1:{self.server.port}/ocpp/{charger.serial}",
            subprotocols=["ocpp2.0.1"],  # type: ignore[list-item]
            additional_headers={
                "Authorization": f"Basic {base64.b64encode(token.encode()).decode()}"
            },
            compression=None,
        )
        self.sockets[key] = ws
        station = {"vendorName": charger.vendor, "model": charger.model}
        reply = await self.call(
            key, "BootNotification", {"reason": "PowerUp", "chargingStation": station}
        )
        assert reply["status"] == "Accepted"

    async def call(self, key: str, action: str, payload: dict[str, Any]) -> dict[str, Any]:
        """Send a Call and return its result, answering the server's own Calls meanwhile."""
        ws = self.sockets[key]
        self.counter += 1
        message_id = f"m-{self.counter}"
        await ws.send(json.dumps([2, message_id, action, payload]))
        async with asyncio.timeout(10):
            while True:
                frame = json.loads(await ws.recv())
                if frame[0] == 2:
                    await ws.send(json.dumps([3, frame[1], _accepted("ocpp2.0.1", frame)]))
                elif frame[1] == message_id:
                    assert frame[0] == 3, frame
                    return dict(frame[2])

    async def authorize(self, key: str, code: str) -> str:
        reply = await self.call(key, "Authorize", {"idToken": {"idToken": code, "type": "KeyCode"}})
        return str(reply["idTokenInfo"]["status"])

    async def start(self, key: str, transaction_id: str, code: str) -> str:
        now = self.ctx.clock.now().isoformat()
        reply = await self.call(
            key,
            "TransactionEvent",
            {
                "eventType": "Started",
                "timestamp": now,
                "triggerReason": "Authorized",
                "seqNo": 0,
                "transactionInfo": {"transactionId": transaction_id},
                "evse": {"id": 1},
                "idToken": {"idToken": code, "type": "KeyCode"},
            },
        )
        return str(reply["idTokenInfo"]["status"])


async def test_over_ocpp_a_personal_pin_opens_its_owners_keypad_only(
    ctx: Context, world: World, canaries: Canaries
) -> None:
    canaries.add(HOME_PIN)
    await keypad_pins.set_personal_pin(ctx, world.actor("home"), HOME_PIN)
    async with Keypads(ctx, world) as keypads:
        await keypads.connect("home")
        await keypads.connect("old")
        assert await keypads.authorize("home", HOME_PIN) == "Accepted"
        assert await keypads.authorize("old", HOME_PIN) == "Invalid"
        assert await keypads.start("home", "tx-home-1", HOME_PIN) == "Accepted"
    async with ctx.db.read() as session:
        tx = await session.scalar(
            select(Transaction).where(Transaction.transaction_id == "tx-home-1")
        )
    assert tx is not None and tx.user_id == user(world, "home")


async def test_over_ocpp_a_member_follows_the_policy(
    ctx: Context, world: World, canaries: Canaries
) -> None:
    canaries.add(MEMBER_PIN)
    member, sa = world.actor("member"), world.actor("super_admin")
    await keypad_pins.set_pin(ctx, member, world.org.id, member.user_id, MEMBER_PIN)
    async with Keypads(ctx, world) as keypads:
        await keypads.connect("old")  # an Acme keypad the member was never assigned
        assert await keypads.authorize("old", MEMBER_PIN) == "Invalid"
        await organisations.set_member_access(ctx, sa, world.org.id, MemberAccess.ALL)
        assert await keypads.authorize("old", MEMBER_PIN) == "Accepted"
        assert await keypads.start("old", "tx-member-1", MEMBER_PIN) == "Accepted"
        await organisations.set_member_access(ctx, sa, world.org.id, MemberAccess.ASSIGNED)
        assert await keypads.authorize("old", MEMBER_PIN) == "Invalid"
    async with ctx.db.read() as session:
        tx = await session.scalar(
            select(Transaction).where(Transaction.transaction_id == "tx-member-1")
        )
    assert tx is not None and tx.user_id == member.user_id
