"""A stand-in for ``evaccess.charger.ble.peripheral`` (another engineer's module) with the
agreed constructor, recording what the composition root does with it."""

from __future__ import annotations

from typing import Any

from evaccess.charger.ports import BluetoothPinSettings

INSTANCES: list[BlePeripheral] = []


class BlePeripheral:
    def __init__(self, **kwargs: Any) -> None:
        self.kwargs = kwargs
        self.events: list[object] = []
        INSTANCES.append(self)

    async def start(self) -> None:
        self.events.append("start")

    async def stop(self) -> None:
        self.events.append("stop")

    async def apply_pin_settings(self, settings: BluetoothPinSettings) -> None:
        self.events.append(settings)

    async def revoke_all_credentials(self) -> None:
        self.events.append("revoke_all")

    async def revoke_credential(self, phone_id: str) -> None:
        self.events.append(("revoke", phone_id))

    async def reenable_pin_pairing(self) -> None:
        self.events.append("reenable")
