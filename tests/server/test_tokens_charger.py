"""Cards at the evaccess charger firmware against the real endpoint on the database backend
(issue 11): the charger's authorization cache learns Accepted answers with the expiry the
server set, uses them offline after its local list, forgets them on ClearCache (sent when a
card is revoked) and past their expiry; and the organisation's MasterPassGroupId reaches the
charger, which enforces C16 offline (a master pass stops a session, starts none)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from evaccess.charger.config import Backoff, ChargerConfig
from evaccess.charger.firmware import KeypadOutcome
from evaccess.charger.run import RunningCharger, run_charger
from evaccess.domain.access import GrantKind
from evaccess.domain.tokens import TokenStatus, TokenType
from evaccess.protocol.ocpp_frames import OcppVersion
from evaccess.server.context import Context
from evaccess.server.db.models import OutboxCommand
from evaccess.server.ocpp.server import OcppServer, serve_ocpp
from evaccess.server.services import organisations, outbox, tokens
from evaccess.server.services.ocpp_backend import DbOcppBackend
from tests.charger.conftest import SeededRandom
from tests.conftest import Canaries
from tests.server.support import World, build_world, share
from tests.support import eventually

CARD = "04A2B3C4D5E680"
MASTER_CARD = "8899AABB"
ISO14443 = TokenType.ISO14443.value


@pytest.fixture
async def world(ctx: Context, canaries: Canaries) -> World:
    canaries.add(CARD, MASTER_CARD)
    world = await build_world(ctx)
    await share(world, "wallbox", "member", GrantKind.USER)
    return world


class Endpoint:
    """The OCPP endpoint, stopped and started again on the same port (charger offline)."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.server: OcppServer | None = None
        self.port = 0

    async def start(self) -> None:
        self.server = await serve_ocpp(
            DbOcppBackend(self.ctx), port=self.port, clock=self.ctx.clock
        )
        self.port = self.server.port
        self.ctx.notifier.target = self.server.notifier

    async def stop(self) -> None:
        assert self.server is not None
        self.ctx.notifier.target = None
        await self.server.close()
        self.server = None


@pytest.fixture
async def endpoint(ctx: Context) -> AsyncIterator[Endpoint]:
    endpoint = Endpoint(ctx)
    await endpoint.start()
    yield endpoint
    if endpoint.server is not None:
        await endpoint.stop()


async def start_charger(
    ctx: Context,
    world: World,
    endpoint: Endpoint,
    tmp_path: Path,
    version: OcppVersion,
    *,
    session_s: float = 0.2,
    key: str = "wallbox",
) -> tuple[RunningCharger, asyncio.Task[Any]]:
    charger = world.chargers[key]
    config = ChargerConfig(
        serial=charger.serial,
        vendor=charger.vendor,
        model=charger.model,
        firmware=charger.firmware or "1.0",
        server=f"ws://127.0.0.1:{endpoint.port}/ocpp",
        password=world.ocpp_passwords[key],
        protocol=version,
        state_dir=tmp_path / "charger",
        session_s=session_s,
        backoff=Backoff(initial_s=0.05, max_s=0.2),
        response_timeout_s=5.0,
    )
    found: list[RunningCharger] = []
    task = asyncio.create_task(
        run_charger(config, clock=ctx.clock, rng=SeededRandom(), say=lambda _: None,
                    started=found.append)
    )  # fmt: skip
    await eventually(lambda: bool(found) and found[0].firmware.link is not None, what="boot")
    return found[0], task


async def online(running: RunningCharger) -> None:
    await eventually(lambda: running.firmware.link is not None, what="online")


async def offline(endpoint: Endpoint, running: RunningCharger) -> None:
    await endpoint.stop()
    await eventually(lambda: running.firmware.link is None, what="offline")


async def present(running: RunningCharger, number: str) -> KeypadOutcome:
    decision = await running.firmware.enter_code(number, token_type=ISO14443)
    if decision.outcome is KeypadOutcome.ACCEPTED:
        await running.firmware.session_ended()
    return decision.outcome


async def completed(ctx: Context, kind: outbox.CommandKind) -> list[OutboxCommand]:
    async with ctx.db.read() as session:
        rows = await session.scalars(
            select(OutboxCommand).where(
                OutboxCommand.kind == kind, OutboxCommand.completed_at.is_not(None)
            )
        )
        return list(rows.all())


@pytest.mark.parametrize("version", [OcppVersion.V201, OcppVersion.V16])
async def test_a_revoked_card_stops_working_offline_after_clear_cache_and_past_its_expiry(
    ctx: Context, world: World, endpoint: Endpoint, tmp_path: Path, version: OcppVersion
) -> None:
    assert world.org is not None
    sa = world.actor("super_admin")
    card = await tokens.add_card(
        ctx, sa, world.org.id, user_id=world.users["member"].id,
        token_type=TokenType.ISO14443, number=CARD,
    )  # fmt: skip
    running, task = await start_charger(ctx, world, endpoint, tmp_path, version)
    try:
        assert await present(running, CARD) is KeypadOutcome.ACCEPTED  # online: learnt
        [entry] = running.firmware.authorization.cache
        assert entry.token_type == ISO14443
        await running.firmware.outbox.drained()
        await offline(endpoint, running)
        assert await present(running, CARD) is KeypadOutcome.ACCEPTED  # from the cache

        # blocked on the server: ClearCache reaches the charger, which answers Accepted
        await endpoint.start()
        await online(running)
        await tokens.update_card(ctx, sa, card.id, status=TokenStatus.BLOCKED)

        async def cleared() -> bool:
            done = await completed(ctx, outbox.CommandKind.CLEAR_CACHE)
            return bool(done) and all(c.accepted for c in done)

        await eventually(cleared, what="ClearCache answered Accepted")
        assert running.firmware.authorization.cache == ()
        await offline(endpoint, running)
        assert await present(running, CARD) is KeypadOutcome.REJECTED

        # a cached answer past the expiry the server set is not used
        await endpoint.start()
        await online(running)
        await tokens.update_card(ctx, sa, card.id, status=TokenStatus.ACCEPTED)
        assert await present(running, CARD) is KeypadOutcome.ACCEPTED
        await running.firmware.outbox.drained()
        await offline(endpoint, running)
        ctx.clock.advance(ctx.auth_cache_ttl_s + 1)  # type: ignore[attr-defined]
        assert await present(running, CARD) is KeypadOutcome.REJECTED
        assert running.firmware.authorization.cache == ()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_the_master_pass_group_reaches_the_charger_which_enforces_c16_offline(
    ctx: Context, world: World, endpoint: Endpoint, tmp_path: Path
) -> None:
    assert world.org is not None
    sa = world.actor("super_admin")
    for user, number, group in (("member", CARD, None), ("super_admin", MASTER_CARD, "MASTER")):
        await tokens.add_card(
            ctx, sa, world.org.id, user_id=world.users[user].id,
            token_type=TokenType.ISO14443, number=number, group_id_token=group,
        )  # fmt: skip
    running, task = await start_charger(
        ctx, world, endpoint, tmp_path, OcppVersion.V201, session_s=60
    )
    firmware = running.firmware
    try:
        assert firmware.authorization.master_pass_group_id is None
        await tokens.set_master_pass_group(ctx, sa, world.org.id, "master")
        await eventually(
            lambda: firmware.authorization.master_pass_group_id == "MASTER",
            what="SetVariables AuthCtrlr.MasterPassGroupId",
        )
        pushed = await eventually(
            lambda: completed(ctx, outbox.CommandKind.SET_MASTER_PASS_GROUP), what="answered"
        )
        assert [c.accepted for c in pushed] == [True]

        # online: the master pass is Accepted by Authorize (and learnt) but starts nothing
        assert await present(running, MASTER_CARD) is KeypadOutcome.REJECTED
        # re-pushed on every boot, like the Bluetooth PIN settings
        await endpoint.stop()
        await endpoint.start()
        await eventually(
            lambda: completed(ctx, outbox.CommandKind.SET_MASTER_PASS_GROUP),
            what="the boot's push",
        )

        async def pushes() -> int:
            return len(await completed(ctx, outbox.CommandKind.SET_MASTER_PASS_GROUP))

        await eventually(lambda: _at_least(pushes, 2), what="a second push after the boot")
        # online too: the card (learnt) starts a session, the master pass stops it
        first = await firmware.enter_code(CARD, token_type=ISO14443)
        assert first.outcome is KeypadOutcome.ACCEPTED
        master = await firmware.enter_code(MASTER_CARD, token_type=ISO14443)
        assert master.outcome is KeypadOutcome.STOPPED
        await firmware.outbox.drained()

        # offline (cache): the card starts a session, the master pass stops it, starts none
        await offline(endpoint, running)
        started = await firmware.enter_code(CARD, token_type=ISO14443)
        assert started.outcome is KeypadOutcome.ACCEPTED and started.offline
        stopped = await firmware.enter_code(MASTER_CARD, token_type=ISO14443)
        assert (stopped.outcome, stopped.transaction_id) == (
            KeypadOutcome.STOPPED,
            started.transaction_id,
        )
        assert firmware.transaction_id is None
        assert await present(running, MASTER_CARD) is KeypadOutcome.REJECTED
        [*_, end] = [m for m in firmware.outbox._messages if m.action == "TransactionEvent"]
        assert end.payload["transaction_info"]["stopped_reason"] == "MasterPass"

        # cleared on the server: cleared on the charger
        await endpoint.start()
        await online(running)
        await tokens.set_master_pass_group(ctx, sa, world.org.id, None)
        await eventually(
            lambda: firmware.authorization.master_pass_group_id is None, what="cleared"
        )
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def _at_least(count: Any, wanted: int) -> bool:
    return bool(await count() >= wanted)


async def test_16j_has_no_master_pass_key_the_command_completes_without_a_call(
    ctx: Context, world: World, endpoint: Endpoint, tmp_path: Path
) -> None:
    assert world.org is not None
    running, task = await start_charger(ctx, world, endpoint, tmp_path, OcppVersion.V16)
    try:
        await tokens.set_master_pass_group(ctx, world.actor("super_admin"), world.org.id, "M")
        await eventually(
            lambda: completed(ctx, outbox.CommandKind.SET_MASTER_PASS_GROUP), what="completed"
        )
        assert running.firmware.authorization.master_pass_group_id is None
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


@pytest.mark.parametrize("version", [OcppVersion.V201, OcppVersion.V16])
async def test_a_card_on_the_local_list_works_offline_until_its_expiry_in_both_versions(
    ctx: Context, world: World, endpoint: Endpoint, tmp_path: Path, version: OcppVersion
) -> None:
    """An organisation that opted in to offline use: the card reaches the charger's local
    list, and the charger finds it there offline (a 1.6J idTag has no type: the entry
    answers for a card as for a keypad code), until the card's own expiry."""
    assert world.org is not None
    sa = world.actor("super_admin")
    await organisations.update_settings(ctx, sa, world.org.id, offline_keypad=True)
    await share(world, "old", "member", GrantKind.USER)
    await tokens.add_card(
        ctx, sa, world.org.id, user_id=world.users["member"].id,
        token_type=TokenType.ISO14443, number=CARD,
        expires_at=ctx.clock.now() + timedelta(days=2),
    )  # fmt: skip
    running, task = await start_charger(ctx, world, endpoint, tmp_path, version, key="old")
    try:
        await eventually(
            lambda: any(e.id_token == CARD for e in running.firmware.local_list.entries),
            what="the card on the local list",
        )
        await offline(endpoint, running)
        assert running.firmware.authorization.cache == ()  # never presented online
        assert await present(running, CARD) is KeypadOutcome.ACCEPTED
        assert await present(running, "04A2B3C4D5E681") is KeypadOutcome.REJECTED
        ctx.clock.advance(timedelta(days=2).total_seconds())  # type: ignore[attr-defined]
        assert await present(running, CARD) is KeypadOutcome.REJECTED  # expired, offline
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
