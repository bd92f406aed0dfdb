"""The server's background tasks (``runner.start_background_tasks``): nothing has to ask for
an open transfer past its time to be recorded as expired."""

from __future__ import annotations

from evaccess.domain.clock import ManualClock
from evaccess.domain.ownership_transfer import TRANSFER_TTL, TransferState
from evaccess.server.context import Context
from evaccess.server.db.models import OwnershipTransfer
from evaccess.server.runner import start_background_tasks, stop_background_tasks
from evaccess.server.services import transfers
from tests.server.support import build_world
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
