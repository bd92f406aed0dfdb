"""Charging sessions as the REST API shows them: who sees which, what a row says, and that
the token that started a session appears by its type only (its value is not even stored).

Sessions arrive the way chargers send them: OCPP TransactionEvents (and 1.6 Start/Stop)
through the real handlers into the database backend."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import select

from evaccess.domain.access import GrantKind
from evaccess.protocol.ocpp_frames import OcppVersion
from evaccess.server.context import Context
from evaccess.server.db.models import Transaction
from evaccess.server.ocpp.handlers import (
    HandlerContext,
    authorize_v201,
    start_transaction_v16,
    stop_transaction_v16,
    transaction_event_v201,
)
from evaccess.server.services import grants, keypad_pins
from evaccess.server.services.ocpp_backend import DbOcppBackend
from tests.conftest import Canaries
from tests.server.support import World, build_world, client_for

OWNER_CODE, MEMBER_CODE = "5829", "7316"
RFID = "04A1B2C3D4E5F6"
WRONG_CODE = "9048"


def _when(ctx: Context, minutes: int) -> str:
    return (ctx.clock.now() + timedelta(minutes=minutes)).isoformat()


async def charge_v201(
    ctx: Context,
    serial: str,
    transaction_id: str,
    token: dict[str, str] | None,
    *,
    start_wh: float,
    stop_wh: float | None,
    stopped_reason: str | None = None,
    minutes: int = 0,
) -> None:
    """A 2.0.1 session: Started with a meter reading, then (unless ``stop_wh`` is None)
    Ended with another."""
    handler = HandlerContext(
        charger_id=serial, version=OcppVersion.V201, backend=DbOcppBackend(ctx), clock=ctx.clock
    )
    started: dict[str, Any] = {
        "eventType": "Started",
        "timestamp": _when(ctx, minutes),
        "triggerReason": "Authorized",
        "seqNo": 0,
        "transactionInfo": {"transactionId": transaction_id},
        "evse": {"id": 1},
        "meterValue": [{"timestamp": _when(ctx, minutes), "sampledValue": [{"value": start_wh}]}],
    }
    if token is not None:
        started["idToken"] = token
    await transaction_event_v201(handler, started)
    if stop_wh is None:
        return
    info: dict[str, str] = {"transactionId": transaction_id}
    if stopped_reason is not None:
        info["stoppedReason"] = stopped_reason
    await transaction_event_v201(
        handler,
        {
            "eventType": "Ended",
            "timestamp": _when(ctx, minutes + 90),
            "triggerReason": "EVCommunicationLost",
            "seqNo": 1,
            "transactionInfo": info,
            "meterValue": [
                {"timestamp": _when(ctx, minutes + 90), "sampledValue": [{"value": stop_wh}]}
            ],
        },
    )


def keycode(code: str) -> dict[str, str]:
    return {"idToken": code, "type": "KeyCode"}


async def sessions_world(ctx: Context, canaries: Canaries) -> World:
    """The keypad charger ``old``: the owner and an assigned member each charged with their
    keypad PIN, and an RFID card nobody here holds charged once (still going)."""
    canaries.add(OWNER_CODE, MEMBER_CODE, RFID, WRONG_CODE)
    world = await build_world(ctx)
    assert world.org is not None
    old = world.chargers["old"]
    await grants.assign(ctx, world.actor("super_admin"), old.id, world.users["member"].id)
    for person, code in (("owner", OWNER_CODE), ("member", MEMBER_CODE)):
        await keypad_pins.set_pin(
            ctx, world.actor(person), world.org.id, world.users[person].id, code
        )
    await charge_v201(
        ctx, old.serial, "tx-owner", keycode(OWNER_CODE), start_wh=1000, stop_wh=8500,
        stopped_reason="EVDisconnected", minutes=0,
    )  # fmt: skip
    await charge_v201(
        ctx, old.serial, "tx-member", keycode(MEMBER_CODE), start_wh=8500, stop_wh=12_000,
        minutes=120,
    )  # fmt: skip
    await charge_v201(
        ctx, old.serial, "tx-card", {"idToken": RFID, "type": "ISO14443"}, start_wh=12_000,
        stop_wh=None, minutes=240,
    )  # fmt: skip
    return world


async def _get(world: World, who: str, path: str) -> Any:
    async with client_for(world.ctx) as client:
        response = await client.get(path, headers=await world.headers(who))
    assert response.status_code == 200, response.text
    return response.json()


async def test_owner_and_admins_see_every_session_of_the_charger(
    ctx: Context, canaries: Canaries
) -> None:
    world = await sessions_world(ctx, canaries)
    path = f"/api/chargers/{world.chargers['old'].id}/transactions"
    for who in ("owner", "super_admin", "admin"):
        listed = await _get(world, who, path)
        assert [t["transaction_id"] for t in listed] == ["tx-card", "tx-member", "tx-owner"], who
    by_id = {t["transaction_id"]: t for t in listed}
    owner = by_id["tx-owner"]
    assert owner["charger_serial"] == "WB-400004"
    assert owner["user_email"] == "owner@example.com"
    assert (owner["energy_wh"], owner["meter_wh"]) == (7500, 8500)
    assert owner["token_type"] == "KeyCode"
    assert owner["stop_reason"] == "EVDisconnected"
    assert owner["stopped_at"] is not None
    # 2.0.1 E06: an Ended event without stoppedReason stopped for the reason Local.
    assert by_id["tx-member"]["stop_reason"] == "Local"
    assert by_id["tx-member"]["energy_wh"] == 3500
    card = by_id["tx-card"]
    assert (card["user_email"], card["token_type"], card["stopped_at"]) == (None, "ISO14443", None)
    assert card["stop_reason"] is None and card["energy_wh"] == 0


async def test_a_user_of_the_charger_sees_only_their_own_sessions(
    ctx: Context, canaries: Canaries
) -> None:
    world = await sessions_world(ctx, canaries)
    path = f"/api/chargers/{world.chargers['old'].id}/transactions"
    member = await _get(world, "member", path)
    assert [(t["transaction_id"], t["user_email"]) for t in member] == [
        ("tx-member", "member@example.com")
    ]
    for who in ("invited", "service"):  # grants on the charger, no sessions of their own
        assert await _get(world, who, path) == [], who


async def test_strangers_get_what_they_get_for_any_charger_they_cannot_see(
    ctx: Context, canaries: Canaries
) -> None:
    world = await sessions_world(ctx, canaries)
    old = world.chargers["old"].id
    async with client_for(ctx) as client:
        missing = await client.get(
            "/api/chargers/no-such-charger/transactions", headers=await world.headers("stranger")
        )
        assert missing.status_code == 404
        for who in ("stranger", "other_admin"):
            response = await client.get(
                f"/api/chargers/{old}/transactions", headers=await world.headers(who)
            )
            same = response.json() | {"request_id": None} == missing.json() | {"request_id": None}
            assert response.status_code == 404 and same, who
        assert (await client.get(f"/api/chargers/{old}/transactions")).status_code == 401
        assert (await client.get("/api/me/transactions")).status_code == 401


async def test_my_sessions_are_mine_at_every_charger(ctx: Context, canaries: Canaries) -> None:
    world = await sessions_world(ctx, canaries)
    # The member also charged at the wallbox (1.6 this time) after being assigned to it.
    wallbox = world.chargers["wallbox"]
    await grants.assign(ctx, world.actor("super_admin"), wallbox.id, world.users["member"].id)
    handler = HandlerContext(
        charger_id=wallbox.serial, version=OcppVersion.V16, backend=DbOcppBackend(ctx),
        clock=ctx.clock,
    )  # fmt: skip
    start = {
        "connectorId": 1,
        "idTag": MEMBER_CODE,
        "meterStart": 400,
        "timestamp": _when(ctx, 600),
    }
    started = await start_transaction_v16(handler, start)
    await stop_transaction_v16(
        handler,
        {
            "transactionId": started.payload["transactionId"],
            "meterStop": 2400,
            "timestamp": _when(ctx, 660),
            "reason": "EVDisconnected",
        },
    )
    mine = await _get(world, "member", "/api/me/transactions")
    assert [(t["charger_serial"], t["energy_wh"], t["stop_reason"]) for t in mine] == [
        ("WB-100001", 2000, "EVDisconnected"),
        ("WB-400004", 3500, "Local"),
    ]
    assert [t["token_type"] for t in mine] == ["KeyCode", "KeyCode"]
    owner = await _get(world, "owner", "/api/me/transactions")  # not the others' at their chargers
    assert [t["transaction_id"] for t in owner] == ["tx-owner"]
    assert await _get(world, "stranger", "/api/me/transactions") == []


async def test_no_token_value_in_any_answer(ctx: Context, canaries: Canaries) -> None:
    world = await sessions_world(ctx, canaries)
    # A refused code starts nothing that names it either.
    await charge_v201(
        ctx, "WB-400004", "tx-refused", keycode(WRONG_CODE), start_wh=0, stop_wh=0, minutes=300
    )
    texts = []
    async with client_for(ctx) as client:
        for who in ("owner", "member", "super_admin"):
            headers = await world.headers(who)
            for path in (
                f"/api/chargers/{world.chargers['old'].id}/transactions",
                "/api/me/transactions",
            ):
                texts.append((await client.get(path, headers=headers)).text)
    joined = "\n".join(texts)
    assert "tx-refused" in joined  # the owner sees it, by type only
    for value in (OWNER_CODE, MEMBER_CODE, RFID, WRONG_CODE):
        assert value not in joined
    # (and the ctx fixture scans the whole database for the codes after the test)


async def test_a_revoked_user_still_sees_their_past_sessions_but_not_the_charger(
    ctx: Context, canaries: Canaries
) -> None:
    world = await sessions_world(ctx, canaries)
    old = world.chargers["old"]
    views = await grants.list_grants(ctx, world.actor("owner"), old.id)
    grant = next(
        v.grant
        for v in views
        if v.grant.user_id == world.users["member"].id and v.grant.kind == GrantKind.USER
    )
    await grants.revoke_grant(ctx, world.actor("owner"), old.id, grant.id)
    assert [t["transaction_id"] for t in await _get(world, "member", "/api/me/transactions")] == [
        "tx-member"
    ]
    async with client_for(ctx) as client:
        response = await client.get(
            f"/api/chargers/{old.id}/transactions", headers=await world.headers("member")
        )
    assert response.status_code == 404


def _keypad(ctx: Context, serial: str) -> tuple[HandlerContext, Any, Any]:
    """A charger's keypad as the charger uses it over one connection: ``typed`` sends an
    Authorize, ``started`` a Started TransactionEvent carrying the code; both return the
    status the server answered."""
    handler = HandlerContext(
        charger_id=serial, version=OcppVersion.V201, backend=DbOcppBackend(ctx), clock=ctx.clock
    )

    async def typed(code: str) -> str:
        reply = await authorize_v201(handler, {"idToken": keycode(code)})
        return str(reply.payload["idTokenInfo"]["status"])

    async def started(transaction_id: str, code: str) -> str:
        reply = await transaction_event_v201(
            handler,
            {
                "eventType": "Started",
                "timestamp": _when(ctx, 600),
                "triggerReason": "Authorized",
                "seqNo": 0,
                "transactionInfo": {"transactionId": transaction_id},
                "idToken": keycode(code),
            },
        )
        return str(reply.payload["idTokenInfo"]["status"])

    return handler, typed, started


async def test_a_transaction_start_after_its_authorize_is_not_a_second_keypad_attempt(
    ctx: Context, canaries: Canaries
) -> None:
    """The charger asks about a typed code (Authorize), then reports the transaction with
    the same code: one attempt at the keypad, counted once."""
    world = await sessions_world(ctx, canaries)
    old = world.chargers["old"]
    _, typed, started = _keypad(ctx, old.serial)
    locked = f"keypad:{old.id}"
    await ctx.keypad_throttle.success(locked)  # the world's unknown card counted as one miss
    for _ in range(ctx.keypad_throttle.rules.max_failures - 1):
        assert await typed(WRONG_CODE) == "Invalid"
    # A charger that started the transaction on plug-in reports it with the code it just
    # asked about: the same answer, and no further failure.
    assert await started("tx-plugged-in", WRONG_CODE) == "Invalid"
    assert await ctx.keypad_throttle.is_locked(locked) is None
    assert await typed(WRONG_CODE) == "Invalid"  # the next typed code locks the keypad
    assert await ctx.keypad_throttle.is_locked(locked) is not None


async def test_a_transaction_start_is_answered_from_its_authorize(
    ctx: Context, canaries: Canaries, monkeypatch: Any
) -> None:
    world = await sessions_world(ctx, canaries)
    old = world.chargers["old"]
    _, typed, started = _keypad(ctx, old.serial)
    lookups: list[str] = []
    resolve = keypad_pins.resolve

    async def counted(ctx_: Context, charger_id: str, pin: str) -> str | None:
        lookups.append(charger_id)
        return await resolve(ctx_, charger_id, pin)

    monkeypatch.setattr(keypad_pins, "resolve", counted)
    assert await typed(OWNER_CODE) == "Accepted"
    assert await started("tx-after-authorize", OWNER_CODE) == "Accepted"
    assert lookups == [old.id]  # one lookup for the Authorize and the start together
    # A start no Authorize came before (an offline session, a charger that sends none) is
    # looked up, and a different code is not answered from the last Authorize.
    assert await started("tx-offline", MEMBER_CODE) == "Accepted"
    assert await started("tx-other", WRONG_CODE) == "Invalid"
    assert lookups == [old.id] * 3
    async with ctx.db.read() as session:
        users = dict(
            (
                await session.execute(
                    select(Transaction.transaction_id, Transaction.user_id).where(
                        Transaction.charger_id == old.id
                    )
                )
            ).all()
        )
    assert users["tx-after-authorize"] == world.users["owner"].id
    assert users["tx-offline"] == world.users["member"].id
    assert users["tx-other"] is None
