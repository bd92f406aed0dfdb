"""``evaccess charger``: run one charger, or a fleet of them, against an OCPP server."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from evaccess import console
from evaccess.charger import keypad
from evaccess.charger.config import ChargerConfig, OcppVersion, PinMode
from evaccess.charger.fleet import FleetOptions, load_credentials, run_fleet
from evaccess.charger.run import run_charger
from evaccess.domain.clock import SystemClock, SystemRandom
from evaccess.domain.errors import InvalidInput

charger_app = typer.Typer(no_args_is_help=True, pretty_exceptions_enable=False)


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _keypad_codes(raw: str | None) -> tuple[str, ...] | None:
    if raw is None:
        return None
    codes = tuple(code.strip() for code in raw.split(",") if code.strip())
    if not all(code.isascii() and code.isdigit() for code in codes):
        raise InvalidInput("--keypad takes digits separated by commas")
    return codes


SERVER_HELP = (
    "The server's OCPP URL, the serial is appended (the CSMS: charging station management "
    "system), e.g. ws://127.0.0.1:9000/ocpp"
)
PROTOCOL_HELP = "OCPP (Open Charge Point Protocol) version to speak."


@charger_app.command("run")
@console.command
async def run(
    serial: Annotated[str, typer.Option(help="Charging station identity (serial number).")],
    server: Annotated[str, typer.Option(help=SERVER_HELP)],
    vendor: Annotated[str, typer.Option(help="Maker reported at boot, e.g. Wallbox.")] = "evaccess",
    model: Annotated[str, typer.Option(help='Model reported at boot, e.g. "Pulsar Max".')] = (
        "emulator"
    ),
    firmware: Annotated[str, typer.Option(help="Firmware version reported at boot.")] = "0.1.0",
    password: Annotated[
        str | None,
        typer.Option(
            help="The password this charger logs in to the server with (HTTP Basic Auth), "
            "as `evaccess admin create-charger` printed it.",
            envvar="EVACCESS_CHARGER_PASSWORD",
            show_envvar=True,
        ),
    ] = None,
    protocol: Annotated[OcppVersion, typer.Option(help=PROTOCOL_HELP)] = OcppVersion.V201,
    state_dir: Annotated[Path | None, typer.Option(help="Default ./var/charger/SERIAL.")] = None,
    keypad_codes: Annotated[
        str | None,
        typer.Option(
            "--keypad",
            help="Keypad codes to type, one after another, e.g. 1234,9999 (default: one code "
            "per line of standard input, or a hidden prompt on a terminal).",
        ),
    ] = None,
    ble_transport: Annotated[
        str | None,
        typer.Option(
            help="Turn on Bluetooth through this controller, as a transport string of Bumble "
            "(the Python Bluetooth stack evaccess uses): usb:0, or one `evaccess ble-link` printed."
        ),
    ] = None,
    pin_mode: Annotated[
        PinMode,
        typer.Option(
            help="How phones prove the Bluetooth PIN: pake (a password-authenticated key "
            "exchange: the PIN never crosses the air) or passkey (the PIN is the pairing passkey)."
        ),
    ] = PinMode.PAKE,
    session_seconds: Annotated[
        float, typer.Option(help="Length of a keypad-started session.")
    ] = 5.0,
    exit_when_done: Annotated[
        bool,
        typer.Option(
            "--exit-when-done",
            help="Exit after the keypad input ends and queued messages are answered.",
        ),
    ] = False,
) -> None:
    """Run one charger: OCPP client (Open Charge Point Protocol, to the server), keypad, and
    (with --ble-transport) Bluetooth."""
    if not password:
        raise InvalidInput("a password is required (--password or EVACCESS_CHARGER_PASSWORD)")
    logging.basicConfig(
        level=logging.DEBUG if os.environ.get("EVACCESS_DEBUG") else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    codes = _keypad_codes(keypad_codes)
    config = ChargerConfig(
        serial=serial,
        vendor=vendor,
        model=model,
        firmware=firmware,
        server=server,
        password=password,
        protocol=protocol,
        state_dir=state_dir or Path("var") / "charger" / serial,
        ble_transport=ble_transport,
        pin_mode=pin_mode,
        session_s=session_seconds,
        exit_when_done=exit_when_done,
    )
    source = keypad.scripted(codes) if codes is not None else keypad.from_stdin()
    await run_charger(config, clock=SystemClock(), rng=SystemRandom(), keypad=source, say=_say)


@charger_app.command("fleet")
@console.command
async def fleet(
    server: Annotated[str, typer.Option(help=SERVER_HELP)],
    password_file: Annotated[
        Path, typer.Option(help="CSV with a header 'serial,password', one charger per row.")
    ],
    count: Annotated[int | None, typer.Option(help="Use the first N rows.")] = None,
    protocol: Annotated[OcppVersion, typer.Option(help=PROTOCOL_HELP)] = OcppVersion.V201,
    concurrency: Annotated[int, typer.Option(help="Connections opened at once.")] = 200,
    hold_seconds: Annotated[
        float, typer.Option(help="Keep the fleet connected this long after booting.")
    ] = 0.0,
) -> None:
    """Run many chargers in one process: connect to the server over OCPP (Open Charge Point
    Protocol), boot, report boot times."""
    credentials = load_credentials(password_file, count=count)
    options = FleetOptions(
        server=server, protocol=protocol, concurrency=concurrency, hold_s=hold_seconds
    )
    report = await run_fleet(credentials, options, clock=SystemClock(), progress=True)
    console.print_table("fleet", *report.table())
    if report.failed:
        raise typer.Exit(1)
