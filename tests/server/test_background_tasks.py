"""The server's background tasks (``runner.start_background_tasks``): nothing has to ask for
an open transfer past its time to be recorded as expired, nor for an approved claim to be
handed over once its objection window closes."""

from __future__ import annotations

from evaccess.domain.access import StaffRole
from evaccess.domain.claim import OBJECTION_WINDOW
from evaccess.domain.clock import ManualClock
from evaccess.domain.ownership_transfer import TRANSFER_TTL, TransferState
from evaccess.server.context import Context
from evaccess.server.db.models import OwnershipTransfer
from evaccess.server.runner import start_background_tasks, stop_background_tasks
from evaccess.server.services import accounts, claims, ownership, transfers
from evaccess.server.services.relations import Actor
from tests.server.support import PASSWORD, build_world
from tests.support import eventually


async def _state(ctx: Context, transfer_id: str) -> str:
    async with ctx.db.read() as session:
        row = await session.get_one(OwnershipTransfer, transfer_id)
        return row.state


async def test_open_transfers_past_their_time_are_expired_by_the_server(
    ctx: Context, clock: ManualClock
) -> None:
    world = await build_world(ctx)
    charger = world.chargers["wallbox"].id
    started = await transfers.start_transfer(
        ctx, world.actor("owner"), charger, "buyer@example.com"
    )
    tasks = start_background_tasks(ctx, transfer_expiry_interval_s=0.01)
    try:
        assert await _state(ctx, started.id) == TransferState.OPEN.value
        clock.advance(TRANSFER_TTL.total_seconds())

        async def expired() -> bool:
            return await _state(ctx, started.id) == TransferState.EXPIRED.value

        await eventually(expired, "the background task to record the lapse")
    finally:
        await stop_background_tasks(tasks)


async def test_approved_claims_are_handed_over_when_the_window_closes(
    ctx: Context, clock: ManualClock
) -> None:
    world = await build_world(ctx)
    charger = world.chargers["wallbox"]
    claim = await claims.file_claim(
        ctx, world.actor("stranger"), charger.serial, installation_address="1 Quay St",
        installer_name="Volt", document=b"%PDF-1.7\n%%EOF\n",
    )  # fmt: skip
    for name in ("agent-a", "agent-b"):
        user = await accounts.create_user(ctx, f"{name}@support.example", PASSWORD)
        agent = Actor(user_id=user.id, email=user.email, staff_role=StaffRole.SUPPORT)
        await claims.approve(ctx, agent, claim.id)
    tasks = start_background_tasks(ctx, transfer_expiry_interval_s=0.01)
    try:
        clock.advance(OBJECTION_WINDOW.total_seconds())

        async def handed_over() -> bool:
            async with ctx.db.read() as session:
                owned = await ownership.current(session, charger.id)
            return owned is not None and owned.owner_id == world.users["stranger"].id

        await eventually(handed_over, "the background task to hand the charger over")
    finally:
        await stop_background_tasks(tasks)
