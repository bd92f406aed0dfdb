"""RFID cards and other OCPP tokens: the registry (service and API), then end to end over
real OCPP-J against the endpoint on the database backend: Accepted with its group where
its user may charge, Invalid elsewhere, Blocked, Expired, access revoked (ClearCache
follows), and a master pass that stops but cannot start."""

from __future__ import annotations

import asyncio
import base64
import json
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select
from websockets.asyncio.client import ClientConnection, connect

from evaccess.domain.access import GrantKind
from evaccess.domain.errors import Conflict, InvalidInput, LockedOut, NotFound, PermissionDenied
from evaccess.domain.tokens import Answer, Purpose, TokenStatus, TokenType
from evaccess.server.context import Context
from evaccess.server.db.models import (
    AuditRecord,
    IdToken,
    LocalListCard,
    OutboxCommand,
    Transaction,
)
from evaccess.server.ocpp.backend import ClearCache, SendLocalList
from evaccess.server.ocpp.server import serve_ocpp
from evaccess.server.services import grants, organisations, outbox, tokens
from evaccess.server.services.ocpp_backend import DbOcppBackend
from tests.conftest import Canaries
from tests.server.ocpp_boot import _accepted
from tests.server.support import World, build_world, client_for, share

CARD = "04A2B3C4D5E680"  # a 7-byte ISO14443 UID
OTHER_CARD = "E0040150A1B2C3D4"  # an ISO15693 UID
MASTER_CARD = "8899AABB"


@pytest.fixture
async def world(ctx: Context, canaries: Canaries) -> World:
    canaries.add(CARD, OTHER_CARD, MASTER_CARD, CARD.lower())
    world = await build_world(ctx)
    await share(world, "wallbox", "member", GrantKind.USER)  # a member using the wallbox
    return world


def uid(world: World, name: str) -> str:
    return world.users[name].id


async def clear_caches_queued(ctx: Context, charger_id: str) -> int:
    async with ctx.db.read() as session:
        rows = (
            await session.scalars(
                select(OutboxCommand).where(
                    OutboxCommand.charger_id == charger_id,
                    OutboxCommand.kind == outbox.CommandKind.CLEAR_CACHE,
                    OutboxCommand.completed_at.is_(None),
                )
            )
        ).all()
    return len(rows)


# --- the registry -------------------------------------------------------------------------------


async def test_a_card_is_stored_as_a_keyed_digest_and_shown_masked(
    ctx: Context, world: World
) -> None:
    assert world.org is not None
    sa = world.actor("super_admin")
    view = await tokens.add_card(
        ctx,
        sa,
        world.org.id,
        user_id=uid(world, "member"),
        token_type=TokenType.ISO14443,
        number=CARD.lower(),
        group_id_token="staff",
        label="van 3",
    )
    assert (view.masked, view.group_id_token, view.status) == ("…E680", "STAFF", "Accepted")
    async with ctx.db.read() as session:
        row = await session.get_one(IdToken, view.id)
        audit = (await session.scalars(select(AuditRecord))).all()
    assert row.digest == tokens.token_digest(ctx, world.org.root_id, CARD)
    assert row.sealed_value is None  # the organisation did not opt into local lists
    assert all(CARD not in (a.details or "") for a in audit)
    # unique in the organisation tree, whatever the form or the subgroup
    assert world.subgroup is not None
    with pytest.raises(Conflict) as taken:
        await tokens.add_card(
            ctx,
            sa,
            world.subgroup.id,
            user_id=uid(world, "admin"),
            token_type=TokenType.ISO14443,
            number=f" {CARD} ",
        )
    assert taken.value.code == "card_taken" and CARD not in str(taken.value)
    with pytest.raises(InvalidInput):
        await tokens.add_card(
            ctx,
            sa,
            world.org.id,
            user_id=uid(world, "member"),
            token_type=TokenType.ISO15693,
            number="04A2B3C4",
        )


async def test_who_may_manage_cards(ctx: Context, world: World) -> None:
    assert world.org is not None
    member = world.actor("member")
    own = await tokens.add_card(
        ctx,
        member,
        world.org.id,
        user_id=member.user_id,
        token_type=TokenType.ISO15693,
        number=OTHER_CARD,
    )
    with pytest.raises(PermissionDenied):
        await tokens.add_card(
            ctx,
            member,
            world.org.id,
            user_id=uid(world, "admin"),
            token_type=TokenType.ISO14443,
            number=CARD,
        )
    with pytest.raises(PermissionDenied):  # an admin never for who outranks them
        await tokens.add_card(
            ctx,
            world.actor("admin"),
            world.org.id,
            user_id=uid(world, "super_admin"),
            token_type=TokenType.ISO14443,
            number=CARD,
        )
    with pytest.raises(NotFound):  # another organisation's admin does not see it
        await tokens.update_card(
            ctx, world.actor("other_admin"), own.id, status=TokenStatus.BLOCKED
        )
    assert [
        c.id for c in await tokens.list_cards(ctx, member, world.org.id, user_id=member.user_id)
    ] == [own.id]
    with pytest.raises(PermissionDenied):
        await tokens.list_cards(ctx, member, world.org.id)
    await tokens.delete_card(ctx, member, own.id)
    assert await tokens.list_cards(ctx, world.actor("admin"), world.org.id) == []


async def test_answers_at_chargers(ctx: Context, world: World) -> None:
    assert world.org is not None
    sa = world.actor("super_admin")
    card = await tokens.add_card(
        ctx,
        sa,
        world.org.id,
        user_id=uid(world, "member"),
        token_type=TokenType.ISO14443,
        number=CARD,
        group_id_token="STAFF",
    )
    wallbox = world.chargers["wallbox"].id
    answer = await tokens.resolve(ctx, wallbox, CARD, "ISO14443", Purpose.AUTHORIZE)
    assert answer is not None and answer.accepted and answer.group_id_token == "STAFF"
    assert answer.user_id == uid(world, "member")
    assert answer.cache_expiry == ctx.clock.now() + timedelta(seconds=ctx.auth_cache_ttl_s)
    # untyped (1.6J): found by number alone; typed as another kind: not this card
    assert (await tokens.resolve(ctx, wallbox, CARD, None, Purpose.START)) is not None
    assert await tokens.resolve(ctx, wallbox, CARD, "ISO15693", Purpose.START) is None
    # an expiry bounds the cache
    soon = ctx.clock.now() + timedelta(minutes=5)
    await tokens.update_card(ctx, sa, card.id, expires_at=soon)
    answer = await tokens.resolve(ctx, wallbox, CARD, "ISO14443", Purpose.AUTHORIZE)
    assert answer is not None and answer.cache_expiry == soon
    ctx.clock.advance(301)  # type: ignore[attr-defined]
    answer = await tokens.resolve(ctx, wallbox, CARD, "ISO14443", Purpose.AUTHORIZE)
    assert answer is not None and answer.status == Answer.EXPIRED and not answer.accepted


async def test_unknown_cards_count_against_the_keypad_throttle(ctx: Context, world: World) -> None:
    wallbox = world.chargers["wallbox"].id
    for n in range(50):
        if await ctx.keypad_throttle.is_locked(f"keypad:{wallbox}"):
            break
        assert await tokens.resolve(ctx, wallbox, f"{n:08X}", "ISO14443", Purpose.START) is None
    with pytest.raises(LockedOut):
        await tokens.resolve(ctx, wallbox, CARD, "ISO14443", Purpose.START)
    # the keypad is locked alike: one throttle for every token of the charger
    assert await ctx.keypad_throttle.is_locked(f"keypad:{wallbox}")


async def test_revoking_access_clears_the_chargers_cache(ctx: Context, world: World) -> None:
    assert world.org is not None
    await tokens.add_card(
        ctx,
        world.actor("super_admin"),
        world.org.id,
        user_id=uid(world, "member"),
        token_type=TokenType.ISO14443,
        number=CARD,
    )
    charger = world.chargers["wallbox"]
    grant = next(
        g
        for g in await grants.list_grants(ctx, world.actor("owner"), charger.id)
        if g.email == "member@example.com"
    )
    await grants.revoke_grant(ctx, world.actor("owner"), charger.id, grant.grant.id)
    assert await clear_caches_queued(ctx, charger.id) == 1
    pending = await DbOcppBackend(ctx).pending_commands(charger.serial)
    assert any(isinstance(c, ClearCache) for c in pending)
    answer = await tokens.resolve(ctx, charger.id, CARD, "ISO14443", Purpose.AUTHORIZE)
    assert answer is not None and answer.status == Answer.INVALID


# --- the API ------------------------------------------------------------------------------------


async def test_the_api_never_returns_the_number(ctx: Context, world: World) -> None:
    assert world.org is not None
    async with client_for(ctx) as client:
        headers = await world.headers("super_admin")
        url = f"/api/organisations/{world.org.id}/cards"
        body = {"user_id": uid(world, "member"), "type": "ISO14443", "number": CARD}
        created = await client.post(url, json=body, headers=headers)
        assert created.status_code == 201, created.text
        assert CARD not in created.text and created.json()["masked"] == "…E680"
        again = await client.post(url, json=body, headers=headers)
        assert (again.status_code, again.json()["code"]) == (409, "card_taken")
        bad = await client.post(url, json=body | {"number": "04A2B3C4D5"}, headers=headers)
        assert (bad.status_code, bad.json()["code"]) == (422, "bad_card_number")
        assert "04A2B3C4D5" not in bad.text
        listed = await client.get(url, headers=headers)
        assert [c["id"] for c in listed.json()] == [created.json()["id"]]
        assert CARD not in listed.text
        card_url = f"/api/cards/{created.json()['id']}"
        blocked = await client.patch(card_url, json={"status": "Blocked"}, headers=headers)
        assert blocked.json()["effective_status"] == "Blocked"
        master = await client.put(
            f"/api/organisations/{world.org.id}/master-pass-group",
            json={"group_id": "master"},
            headers=headers,
        )
        assert master.json() == {"group_id": "MASTER"}
        gone = await client.delete(card_url, headers=headers)
        assert gone.status_code == 204
        missing = await client.delete(card_url, headers=headers)
        assert (missing.status_code, missing.json()["code"]) == (404, "not_found")


# --- end to end over OCPP -----------------------------------------------------------------------


class Chargers:
    """Chargers connected over real OCPP-J (2.0.1 or 1.6J) to the endpoint on the database
    backend; the server's own Calls are answered Accepted and recorded."""

    def __init__(self, ctx: Context, world: World) -> None:
        self.ctx, self.world = ctx, world
        self.sockets: dict[str, tuple[ClientConnection, str]] = {}
        self.server_calls: dict[str, list[str]] = {}
        self.counter = 0

    async def __aenter__(self) -> Chargers:
        self.server = await serve_ocpp(DbOcppBackend(self.ctx), port=0, clock=self.ctx.clock)
        self.ctx.notifier.target = self.server.notifier
        return self

    async def __aexit__(self, *exc: object) -> None:
        for ws, _ in self.sockets.values():
            await ws.close()
        self.ctx.notifier.target = None
        await self.server.close()

    async def connect(self, key: str, version: str = "ocpp2.0.1") -> None:
        charger = self.world.chargers[key]
        token = f"{charger.serial}:{self.world.ocpp_passwords[key]}"
        ws = await connect(
            f"ws://127.0.0.1:{self.server.port}/ocpp/{charger.serial}",
            subprotocols=[version],  # type: ignore[list-item]
            additional_headers={
                "Authorization": f"Basic {base64.b64encode(token.encode()).decode()}"
            },
            compression=None,
        )
        self.sockets[key] = (ws, version)
        self.server_calls[key] = []
        if version == "ocpp2.0.1":
            boot: dict[str, Any] = {
                "reason": "PowerUp",
                "chargingStation": {"vendorName": charger.vendor, "model": charger.model},
            }
        else:
            boot = {"chargePointVendor": charger.vendor, "chargePointModel": charger.model}
        assert (await self.call(key, "BootNotification", boot))["status"] == "Accepted"

    async def call(self, key: str, action: str, payload: dict[str, Any]) -> dict[str, Any]:
        ws, version = self.sockets[key]
        self.counter += 1
        message_id = f"m-{self.counter}"
        await ws.send(json.dumps([2, message_id, action, payload]))
        async with asyncio.timeout(10):
            while True:
                frame = json.loads(await ws.recv())
                if frame[0] == 2:
                    self.server_calls[key].append(frame[2])
                    await ws.send(json.dumps([3, frame[1], _accepted(version, frame)]))
                elif frame[1] == message_id:
                    assert frame[0] == 3, frame
                    return dict(frame[2])

    async def until_server_call(self, key: str, action: str) -> None:
        """Wait for the server's Call ``action`` (answered Accepted), after a poke."""
        ws, version = self.sockets[key]
        async with asyncio.timeout(10):
            while action not in self.server_calls[key]:
                frame = json.loads(await ws.recv())
                if frame[0] == 2:
                    self.server_calls[key].append(frame[2])
                    await ws.send(json.dumps([3, frame[1], _accepted(version, frame)]))

    async def authorize(self, key: str, number: str, kind: str = "ISO14443") -> dict[str, Any]:
        reply = await self.call(key, "Authorize", {"idToken": {"idToken": number, "type": kind}})
        return dict(reply["idTokenInfo"])

    async def event(
        self, key: str, event_type: str, transaction_id: str, number: str, seq_no: int
    ) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "eventType": event_type,
            "timestamp": self.ctx.clock.now().isoformat(),
            "triggerReason": "Authorized" if event_type == "Started" else "StopAuthorized",
            "seqNo": seq_no,
            "transactionInfo": {"transactionId": transaction_id},
            "evse": {"id": 1},
            "idToken": {"idToken": number, "type": "ISO14443"},
        }
        if event_type == "Ended":
            payload["transactionInfo"]["stoppedReason"] = "Local"
        reply = await self.call(key, "TransactionEvent", payload)
        return dict(reply["idTokenInfo"])


async def test_end_to_end_over_ocpp(ctx: Context, world: World) -> None:
    assert world.org is not None
    sa = world.actor("super_admin")
    # a card of a member the wallbox is shared with, added through the API
    async with client_for(ctx) as client:
        created = await client.post(
            f"/api/organisations/{world.org.id}/cards",
            json={
                "user_id": uid(world, "member"),
                "type": "ISO14443",
                "number": CARD,
                "group_id_token": "STAFF",
            },
            headers=await world.headers("super_admin"),
        )
    assert created.status_code == 201
    card_id = created.json()["id"]
    member_card = await tokens.add_card(
        ctx,
        sa,
        world.org.id,
        user_id=uid(world, "admin"),
        token_type=TokenType.ISO15693,
        number=OTHER_CARD,
    )
    await tokens.set_master_pass_group(ctx, sa, world.org.id, "MASTER")
    await tokens.add_card(
        ctx,
        sa,
        world.org.id,
        user_id=uid(world, "super_admin"),
        token_type=TokenType.ISO14443,
        number=MASTER_CARD,
        group_id_token="MASTER",
    )
    await share(world, "zaptec", "member", GrantKind.USER)
    expiry = (ctx.clock.now() + timedelta(seconds=ctx.auth_cache_ttl_s)).isoformat()
    async with Chargers(ctx, world) as fleet:
        await fleet.connect("wallbox")
        await fleet.connect("zaptec", "ocpp1.6")
        accepted = await fleet.authorize("wallbox", CARD.lower())
        assert accepted == {
            "status": "Accepted",
            "groupIdToken": {"idToken": "STAFF", "type": "Central"},
            "cacheExpiryDateTime": expiry.replace("+00:00", "Z"),
        }
        # the admin may not use the wallbox: Invalid; a number nobody registered: Unknown
        assert (await fleet.authorize("wallbox", OTHER_CARD, "ISO15693"))["status"] == "Invalid"
        assert (await fleet.authorize("wallbox", "DEADBEEF"))["status"] == "Unknown"
        assert (await fleet.authorize("wallbox", "x", "NoAuthorization"))["status"] == "Unknown"
        # 1.6J: an untyped idTag is looked up as a card; the group is the parentIdTag
        tag = await fleet.call("zaptec", "Authorize", {"idTag": CARD})
        assert tag["idTagInfo"]["status"] == "Accepted"
        assert tag["idTagInfo"]["parentIdTag"] == "STAFF"
        unknown = await fleet.call("zaptec", "Authorize", {"idTag": "DEADBEEF"})
        assert unknown["idTagInfo"] == {"status": "Invalid"}  # 1.6 has no Unknown

        # master pass: accepted for Authorize (with its group), stops, never starts
        master = await fleet.authorize("wallbox", MASTER_CARD)
        assert (master["status"], master["groupIdToken"]["idToken"]) == ("Accepted", "MASTER")
        assert (await fleet.event("wallbox", "Started", "tx-m", MASTER_CARD, 0))[
            "status"
        ] == "Invalid"
        assert (await fleet.event("wallbox", "Started", "tx-1", CARD, 0))["status"] == "Accepted"
        assert (await fleet.event("wallbox", "Ended", "tx-1", MASTER_CARD, 1))[
            "status"
        ] == "Accepted"

        # blocked: answered Blocked, and the charger is told to empty its cache
        async with client_for(ctx) as client:
            blocked = await client.patch(
                f"/api/cards/{card_id}",
                json={"status": "Blocked"},
                headers=await world.headers("super_admin"),
            )
        assert blocked.status_code == 200
        await fleet.until_server_call("wallbox", "ClearCache")
        assert (await fleet.authorize("wallbox", CARD))["status"] == "Blocked"
        stop_tag = await fleet.call("zaptec", "Authorize", {"idTag": CARD})
        assert stop_tag["idTagInfo"]["status"] == "Blocked"

        # expired: answered Expired
        await tokens.update_card(
            ctx,
            sa,
            card_id,
            status=TokenStatus.ACCEPTED,
            expires_at=ctx.clock.now() + timedelta(minutes=1),
        )
        ctx.clock.advance(61)  # type: ignore[attr-defined]
        assert (await fleet.authorize("wallbox", CARD))["status"] == "Expired"

        # access revoked: Invalid, and the cache is cleared again
        await tokens.update_card(ctx, sa, card_id, clear_expiry=True)
        assert (await fleet.authorize("wallbox", CARD))["status"] == "Accepted"
        fleet.server_calls["wallbox"].clear()
        grant = next(
            g
            for g in await grants.list_grants(
                ctx, world.actor("owner"), world.chargers["wallbox"].id
            )
            if g.email == "member@example.com"
        )
        await grants.revoke_grant(
            ctx, world.actor("owner"), world.chargers["wallbox"].id, grant.grant.id
        )
        await fleet.until_server_call("wallbox", "ClearCache")
        assert (await fleet.authorize("wallbox", CARD))["status"] == "Invalid"

        # the admin gets the wallbox: their card works there now
        await share(world, "wallbox", "admin", GrantKind.USER)
        assert (await fleet.authorize("wallbox", OTHER_CARD, "ISO15693"))["status"] == "Accepted"
        assert member_card.masked == "…C3D4"
    async with ctx.db.read() as session:
        tx = await session.scalar(select(Transaction).where(Transaction.transaction_id == "tx-1"))
    assert tx is not None and tx.user_id == uid(world, "member") and tx.ended_at is not None


# --- local lists (an organisation opt-in) ---------------------------------------------------------


async def _pending_lists(ctx: Context, serial: str) -> list[SendLocalList]:
    return [
        c for c in await DbOcppBackend(ctx).pending_commands(serial) if isinstance(c, SendLocalList)
    ]


async def test_cards_reach_local_lists_only_where_the_organisation_opted_in(
    ctx: Context, world: World
) -> None:
    assert world.org is not None
    sa = world.actor("super_admin")
    wallbox = world.chargers["wallbox"]
    before = await tokens.add_card(
        ctx,
        sa,
        world.org.id,
        user_id=uid(world, "member"),
        token_type=TokenType.ISO15693,
        number=OTHER_CARD,
    )
    assert await _pending_lists(ctx, wallbox.serial) == []  # not opted in: never sealed
    await organisations.update_settings(ctx, sa, world.org.id, offline_keypad=True)
    backend = DbOcppBackend(ctx)
    for command in await _pending_lists(ctx, wallbox.serial):
        await backend.command_result(wallbox.serial, command.command_id, accepted=True)
    card = await tokens.add_card(
        ctx,
        sa,
        world.org.id,
        user_id=uid(world, "member"),
        token_type=TokenType.ISO14443,
        number=CARD,
        group_id_token="STAFF",
    )
    async with ctx.db.read() as session:
        row = await session.get_one(IdToken, card.id)
        assert row.sealed_value is not None and CARD.encode() not in row.sealed_value
        assert (await session.get_one(IdToken, before.id)).sealed_value is None
    [update] = await _pending_lists(ctx, wallbox.serial)
    [entry] = update.entries
    assert (entry.id_token, entry.token_type, entry.group_id_token) == (CARD, "ISO14443", "STAFF")
    assert update.full is False
    # only at chargers the member may use: the zaptec is not shared with them
    assert await _pending_lists(ctx, world.chargers["zaptec"].serial) == []
    await backend.command_result(wallbox.serial, update.command_id, accepted=True)
    async with ctx.db.read() as session:
        held = (await session.scalars(select(LocalListCard))).all()
    assert [(h.charger_id, h.token_id) for h in held] == [(wallbox.id, card.id)]

    # blocked: removed from the list (with its type), and the cache cleared
    await tokens.update_card(ctx, sa, card.id, status=TokenStatus.BLOCKED)
    [removal] = await _pending_lists(ctx, wallbox.serial)
    assert removal.entries == () and removal.removed_tokens == ((CARD, "ISO14443"),)
    assert await clear_caches_queued(ctx, wallbox.id) == 1
    await backend.command_result(wallbox.serial, removal.command_id, accepted=True)
    # accepted again, then the grant revoked: removed again
    await tokens.update_card(ctx, sa, card.id, status=TokenStatus.ACCEPTED)
    [again] = await _pending_lists(ctx, wallbox.serial)
    await backend.command_result(wallbox.serial, again.command_id, accepted=True)
    grant = next(
        g
        for g in await grants.list_grants(ctx, world.actor("owner"), wallbox.id)
        if g.email == "member@example.com"
    )
    await grants.revoke_grant(ctx, world.actor("owner"), wallbox.id, grant.grant.id)
    [revoked] = await _pending_lists(ctx, wallbox.serial)
    assert revoked.removed_tokens == ((CARD, "ISO14443"),)
    # opting out drops the sealed copies
    await organisations.update_settings(ctx, sa, world.org.id, offline_keypad=False)
    async with ctx.db.read() as session:
        assert (await session.get_one(IdToken, card.id)).sealed_value is None


async def test_a_16j_transaction_records_the_cards_type_and_keycode_for_a_keypad_pin(
    ctx: Context, world: World
) -> None:
    """1.6J idTags are untyped: the server records the type of what it found (issue 11)."""
    assert world.org is not None
    sa = world.actor("super_admin")
    await tokens.add_card(
        ctx,
        sa,
        world.org.id,
        user_id=uid(world, "member"),
        token_type=TokenType.ISO15693,
        number=OTHER_CARD,
    )
    await share(world, "zaptec", "member", GrantKind.USER)
    async with Chargers(ctx, world) as fleet:
        await fleet.connect("zaptec", "ocpp1.6")
        started = await fleet.call(
            "zaptec",
            "StartTransaction",
            {
                "connectorId": 1,
                "idTag": OTHER_CARD,
                "meterStart": 0,
                "timestamp": ctx.clock.now().isoformat(),
            },
        )
        assert started["idTagInfo"]["status"] == "Accepted"
        ctx.clock.advance(1)  # type: ignore[attr-defined]
        keypad = await fleet.call(
            "zaptec",
            "StartTransaction",
            {
                "connectorId": 1,
                "idTag": "0000",
                "meterStart": 0,
                "timestamp": ctx.clock.now().isoformat(),
            },
        )
    async with ctx.db.read() as session:
        by_id = {
            t.transaction_id: t.token_type for t in (await session.scalars(select(Transaction)))
        }
    assert by_id[str(started["transactionId"])] == "ISO15693"
    assert by_id[str(keypad["transactionId"])] == "KeyCode"
