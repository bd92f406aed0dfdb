"""Section 2: the Access Service's GATT layout, as plain data both sides build from (the
charger's peripheral turns it into Bumble attributes, the phone discovers exactly these)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntFlag
from uuid import UUID


class Property(IntFlag):
    """GATT characteristic properties, with their bits from Core Vol 3 Part G 3.3.1.1."""

    READ = 0x02
    WRITE_WITHOUT_RESPONSE = 0x04
    WRITE = 0x08


@dataclass(frozen=True, kw_only=True, slots=True)
class CharacteristicSpec:
    name: str
    uuid: UUID
    properties: Property
    sealed: bool
    """Needs an authenticated session; the value is sealed JSON (section 7)."""


SERVICE_UUID = UUID("6f1c3d2a-8b7e-4f3a-9c51-2e0d7a4b9e10")
INFO_UUID = UUID("6f1c3d2a-8b7e-4f3a-9c51-2e0d7a4b9e11")
"""Read, no authentication: an INFO frame (versions, serial, PIN mode, pairing state)."""
ACCESS_UUID = UUID("6f1c3d2a-8b7e-4f3a-9c51-2e0d7a4b9e12")
"""Write a request frame, then read the reply frame (one outstanding request per link)."""
WIFI_UUID = UUID("6f1c3d2a-8b7e-4f3a-9c51-2e0d7a4b9e20")
CURRENT_LIMIT_UUID = UUID("6f1c3d2a-8b7e-4f3a-9c51-2e0d7a4b9e21")
FIRMWARE_UPDATE_UUID = UUID("6f1c3d2a-8b7e-4f3a-9c51-2e0d7a4b9e22")
PIN_UUID = UUID("6f1c3d2a-8b7e-4f3a-9c51-2e0d7a4b9e23")

_RW = Property.READ | Property.WRITE

CHARACTERISTICS = (
    CharacteristicSpec(name="info", uuid=INFO_UUID, properties=Property.READ, sealed=False),
    CharacteristicSpec(
        name="access",
        uuid=ACCESS_UUID,
        properties=_RW | Property.WRITE_WITHOUT_RESPONSE,
        sealed=False,
    ),
    CharacteristicSpec(name="wifi", uuid=WIFI_UUID, properties=_RW, sealed=True),
    CharacteristicSpec(name="current_limit", uuid=CURRENT_LIMIT_UUID, properties=_RW, sealed=True),
    CharacteristicSpec(
        name="firmware_update", uuid=FIRMWARE_UPDATE_UUID, properties=Property.WRITE, sealed=True
    ),
    CharacteristicSpec(name="pin", uuid=PIN_UUID, properties=Property.WRITE, sealed=True),
)
"""The service's characteristics in handle order."""

CONFIG_UUIDS = tuple(spec.uuid for spec in CHARACTERISTICS if spec.sealed)

ADVERTISED_NAME_PREFIX = "evaccess-"


def advertised_name(serial: str) -> str:
    """The GAP device name a charger advertises (section 2)."""
    return f"{ADVERTISED_NAME_PREFIX}{serial}"
