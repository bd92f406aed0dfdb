"""A firmware version that is not a version is refused, named, where it enters (the REST
API, the service the CLI calls), and kept out of the PIN policy when a charger reports it."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from evaccess.domain.errors import InvalidInput
from evaccess.server.db.models import Charger, SecurityEvent
from evaccess.server.services import bluetooth_pins, registration
from tests.server.ocpp_boot import boot_over_ocpp
from tests.server.support import build_world, client_for

BAD = ["six.eleven", "6..11", ""]


@pytest.mark.parametrize("firmware", BAD)
async def test_registration_refuses_a_firmware_that_is_not_a_version(ctx, firmware):
    world = await build_world(ctx)
    admin = world.actor("super_admin")
    facts = {"vendor": "Wallbox", "model": "Pulsar Max", "firmware": firmware}
    with pytest.raises(InvalidInput) as one:
        await registration.register(
            ctx, admin, organisation_id=world.org.id, serial="WB-9", **facts
        )
    with pytest.raises(InvalidInput) as many:
        await registration.register_many(
            ctx, admin, organisation_id=world.org.id, serials=["WB-9", "WB-10"], **facts
        )
    for raised in (one, many):
        assert repr(firmware) in raised.value.message
    async with ctx.db.read() as session:
        assert await session.scalar(select(Charger).where(Charger.serial == "WB-9")) is None


async def test_the_rest_api_refuses_a_firmware_that_is_not_a_version(ctx):
    world = await build_world(ctx)
    async with client_for(ctx) as client:
        response = await client.post(
            f"/api/organisations/{world.org.id}/chargers",
            json={
                "serial": "WB-9",
                "vendor": "Wallbox",
                "model": "Pulsar Max",
                "firmware": "6..11",
            },
            headers=await world.headers("super_admin"),
        )
    assert response.status_code == 422
    problem = response.json()
    assert problem["code"] == "invalid_input"
    assert "'6..11'" in problem["detail"]


@pytest.mark.parametrize("version", ["ocpp2.0.1", "ocpp1.6"])
async def test_a_boot_with_an_unreadable_firmware_is_accepted_and_recorded(ctx, world, version):
    charger = world.chargers["wallbox"]  # Pulsar Max 6.11.4: mandatory PIN
    booted = await boot_over_ocpp(
        ctx,
        charger.serial,
        world.ocpp_passwords["wallbox"],
        vendor="Wallbox",
        model="Pulsar Max",
        firmware="six.eleven",
        version=version,
    )
    assert booted.reply[2]["status"] == "Accepted"
    async with ctx.db.read() as session:
        row = await session.get(Charger, charger.id)
        events = (
            await session.scalars(
                select(SecurityEvent).where(SecurityEvent.charger_id == charger.id)
            )
        ).all()
    assert row.firmware == "6.11.4"
    assert [e.event_type for e in events] == ["evaccess.FirmwareUnreadable"]
    assert "six.eleven" in events[0].tech_info
    assert bluetooth_pins.policy_of(row).requirement == "mandatory"


@pytest.fixture
async def world(ctx):
    return await build_world(ctx)
