"""Real Bumble stacks on virtual controllers (one LocalLink served over TCP, as
`evaccess ble-link` does), the real charger peripheral, the real app code."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from evaccess.app.ble.credentials import CredentialStore
from evaccess.charger.ble.link import VirtualLink
from evaccess.charger.ble.peripheral import BlePeripheral
from evaccess.charger.ports import BluetoothPinSettings
from evaccess.domain.clock import ManualClock, SystemRandom

PIN = "472913"
WRONG_PIN = "472914"
SERIAL = "EVA-1001"


@dataclass
class RecordingServer:
    """The ServerLink port as the OCPP half would see it: everything the peripheral reports."""

    events: list[tuple[str, str | None]] = field(default_factory=list)
    configuration: list[dict[str, str]] = field(default_factory=list)
    pins: list[str] = field(default_factory=list)

    async def send_security_event(self, event_type: str, tech_info: str | None = None) -> None:
        self.events.append((event_type, tech_info))

    async def report_configuration(self, changes: dict[str, str]) -> None:
        self.configuration.append(changes)

    async def report_pin_changed(self, new_pin: str) -> None:
        self.pins.append(new_pin)


@dataclass
class Rig:
    link: VirtualLink
    tmp: Path
    clock: ManualClock
    server: RecordingServer
    charger: BlePeripheral
    rng: SystemRandom = field(default_factory=SystemRandom)
    cleanups: list[Any] = field(default_factory=list)

    @property
    def charger_transport(self) -> str:
        return self.link.transports[0]

    @property
    def phone_transport(self) -> str:
        return self.link.transports[1]

    def phone_store(self, name: str = "phone") -> CredentialStore:
        return CredentialStore(self.tmp / name)

    async def restart_charger(self, **overrides: object) -> BlePeripheral:
        await self.charger.stop()
        self.charger = make_charger(self, **overrides)
        await self.charger.start()
        return self.charger


def make_charger(rig: Rig, **overrides: object) -> BlePeripheral:
    kwargs: dict[str, object] = {
        "transport": rig.link.transports[0],
        "serial": SERIAL,
        "state_dir": rig.tmp / "charger",
        "server": rig.server,
        "pin_settings": BluetoothPinSettings(pin=PIN, required=True, changeable=True),
        "clock": rig.clock,
        "rng": SystemRandom(),
        "pin_mode": "pake",
    }
    kwargs.update(overrides)
    return BlePeripheral(**kwargs)  # type: ignore[arg-type]


async def start_rig(tmp_path: Path, devices: int = 3, **overrides: object) -> Rig:
    link = VirtualLink(count=devices, prompt_advertising=True)
    await link.start()
    rig = Rig(link=link, tmp=tmp_path, clock=ManualClock(), server=RecordingServer(), charger=None)  # type: ignore[arg-type]
    rig.charger = make_charger(rig, **overrides)
    await rig.charger.start()
    return rig


async def stop_rig(rig: Rig) -> None:
    for central in rig.cleanups:
        await central.__aexit__(None, None, None)
    await rig.charger.stop()
    await rig.link.close()


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    rig = await start_rig(tmp_path)
    yield rig
    await stop_rig(rig)
