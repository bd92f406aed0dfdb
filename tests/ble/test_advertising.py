"""Supervised advertising: under connection churn the charger stays discoverable."""

from __future__ import annotations

import asyncio
import os
from typing import Any
from uuid import UUID

import pytest
from bumble import hci
from bumble.core import AdvertisingData
from bumble.device import Advertisement

from evaccess.app.ble.central import PhoneCentral
from evaccess.charger.ble.advertising import AdvertisingSupervisor
from evaccess.protocol import ble_access as proto
from tests.ble.conftest import SERIAL, Rig
from tests.charger.csms import eventually

SOAK_ROUNDS = int(os.environ.get("EVACCESS_BLE_SOAK_ROUNDS", "500"))


class RefusingController:
    """Makes the charger's virtual controller refuse the next ``left`` advertising starts
    with an HCI error, as a real controller does at its connection limit."""

    def __init__(self, rig: Rig) -> None:
        self.left = 0
        controller: Any = rig.link._controllers[0]
        for name, enabled in (
            ("on_hci_le_set_advertising_enable_command", "advertising_enable"),
            ("on_hci_le_set_extended_advertising_enable_command", "enable"),
        ):
            setattr(controller, name, self._refusing(getattr(controller, name), enabled))

    def _refusing(self, original: Any, enabled: str) -> Any:
        def handler(command: Any) -> Any:
            if getattr(command, enabled) and self.left > 0:
                self.left -= 1
                return hci.HCI_StatusReturnParameters(hci.HCI_ErrorCode.COMMAND_DISALLOWED_ERROR)
            return original(command)

        return handler


async def churn(rig: Rig, rounds: int, refusals: int = 0) -> None:
    """One phone connects, a second connects, both leave; the charger must be discoverable
    after every round. The controller refuses ``refusals`` advertising starts each round."""
    controller = RefusingController(rig)
    async with (
        PhoneCentral(rig.link.transports[1], rng=rig.rng, name="phone-a") as first,
        PhoneCentral(rig.link.transports[2], rng=rig.rng, name="phone-b") as second,
    ):
        for round_no in range(rounds):
            controller.left = refusals  # the restarts after this connection
            one = await first.connect(SERIAL)
            two = await second.connect(SERIAL)
            await asyncio.gather(one.close(), two.close())  # both leave at once
            await eventually(lambda: not rig.charger.links, what=f"both links gone ({round_no})")
            await first.find(SERIAL, within_s=5.0)  # NotFound fails the test


async def test_the_charger_stays_discoverable_under_connection_churn(rig: Rig) -> None:
    await churn(rig, rounds=5)


async def test_a_refused_advertising_start_is_retried(rig: Rig) -> None:
    await churn(rig, rounds=3, refusals=2)


@pytest.mark.e2e
@pytest.mark.timeout(max(60, SOAK_ROUNDS * 60 // 500))
async def test_soak_connection_churn_with_two_phones(rig: Rig) -> None:
    """``EVACCESS_BLE_SOAK_ROUNDS`` rounds (500 by default), bounded: 500 rounds in under 60 s
    (about 25 s on two busy cores; issue 12)."""
    await churn(rig, rounds=SOAK_ROUNDS, refusals=1)


async def test_restarts_never_overlap_and_failures_back_off() -> None:
    state = {"advertising": False, "inside": 0, "fail": 3}
    slept: list[float] = []
    done = asyncio.Event()

    async def start() -> None:
        state["inside"] += 1
        assert state["inside"] == 1, "two starts overlap"
        await asyncio.sleep(0)
        state["inside"] -= 1
        if state["fail"]:
            state["fail"] -= 1
            raise RuntimeError("HCI error")
        state["advertising"] = True
        done.set()

    async def sleep(delay: float) -> None:
        slept.append(delay)

    supervisor = AdvertisingSupervisor(start, lambda: state["advertising"], sleep=sleep)
    for _ in range(10):  # a burst of connections and disconnections
        supervisor.kick()
    await asyncio.wait_for(done.wait(), 5)
    assert slept == [0.0, 0.05, 0.1] and supervisor.failures == 3
    supervisor.kick()  # already advertising: nothing to do
    supervisor.stop()


async def test_the_scan_response_lists_the_service_uuid_as_section_2_says(rig: Rig) -> None:
    """Issue 12: a phone filtering on the access service UUID (section 2) must find the
    charger: the advertising data carries flags and name, the scan response the UUID (not a
    copy of the advertising data). Raw HCI reports, before Bumble merges the two."""
    reports: list[Advertisement] = []
    async with PhoneCentral(rig.link.transports[1], rng=rig.rng, name="scanner") as scanner:
        assert scanner.device is not None

        def on_report(report: Any) -> None:
            if (advertisement := Advertisement.from_advertising_report(report)) is not None:
                reports.append(advertisement)

        scanner.device.host.on("advertising_report", on_report)
        await scanner.device.start_scanning(active=True, filter_duplicates=False)
        try:
            await eventually(
                lambda: (
                    any(r.is_scan_response for r in reports)
                    and any(not r.is_scan_response for r in reports)
                ),
                what="an advertisement and its scan response",
            )
        finally:
            await scanner.device.stop_scanning()
    uuids = AdvertisingData.COMPLETE_LIST_OF_128_BIT_SERVICE_CLASS_UUIDS
    advertising = next(r.data for r in reports if not r.is_scan_response)
    response = next(r.data for r in reports if r.is_scan_response)
    assert advertising.get(AdvertisingData.COMPLETE_LOCAL_NAME) == proto.advertised_name(SERIAL)
    assert bytes(response) != bytes(advertising)
    assert [UUID(str(u)) for u in response.get(uuids)] == [proto.SERVICE_UUID]


@pytest.mark.parametrize("step", ["scan", "connect"])
async def test_the_virtual_link_brings_an_advertisers_next_pdu_forward(rig: Rig, step: str) -> None:
    """A scanner or initiator on the virtual link hears an advertiser at once, not after its
    advertising interval: with a 5 s interval, the phone finds and connects within 2 s."""
    async with (
        PhoneCentral(rig.link.transports[1], rng=rig.rng, name="phone") as phone,
        PhoneCentral(rig.link.transports[2], rng=rig.rng, name="slow") as slow,
    ):
        assert slow.device is not None and phone.device is not None
        await slow.device.start_advertising(
            advertising_data=bytes(
                AdvertisingData(
                    [(AdvertisingData.COMPLETE_LOCAL_NAME, proto.advertised_name("SLOW").encode())]
                )
            ),
            advertising_interval_min=5000,
            advertising_interval_max=5000,
        )
        # the first PDU went out when advertising was enabled: the next is due in 5 s
        if step == "scan":
            await phone.find("SLOW", within_s=2.0)  # NotFound fails the test
        else:  # straight to the known address, no scan first
            connection = await phone._try_connect(slow.device.random_address, within_s=2.0)
            assert connection is not None
