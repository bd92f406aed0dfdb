"""The two halves of the charger firmware and what each may ask of the other.

The OCPP client (``charger/ocpp_client.py``) talks to the server; the Bluetooth peripheral
(``charger/ble/``) talks to phones. The composition root (``charger/run.py``) wires one to
the other through these two narrow ports, so either half runs and tests without the other.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, kw_only=True, slots=True)
class BluetoothPinSettings:
    """What the server provisions for the Bluetooth PIN (OCPP custom component, docs/ocpp.md)."""

    pin: str | None
    """The 6-digit PIN; ``None`` when the charger has none."""
    required: bool
    """Whether new phones must prove the PIN (mandatory, or optional and enabled)."""
    changeable: bool
    """Whether a phone may change the PIN from the charger (policy)."""


class ServerLink(Protocol):
    """What the Bluetooth side asks of the OCPP side (it queues while offline)."""

    async def send_security_event(self, event_type: str, tech_info: str | None = None) -> None:
        """SecurityEventNotification; ``tech_info`` never holds a secret."""

    async def report_configuration(self, changes: dict[str, str]) -> None:
        """Report non-secret configuration a phone changed (SSID, current limit, ...)."""

    async def report_pin_changed(self, new_pin: str) -> None:
        """A phone changed the Bluetooth PIN on the charger; the server stores it."""


class BluetoothControl(Protocol):
    """What the OCPP side asks of the Bluetooth side (server commands)."""

    async def apply_pin_settings(self, settings: BluetoothPinSettings) -> None:
        """New PIN settings; when a PIN becomes required, drop current links."""

    async def revoke_all_credentials(self) -> None:
        """Forget every phone credential (ownership change, owner's request)."""

    async def revoke_credential(self, phone_id: str) -> None:
        """Forget one phone's credential."""

    async def reenable_pin_pairing(self) -> None:
        """Lift the long-term failure cap (and any lockout)."""
