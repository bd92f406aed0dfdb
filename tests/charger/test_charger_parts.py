"""Parts of the charger that need no server: back-off, Bluetooth wiring, state files."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from ocpp import v201

from evaccess.charger import run
from evaccess.charger.config import Backoff, PinMode
from evaccess.charger.firmware import Firmware, LocalListUpdate
from evaccess.charger.ocpp_messages import MESSAGES
from evaccess.charger.ports import BluetoothPinSettings
from evaccess.charger.run import run_charger
from evaccess.charger.state import QueuedMessage, StateStore
from evaccess.domain.clock import ManualClock
from evaccess.domain.errors import ConfigurationError
from tests.charger import recording_peripheral
from tests.charger.conftest import SERIAL, SeededRandom, make_config, start_charger
from tests.charger.csms import TestCsms


def test_backoff_grows_exponentially_with_jitter_and_a_cap():
    backoff = Backoff(initial_s=1.0, factor=2.0, max_s=60.0)
    assert backoff.delay(0, 0.0) == 0.5
    assert backoff.delay(0, 0.999) == pytest.approx(1.0, abs=1e-3)
    assert backoff.delay(3, 0.5) == pytest.approx(6.0)
    assert backoff.delay(20, 0.0) == 30.0  # capped at max_s, jitter below it
    assert backoff.delay(20, 0.999) <= 60.0


def test_outbox_file_is_replaced_atomically_and_private(tmp_path: Path):
    store = StateStore(tmp_path / "s")
    message = QueuedMessage(message_id="m1", action="Heartbeat", payload={})
    store.save_outbox([message])
    store.save_outbox([message, QueuedMessage(message_id="m2", action="Heartbeat", payload={})])
    assert [m.message_id for m in store.load_outbox()] == ["m1", "m2"]
    path = tmp_path / "s" / "outbox.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in (tmp_path / "s").iterdir()] == ["outbox.json"]  # no temp left


async def test_bluetooth_requested_without_the_peripheral_is_one_clear_error(
    tmp_path: Path, csms: TestCsms, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(run, "BLE_MODULE", "evaccess.charger.no_such_ble.peripheral")
    config = make_config(tmp_path, csms, ble_transport="usb:0")
    with pytest.raises(ConfigurationError, match="Bluetooth is not available in this build"):
        await run_charger(config, clock=ManualClock(), rng=SeededRandom(), say=print)


async def test_bluetooth_peripheral_is_built_started_fed_and_stopped(
    tmp_path: Path, csms: TestCsms, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(run, "BLE_MODULE", "tests.charger.recording_peripheral")
    recording_peripheral.INSTANCES.clear()
    config = make_config(tmp_path, csms, ble_transport="usb:0", pin_mode=PinMode.PASSKEY)
    running = start_charger(config)
    try:
        charger = await running.booted()
        (peripheral,) = recording_peripheral.INSTANCES
        assert peripheral.kwargs["transport"] == "usb:0"
        assert peripheral.kwargs["serial"] == SERIAL
        assert peripheral.kwargs["state_dir"] == config.state_dir
        assert peripheral.kwargs["server"] is charger.firmware
        assert peripheral.kwargs["pin_mode"] == "passkey"
        assert peripheral.kwargs["pin_settings"] == BluetoothPinSettings(
            pin=None, required=False, changeable=False
        )
        assert charger.firmware.bluetooth is peripheral
        await csms.charge_points[SERIAL].call(
            v201.call.SetVariables(
                set_variable_data=[
                    {
                        "attribute_value": "*",
                        "component": {"name": "EvAccessBluetoothCtrlr"},
                        "variable": {"name": "RevokeCredentials"},
                    }
                ]
            )
        )
        assert peripheral.events == ["start", "revoke_all"]
    finally:
        await running.stop()
    assert peripheral.events[-1] == "stop"


async def test_local_list_full_then_differential_updates_and_removals(tmp_path: Path):
    config = make_config(tmp_path, TestCsms(passwords={}))
    firmware = Firmware(
        config=config,
        store=StateStore(config.state_dir),
        messages=MESSAGES[config.protocol],
        clock=ManualClock(),
        rng=SeededRandom(),
    )

    def update(token: str, status: str | None) -> LocalListUpdate:
        return LocalListUpdate(id_token=token, token_type="KeyCode", status=status)

    full = [update("1111", "Accepted"), update("2222", "Accepted")]
    assert firmware.apply_local_list(version=5, full=True, entries=full) == "Accepted"
    diff = [update("1111", None), update("3333", "Blocked")]
    assert firmware.apply_local_list(version=6, full=False, entries=diff) == "Accepted"
    assert firmware.apply_local_list(version=6, full=False, entries=[]) == "VersionMismatch"
    reloaded = StateStore(config.state_dir).load_local_list()
    assert reloaded.version == 6
    assert {(e.id_token, e.status) for e in reloaded.entries} == {
        ("2222", "Accepted"),
        ("3333", "Blocked"),
    }
    decision = await firmware.enter_code("3333", token_type="KeyCode")
    assert decision.line() == "keypad: rejected"  # Blocked in the list, offline
    decision = await firmware.enter_code("2222", token_type="KeyCode")
    assert decision.line().endswith(", local list)")
    await firmware.close()
