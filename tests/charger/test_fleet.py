"""The fleet in process: 1.6J boots, and server Calls during the hold are answered."""

from __future__ import annotations

import asyncio

import pytest
from ocpp import v16
from ocpp.exceptions import NotSupportedError

from evaccess.charger.fleet import FleetCredential, FleetOptions, run_fleet
from evaccess.domain.clock import SystemClock
from evaccess.protocol.ocpp_frames import OcppVersion
from tests.charger.csms import TestCsms
from tests.support import eventually


async def test_ocpp16_fleet_boots_and_answers_calls_while_held():
    credentials = [FleetCredential(serial=f"F16-{i}", password=f"pw-{i}") for i in range(5)]
    csms = TestCsms(passwords={c.serial: c.password for c in credentials})
    await csms.start()
    try:
        options = FleetOptions(server=csms.url, protocol=OcppVersion.V16, hold_s=1.0)
        fleet = asyncio.create_task(run_fleet(credentials, options, clock=SystemClock()))
        await eventually(
            lambda: len(csms.records) == 5 and all(r.boots for r in csms.records.values())
        )
        with pytest.raises(NotSupportedError):
            await csms.charge_points["F16-3"].call(v16.call.GetLocalListVersion(), suppress=False)
        report = await fleet
    finally:
        await csms.stop()
    assert (report.booted, report.failed, report.connected) == (5, 0, 5)
    assert csms.records["F16-0"].boots[0]["charge_point_serial_number"] == "F16-0"
