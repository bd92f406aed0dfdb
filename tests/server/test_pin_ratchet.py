"""The Bluetooth PIN is a ratchet: what a charger reports at boot never lowers it.

A registered charger that boots with an older firmware, or as another vendor or model (the
emulator's defaults, a swapped board, a spoof), keeps the PIN its registration gave it; the
report is recorded as a security event the owner sees, and nothing else changes. Over real
OCPP-J, against the database backend."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from tests.server.ocpp_boot import boot_over_ocpp
from tests.server.support import add_charger, build_world, client_for


@pytest.fixture
async def world(ctx):
    world = await build_world(ctx)
    # Mandatory by its production date alone (firmware 6.8.2 < 6.11): a model change would
    # make it optional.
    await add_charger(
        world,
        "new_max",
        serial="WB-500005",
        vendor="Wallbox",
        model="Pulsar Max",
        firmware="6.8.2",
        owner="owner",
        production_date=date(2025, 9, 1),
    )
    return world


def pushed_required(pushes: list[list[Any]], canaries) -> str | None:
    """The PinRequired value of the SetVariables the server sent after the boot."""
    for call in pushes:
        if call[2] != "SetVariables":
            continue
        values = {i["variable"]["name"]: i["attributeValue"] for i in call[3]["setVariableData"]}
        canaries.add(values.get("Pin", ""))
        return values.get("PinRequired")
    return None


async def pin_state_and_events(ctx, world, key: str) -> tuple[dict[str, Any], list[str]]:
    charger = world.chargers[key]
    async with client_for(ctx) as client:
        headers = await world.headers("owner")
        state = (
            await client.get(f"/api/chargers/{charger.id}/bluetooth-pin", headers=headers)
        ).json()
        events = (
            await client.get(f"/api/chargers/{charger.id}/security-events", headers=headers)
        ).json()
        detail = (await client.get(f"/api/chargers/{charger.id}", headers=headers)).json()
    assert (detail["vendor"], detail["model"]) == (charger.vendor, charger.model)
    assert detail["firmware"] == charger.firmware
    return state, [e["event_type"] for e in events]


@pytest.mark.parametrize(
    ("key", "report", "expected_events"),
    [
        # Wallbox 6.11.4 reports 6.10.0: the policy would make the PIN optional.
        (
            "wallbox",
            {"vendor": "Wallbox", "model": "Pulsar Max", "firmware": "6.10.0"},
            ["evaccess.FirmwareDowngrade"],
        ),
        # The emulator's defaults: "other vendors: optional".
        (
            "wallbox",
            {"vendor": "evaccess", "model": "emulator", "firmware": "0.1.0"},
            ["evaccess.FirmwareDowngrade", "evaccess.ReportedIdentityChanged"],
        ),
        # Another model: the production-date rule no longer matches.
        (
            "new_max",
            {"vendor": "Wallbox", "model": "Pulsar Plus", "firmware": "6.8.2"},
            ["evaccess.ReportedIdentityChanged"],
        ),
    ],
)
async def test_a_reported_downgrade_keeps_a_mandatory_pin(
    ctx, world, canaries, key, report, expected_events
):
    before, _ = await pin_state_and_events(ctx, world, key)
    assert (before["requirement"], before["required"]) == ("mandatory", True)

    booted = await boot_over_ocpp(
        ctx, world.chargers[key].serial, world.ocpp_passwords[key], **report
    )

    assert booted.reply[2]["status"] == "Accepted"
    assert pushed_required(booted.pushes, canaries) == "true"
    after, events = await pin_state_and_events(ctx, world, key)
    assert (after["requirement"], after["required"], after["rule"]) == (
        "mandatory",
        True,
        before["rule"],
    )
    assert sorted(events) == expected_events


async def test_an_enabled_optional_pin_survives_a_firmware_without_pin_support(
    ctx, world, canaries
):
    charger = world.chargers["optional"]  # Wallbox Pulsar Plus 6.8.2: optional
    async with client_for(ctx) as client:
        enabled = await client.post(
            f"/api/chargers/{charger.id}/bluetooth-pin/enable", headers=await world.headers("owner")
        )
    assert enabled.status_code == 200, enabled.text
    booted = await boot_over_ocpp(
        ctx,
        charger.serial,
        world.ocpp_passwords["optional"],
        vendor="Wallbox",
        model="Pulsar Plus",
        firmware="6.7.0",  # before 6.7.17: no PIN at all, were it applied
    )
    assert pushed_required(booted.pushes, canaries) == "true"
    after, events = await pin_state_and_events(ctx, world, "optional")
    assert (after["requirement"], after["required"]) == ("optional", True)
    assert events == ["evaccess.FirmwareDowngrade"]


async def test_the_same_report_again_or_an_upgrade_records_nothing(ctx, world, canaries):
    for firmware in ("6.11.4", "6.12.0"):
        booted = await boot_over_ocpp(
            ctx,
            world.chargers["wallbox"].serial,
            world.ocpp_passwords["wallbox"],
            vendor="Wallbox",
            model="Pulsar Max",
            firmware=firmware,
        )
        assert pushed_required(booted.pushes, canaries) == "true"
    world.chargers["wallbox"].firmware = "6.12.0"  # the upgrade is applied
    after, events = await pin_state_and_events(ctx, world, "wallbox")
    assert after["requirement"] == "mandatory"
    assert events == []
