"""Registering many chargers at once (``registration.register_many``): one transaction, the same
rows and audit records as ``register`` writes for each, and nothing at all on a duplicate."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select

from evaccess.domain.errors import Conflict, InvalidInput
from evaccess.server.db.models import AuditRecord, BluetoothPin, Charger, OutboxCommand
from evaccess.server.services import registration
from evaccess.server.services.ocpp_backend import DbOcppBackend
from tests.server.support import build_world

FACTS = {"vendor": "Wallbox", "model": "Pulsar Max", "firmware": "6.11.4"}


async def _count(ctx, model) -> int:
    async with ctx.db.read() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


async def test_register_many_writes_what_register_writes_for_each(ctx, canaries):
    world = await build_world(ctx)
    seen: list[int] = []
    kept: list[list[str]] = []
    registrations = await registration.register_many(
        ctx,
        world.actor("super_admin"),
        organisation_id=world.org.id,
        serials=["FL-1", "FL-2", "FL-3"],
        **FACTS,
        keep=lambda regs: kept.append([r.charger.serial for r in regs]),
        progress=seen.append,
    )
    canaries.add(*(r.ocpp_password for r in registrations))
    assert [r.charger.serial for r in registrations] == ["FL-1", "FL-2", "FL-3"]
    assert kept == [["FL-1", "FL-2", "FL-3"]]
    assert seen[-1] == 3
    assert len({r.ocpp_password for r in registrations}) == 3

    backend = DbOcppBackend(ctx)
    for reg in registrations:
        outcome = await backend.authenticate(reg.charger.serial, reg.ocpp_password)
        assert outcome.value == "accepted"

    # The Bluetooth PIN rows and push commands are those ``register`` makes.
    single = await registration.register(
        ctx, world.actor("super_admin"), organisation_id=world.org.id, serial="FL-9", **FACTS
    )
    canaries.add(single.ocpp_password)
    async with ctx.db.snapshot() as session:
        ids = [r.charger.id for r in registrations] + [single.charger.id]
        pins = {p.charger_id: p for p in (await session.scalars(select(BluetoothPin))).all()}
        commands = (
            await session.scalars(select(OutboxCommand).where(OutboxCommand.charger_id.in_(ids)))
        ).all()
        audit = (
            await session.scalars(
                select(AuditRecord)
                .where(AuditRecord.action == "charger.registered")
                .where(AuditRecord.charger_id.in_(ids))
                .order_by(AuditRecord.seq)
            )
        ).all()
        report = await ctx.audit.verify(session)
    shape = {
        charger_id: (
            pins[charger_id].enabled,
            pins[charger_id].pending_ciphertext is not None,
            pins[charger_id].active_ciphertext is None,
        )
        for charger_id in ids
    }
    assert len(set(shape.values())) == 1, shape
    assert sorted((c.charger_id, c.kind) for c in commands) == sorted(
        (charger_id, "set_bluetooth_pin") for charger_id in ids
    )
    assert [(r.charger_id, r.actor_id, r.organisation_id) for r in audit] == [
        (charger_id, world.users["super_admin"].id, world.org.id) for charger_id in ids
    ]
    assert json.loads(audit[0].details) == {"serial": "FL-1", **FACTS}
    assert report.ok


@pytest.mark.parametrize(
    ("serials", "error", "named"),
    [
        (["FL-1", "WB-100001", "FL-2"], Conflict, "WB-100001"),  # registered before
        (["FL-1", "FL-2", "FL-1"], InvalidInput, "FL-1"),  # listed twice
        (["FL-1", "no spaces allowed"], InvalidInput, "no spaces allowed"),
    ],
)
async def test_register_many_refuses_a_bad_serial_and_writes_nothing(ctx, serials, error, named):
    world = await build_world(ctx)
    chargers_before, audit_before = await _count(ctx, Charger), await _count(ctx, AuditRecord)
    kept: list[object] = []
    with pytest.raises(error) as raised:
        await registration.register_many(
            ctx,
            world.actor("super_admin"),
            organisation_id=world.org.id,
            serials=serials,
            **FACTS,
            keep=kept.append,
        )
    assert named in raised.value.message
    assert "\n" not in raised.value.message
    assert kept == []
    assert (await _count(ctx, Charger), await _count(ctx, AuditRecord)) == (
        chargers_before,
        audit_before,
    )


async def test_nothing_is_registered_when_the_passwords_cannot_be_kept(ctx):
    world = await build_world(ctx)
    before = await _count(ctx, Charger)

    def disk_full(_registrations: object) -> None:
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError):
        await registration.register_many(
            ctx,
            world.actor("super_admin"),
            organisation_id=world.org.id,
            serials=[f"FL-{n}" for n in range(10)],
            **FACTS,
            keep=disk_full,
        )
    assert await _count(ctx, Charger) == before


async def test_register_many_needs_the_right_to_register(ctx):
    world = await build_world(ctx)
    from evaccess.domain.errors import PermissionDenied

    with pytest.raises(PermissionDenied):
        await registration.register_many(
            ctx,
            world.actor("member"),
            organisation_id=world.org.id,
            serials=["FL-1"],
            **FACTS,
        )
