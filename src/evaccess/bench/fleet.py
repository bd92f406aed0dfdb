"""What the benches' seeded fleet is: one place for the seed (``evaccess_target``) and the
load generator's boots (``loadgen``), which must agree."""

from __future__ import annotations

FLEET_VENDOR, FLEET_MODEL, FLEET_FIRMWARE = "Wallbox", "Commander 2", "6.7.16"
"""What the seeded fleet is registered as and reports at boot: the everyday boot (a charger
reporting other facts than it was registered with gets a ``charger.firmware_reported``
audit record at every boot, which serialises boots on the audit chain's head row)."""
