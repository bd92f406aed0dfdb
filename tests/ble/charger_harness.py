"""A stand-in for `evaccess charger run --ble-transport` (built on another branch): runs the
real BlePeripheral in its own process. The PIN comes from the environment, not argv.

    python -m tests.ble.charger_harness TRANSPORT SERIAL STATE_DIR [pake|passkey]
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
from pathlib import Path

from evaccess.charger.ble.peripheral import BlePeripheral
from evaccess.charger.ports import BluetoothPinSettings
from evaccess.domain.clock import SystemClock, SystemRandom


class FileServerLink:
    """Records what would go to the server, one JSON line each (PINs only as a flag)."""

    def __init__(self, path: Path) -> None:
        self._path = path

    def _write(self, record: dict[str, object]) -> None:
        with self._path.open("a") as fh:
            fh.write(json.dumps(record) + "\n")

    async def send_security_event(self, event_type: str, tech_info: str | None = None) -> None:
        self._write({"event": event_type, "tech_info": tech_info})

    async def report_configuration(self, changes: dict[str, str]) -> None:
        self._write({"configuration": changes})

    async def report_pin_changed(self, new_pin: str) -> None:
        self._write({"pin_changed": True})


async def main() -> None:
    transport, serial, state_dir = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    # Everything at DEBUG (Bumble included) into a file the test scans for secrets.
    logging.basicConfig(filename=state_dir / "charger.log", level=logging.DEBUG)
    pin_mode = sys.argv[4] if len(sys.argv) > 4 else "pake"
    peripheral = BlePeripheral(
        transport=transport,
        serial=serial,
        state_dir=state_dir,
        server=FileServerLink(state_dir / "server.jsonl"),
        pin_settings=BluetoothPinSettings(
            pin=os.environ["EVACCESS_TEST_PIN"], required=True, changeable=True
        ),
        clock=SystemClock(),
        rng=SystemRandom(),
        pin_mode=pin_mode,
    )
    await peripheral.start()
    print("ready", flush=True)
    try:
        await asyncio.get_running_loop().create_future()
    finally:
        await peripheral.stop()


if __name__ == "__main__":
    asyncio.run(main())
