"""The outbox of server -> charger commands. Services add commands inside their own
transaction and poke the OCPP endpoint after committing; a charger that is offline receives
them when it reconnects. A newer command of the same kind supersedes an undelivered one.

Cluster mode: the poke of a charger connected to another node travels as a wake-up through
Redis, at most once; every node also ``sweep``s the outbox of the chargers connected to it
(``runner``), so a lost wake-up only delays. Delivery stays at least once, by command id."""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from evaccess.server.context import Context
from evaccess.server.db.models import Charger, OutboxCommand


class CommandKind(StrEnum):
    SET_BLUETOOTH_PIN = "set_bluetooth_pin"
    REVOKE_CREDENTIALS = "revoke_credentials"
    REENABLE_PIN_PAIRING = "reenable_pin_pairing"
    SEND_LOCAL_LIST = "send_local_list"
    CLEAR_CACHE = "clear_cache"
    SET_MASTER_PASS_GROUP = "set_master_pass_group"


# Kinds where only the newest undelivered command matters.
SUPERSEDING = frozenset(
    {
        CommandKind.SET_BLUETOOTH_PIN,
        CommandKind.SEND_LOCAL_LIST,
        CommandKind.CLEAR_CACHE,
        CommandKind.SET_MASTER_PASS_GROUP,
    }
)


async def queue(
    session: AsyncSession, ctx: Context, charger_id: str, kind: CommandKind, **arguments: Any
) -> OutboxCommand:
    now = ctx.clock.now()
    if kind in SUPERSEDING:
        await session.execute(
            update(OutboxCommand)
            .where(
                OutboxCommand.charger_id == charger_id,
                OutboxCommand.kind == kind,
                OutboxCommand.completed_at.is_(None),
            )
            .values(completed_at=now)
        )
    command = new_command(ctx, charger_id, kind, **arguments)
    session.add(command)
    await session.flush()
    return command


@dataclass(frozen=True, kw_only=True, slots=True)
class Delivery:
    """A command committed to the outbox, and whether its charger is connected to take it
    now; an offline charger gets it when it next connects."""

    command_id: str
    kind: CommandKind
    charger_online: bool


async def send(ctx: Context, charger: Charger, command: OutboxCommand) -> Delivery:
    """After the commit of ``command``: wake the node holding ``charger`` and tell the
    caller whether it is connected (``NotifierSlot.reaches``)."""
    online = await ctx.notifier.reaches(charger.serial, recorded=charger.online)
    ctx.notifier.poke(charger.serial)
    return Delivery(command_id=command.id, kind=CommandKind(command.kind), charger_online=online)


def new_command(
    ctx: Context, charger_id: str, kind: CommandKind, **arguments: Any
) -> OutboxCommand:
    """A command not yet added to a session: for a charger that has no commands yet (bulk
    registration adds many at once; ``queue`` is the general way)."""
    return OutboxCommand(
        charger_id=charger_id,
        kind=kind,
        arguments=json.dumps(arguments),
        created_at=ctx.clock.now(),
    )


async def open_commands(session: AsyncSession, charger_id: str) -> list[OutboxCommand]:
    return list(
        (
            await session.scalars(
                select(OutboxCommand)
                .where(OutboxCommand.charger_id == charger_id, OutboxCommand.completed_at.is_(None))
                .order_by(OutboxCommand.created_at, OutboxCommand.id)
            )
        ).all()
    )


def arguments(command: OutboxCommand) -> dict[str, Any]:
    loaded = json.loads(command.arguments)
    assert isinstance(loaded, dict)
    return loaded


SWEEP_CHUNK = 1000


async def sweep(ctx: Context) -> int:
    """Poke every charger connected to this node that has open commands; how many."""
    target = ctx.notifier.target
    if target is None:
        return 0
    connected = target.connected_chargers()
    waiting: list[str] = []
    for start in range(0, len(connected), SWEEP_CHUNK):
        async with ctx.db.read() as session:
            waiting += await session.scalars(
                select(Charger.serial)
                .join(OutboxCommand, OutboxCommand.charger_id == Charger.id)
                .where(
                    Charger.serial.in_(connected[start : start + SWEEP_CHUNK]),
                    OutboxCommand.completed_at.is_(None),
                )
                .distinct()
            )
    for serial in waiting:
        ctx.notifier.poke_here(serial)
    return len(waiting)
