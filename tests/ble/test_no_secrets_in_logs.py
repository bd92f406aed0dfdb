"""No PIN, credential or Wi-Fi password in any log line (ours or Bumble's, DEBUG included),
exception message or security event."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest

from evaccess.app.ble import pairing
from evaccess.protocol import ble_access as proto
from tests.ble.conftest import PIN, SERIAL, WRONG_PIN, Rig, start_rig, stop_rig

WIFI_PASSWORD = "correct-horse-battery"
NEW_PIN = "583920"


def exposed(secret: str, text: str) -> bool:
    """``secret`` as a token (not a coincidental run inside a hex dump)."""
    return re.search(rf"(?<![0-9a-fA-F]){re.escape(secret)}(?![0-9a-fA-F])", text) is not None


@pytest.mark.parametrize("pin_mode", ["pake", "passkey"])
async def test_secrets_never_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, pin_mode: str
) -> None:
    caplog.set_level(logging.DEBUG)
    rig: Rig = await start_rig(tmp_path, pin_mode=pin_mode)
    errors: list[str] = []
    try:
        store = rig.phone_store()
        try:
            await pairing.pair(
                transport=rig.phone_transport,
                serial=SERIAL,
                pin=WRONG_PIN,
                store=store,
                rng=rig.rng,
            )
        except proto.WrongPin as exc:
            errors.append(str(exc))
        await pairing.pair(
            transport=rig.phone_transport, serial=SERIAL, pin=PIN, store=store, rng=rig.rng
        )
        await pairing.configure(
            transport=rig.phone_transport,
            serial=SERIAL,
            change=pairing.ConfigChange(
                wifi_ssid="home", wifi_password=WIFI_PASSWORD, new_pin=NEW_PIN
            ),
            store=store,
            rng=rig.rng,
        )
        secret = store.load(SERIAL).secret.hex()
    finally:
        await stop_rig(rig)

    assert rig.server.pins == [NEW_PIN]  # the PIN went to the server port, nowhere else
    logged = "\n".join(
        [caplog.text]
        + [r.getMessage() for r in caplog.records]
        + [str(e) for e in rig.server.events]
        + errors
    )
    assert "Bluetooth PIN" in logged or "wrong PIN" in logged  # we did log the events
    for value in (PIN, WRONG_PIN, NEW_PIN, WIFI_PASSWORD, secret, secret[:16]):
        assert not exposed(value, logged), "a secret reached a log line"
    # Bumble's SMP debug lines (passkey, TK) are filtered out whatever the level
    assert "PIN CODE" not in caplog.text and "TK from passkey" not in caplog.text
