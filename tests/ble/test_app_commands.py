"""The app's pairing screen (run_pair): where the PIN comes from, and the troubleshooting
display of the correct PIN after a wrong one, only for a user allowed to see it."""

from __future__ import annotations

import asyncio
import io
import sys
from dataclasses import dataclass, field

import pytest
import typer

from evaccess import console
from evaccess.app.ble import commands
from evaccess.app.ble.commands import run_pair
from evaccess.charger.ports import BluetoothPinSettings
from evaccess.domain.errors import PinRejected
from evaccess.protocol import ble_access as proto
from tests.ble.conftest import PIN, SERIAL, WRONG_PIN, Rig
from tests.e2e.conftest import Result, one_line_error


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


async def test_a_wrong_pin_from_the_server_is_not_revealed_twice(
    rig: Rig, capsys: pytest.CaptureFixture[str]
) -> None:
    server = FakeServerPins(pin=WRONG_PIN)  # the server's PIN is out of date
    with pytest.raises(proto.WrongPin):
        await run_pair(
            serial=SERIAL,
            transport=rig.phone_transport,
            pin=None,
            server=server,
            store=rig.phone_store(),
            rng=rig.rng,
            prompt=no_prompt,
        )
    assert server.reveals == [SERIAL]  # the one reveal that fetched it
    assert WRONG_PIN not in capsys.readouterr().err


async def test_a_prompted_pin_that_is_not_six_digits_costs_no_guess(rig: Rig) -> None:
    with pytest.raises(PinRejected, match="exactly 6 digits"):
        await run_pair(
            serial=SERIAL,
            transport=rig.phone_transport,
            pin=None,
            server=FakeServerPins(allowed=False),
            store=rig.phone_store(),
            rng=rig.rng,
            prompt=lambda: "47291",
        )
    assert rig.charger.guard.lockout.consecutive_failures == 0
    assert rig.charger.guard.attempt is None


# --- `evaccess app pair` as the user runs it -------------------------------------------------


@dataclass
class PairCli:
    rig: Rig
    monkeypatch: pytest.MonkeyPatch
    capsys: pytest.CaptureFixture[str]
    server: FakeServerPins | None

    async def __call__(self, *args: str, stdin: str = "") -> Result:
        argv = ["evaccess", "app", "pair", SERIAL, "--ble-transport", self.rig.phone_transport]
        self.capsys.readouterr()
        self.monkeypatch.setattr(sys, "argv", [*argv, *args])
        self.monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
        self.monkeypatch.setattr(commands, "server_factory", lambda: self.server)
        code = await asyncio.to_thread(self._run)
        captured = self.capsys.readouterr()
        return Result(args=args, returncode=code, stdout=captured.out, stderr=captured.err)

    def _run(self) -> int:
        root = typer.Typer(pretty_exceptions_enable=False)
        root.add_typer(commands.ble_commands, name="app")
        try:
            console.run_app(root)
        except SystemExit as exited:
            return int(exited.code or 0)
        return 0


@pytest.fixture
def cli(rig: Rig, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> PairCli:
    monkeypatch.setenv("EVACCESS_APP_HOME", str(rig.tmp / "app"))
    return PairCli(rig=rig, monkeypatch=monkeypatch, capsys=capsys, server=None)


async def test_pair_counts_down_the_attempts_and_says_when_it_locks(cli: PairCli) -> None:
    for left in (4, 3, 2, 1):
        line = one_line_error(await cli("--pin", WRONG_PIN), 3)
        plural = "s" if left > 1 else ""
        assert f"wrong PIN: {left} attempt{plural} left before pairing locks" in line
    line = one_line_error(await cli("--pin", WRONG_PIN), 3)
    assert "wrong PIN: pairing is now locked for 5 min" in line
    assert "too many wrong PINs" in one_line_error(await cli("--pin", PIN), 7)


@pytest.mark.parametrize(
    ("args", "stdin"),
    [(("--pin", "47291"), ""), (("--pin", "4729130"), ""), (("--pin-stdin",), "47 913\n")],
)
async def test_pair_refuses_a_pin_that_is_not_six_digits_without_a_guess(
    cli: PairCli, args: tuple[str, ...], stdin: str
) -> None:
    cli.server = FakeServerPins()
    line = one_line_error(await cli(*args, stdin=stdin), 2)
    assert "a Bluetooth PIN is exactly 6 digits" in line
    assert cli.rig.charger.guard.lockout.consecutive_failures == 0
    assert cli.server.reveals == [] and PIN not in line


async def test_pair_with_the_pin_on_stdin(cli: PairCli) -> None:
    result = await cli("--pin-stdin", stdin=f"{PIN}\n")
    assert result.returncode == 0, result.output
    assert f"Paired with charger {SERIAL} with its PIN" in result.stdout
    assert PIN not in result.output


@pytest.mark.parametrize("allowed", [True, False])
@pytest.mark.parametrize("how", ["--pin", "--pin-stdin"])
async def test_pair_with_a_wrong_given_pin_shows_troubleshooting_only_when_allowed(
    cli: PairCli, allowed: bool, how: str
) -> None:
    cli.server = FakeServerPins(allowed=allowed)
    if how == "--pin":
        result = await cli("--pin", WRONG_PIN)
    else:
        result = await cli("--pin-stdin", stdin=f"{WRONG_PIN}\n")
    assert result.returncode == 3 and "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("error: wrong PIN: 4 attempts left")
    if allowed:
        assert lines[:-1] == [f"Wrong PIN. The charger's Bluetooth PIN is {PIN}: try again now."]
        assert cli.server.reveals == [SERIAL]
    else:
        assert len(lines) == 1 and PIN not in result.output and cli.server.reveals == []


async def test_the_troubleshooting_screen_at_the_lockout_says_when_to_retry(
    cli: PairCli,
) -> None:
    for _ in range(4):
        await cli("--pin", WRONG_PIN)
    cli.server = FakeServerPins()
    result = await cli("--pin", WRONG_PIN)
    assert f"Bluetooth PIN is {PIN}: try again in 5 min." in result.stderr
    assert (
        result.stderr.strip()
        .splitlines()[-1]
        .startswith("error: wrong PIN: pairing is now locked for 5 min")
    )
