"""The charger's settings characteristics (docs/ble-protocol.md section 7) as one table: the
characteristic (by its name in ``protocol.ble_access.CHARACTERISTICS``), what a read shows,
and how a write is validated and applied. The values are plaintext JSON here; the peripheral
seals and opens them under the link's session."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from evaccess.charger.ble.guard import PinGuard
from evaccess.charger.ble.store import SettingsStore
from evaccess.charger.ports import BluetoothPinSettings, ServerLink
from evaccess.domain.errors import InvalidInput, PermissionDenied
from evaccess.domain.pins import validate_bluetooth_pin
from evaccess.protocol import ble_access as proto
from evaccess.protocol.ocpp_components import SecurityEventType

DEFAULT_CURRENT_LIMIT_A = 16


class ChargerSettings:
    """What phones set: non-secret values (what the OCPP half may report) in ``values``, the
    Wi-Fi SSID and current limit kept in ``store`` across restarts; the Wi-Fi password in
    memory only (never logged, reported or stored)."""

    def __init__(self, server: ServerLink, guard: PinGuard, store: SettingsStore) -> None:
        self.server = server
        self.guard = guard
        self.store = store
        self.values: dict[str, Any] = {"current_limit_a": DEFAULT_CURRENT_LIMIT_A}
        self.values.update(store.load())
        self.wifi_password: str | None = None

    async def report_stored(self) -> None:
        """At start: tell the server what the charger has now (settings written before the
        restart), so the server's view follows the charger's."""
        stored = self.store.load()
        report = {_REPORTED[key]: str(value) for key, value in stored.items()}
        if report:
            await self.server.report_configuration(report)


_REPORTED = {"wifi_ssid": "WifiSsid", "current_limit_a": "CurrentLimit"}
"""The OCPP configuration names the server knows these settings by."""


Reader = Callable[[ChargerSettings], dict[str, Any]]
Writer = Callable[[ChargerSettings, Mapping[str, Any]], Awaitable[None]]


@dataclass(frozen=True, kw_only=True, slots=True)
class Setting:
    label: str
    """For logs: never a value."""
    read: Reader | None
    write: Writer


async def _write_wifi(s: ChargerSettings, request: Mapping[str, Any]) -> None:
    ssid, password = proto.check_wifi(request.get("ssid"), request.get("password"))
    s.values["wifi_ssid"] = ssid
    s.wifi_password = password
    s.store.save(s.values)
    await s.server.report_configuration({"WifiSsid": ssid})


async def _write_current_limit(s: ChargerSettings, request: Mapping[str, Any]) -> None:
    amps = proto.check_current_limit(request.get("amps"))
    s.values["current_limit_a"] = amps
    s.store.save(s.values)
    await s.server.report_configuration({"CurrentLimit": str(amps)})


async def _write_firmware_update(s: ChargerSettings, request: Mapping[str, Any]) -> None:
    url = proto.check_firmware_url(request.get("url"))
    s.values["firmware_update_url"] = url
    await s.server.report_configuration({"FirmwareUpdateRequested": url})


async def _write_pin(s: ChargerSettings, request: Mapping[str, Any]) -> None:
    current = s.guard.pin_settings
    if not current.changeable:
        raise PermissionDenied("this charger's PIN policy forbids changing the PIN")
    pin = request.get("pin")
    if not isinstance(pin, str):  # a wrong type is an invalid value (section 7), not a bad PIN
        raise InvalidInput("a Bluetooth PIN is a string of digits")
    validate_bluetooth_pin(pin)
    # The server learns the new PIN first: if that fails the charger keeps the old one,
    # so the PIN the server reveals is never out of date.
    await s.server.report_pin_changed(pin)
    s.guard.pin_settings = BluetoothPinSettings(pin=pin, required=current.required, changeable=True)
    await s.server.send_security_event(SecurityEventType.BLUETOOTH_PIN_CHANGED, "by phone")


SETTINGS: Mapping[str, Setting] = {
    "wifi": Setting(
        label="the Wi-Fi network",
        read=lambda s: {"ssid": s.values.get("wifi_ssid", "")},
        write=_write_wifi,
    ),
    "current_limit": Setting(
        label="the current limit",
        read=lambda s: {"amps": s.values["current_limit_a"]},
        write=_write_current_limit,
    ),
    "firmware_update": Setting(label="firmware update", read=None, write=_write_firmware_update),
    "pin": Setting(label="the Bluetooth PIN", read=None, write=_write_pin),
}
"""By characteristic name: every sealed characteristic of the layout has a row."""
