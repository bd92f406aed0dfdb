"""The app's pairing screen (run_pair): where the PIN comes from, and the troubleshooting
display of the correct PIN after a wrong one, only for a user allowed to see it."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from evaccess.app.ble.commands import run_pair
from evaccess.charger.ports import BluetoothPinSettings
from evaccess.protocol import ble_access as proto
from tests.ble.conftest import PIN, SERIAL, WRONG_PIN, Rig


@dataclass
class FakeServerPins:
    pin: str = PIN
    allowed: bool = True
    reveals: list[str] = field(default_factory=list)

    async def may_reveal(self, serial: str) -> bool:
        return self.allowed

    async def reveal(self, serial: str) -> str:
        assert self.allowed
        self.reveals.append(serial)
        return self.pin


def no_prompt() -> str:
    raise AssertionError("the user should not have been asked")


async def test_pin_from_the_server_when_the_user_may_see_it(rig: Rig) -> None:
    server = FakeServerPins()
    result = await run_pair(
        serial=SERIAL,
        transport=rig.phone_transport,
        pin=None,
        server=server,
        store=rig.phone_store(),
        rng=rig.rng,
        prompt=no_prompt,
    )
    assert result.pin_required and server.reveals == [SERIAL]


async def test_prompted_when_the_user_may_not_see_it(rig: Rig) -> None:
    asked: list[bool] = []

    def prompt() -> str:
        asked.append(True)
        return PIN

    await run_pair(
        serial=SERIAL,
        transport=rig.phone_transport,
        pin=None,
        server=FakeServerPins(allowed=False),
        store=rig.phone_store(),
        rng=rig.rng,
        prompt=prompt,
    )
    assert asked == [True]


async def test_no_reveal_when_no_pin_is_required(rig: Rig) -> None:
    await rig.charger.apply_pin_settings(
        BluetoothPinSettings(pin=None, required=False, changeable=False)
    )
    server = FakeServerPins()
    await run_pair(
        serial=SERIAL,
        transport=rig.phone_transport,
        pin=None,
        server=server,
        store=rig.phone_store(),
        rng=rig.rng,
        prompt=no_prompt,
    )
    assert server.reveals == []  # a reveal is audited: not done needlessly


@pytest.mark.parametrize("allowed", [True, False])
async def test_wrong_pin_shows_the_correct_one_only_to_allowed_users(
    rig: Rig, capsys: pytest.CaptureFixture[str], allowed: bool
) -> None:
    with pytest.raises(proto.WrongPin):
        await run_pair(
            serial=SERIAL,
            transport=rig.phone_transport,
            pin=WRONG_PIN,
            server=FakeServerPins(allowed=allowed),
            store=rig.phone_store(),
            rng=rig.rng,
        )
    shown = capsys.readouterr()
    assert (PIN in shown.err) is allowed
    assert WRONG_PIN not in shown.out + shown.err
