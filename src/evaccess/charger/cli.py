"""``evaccess charger``: run one charger, or a fleet of them, against an OCPP server."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated

import typer

from evaccess import console
from evaccess.charger import keypad
from evaccess.charger.config import (
    EXAMPLE_SERVER,
    ChargerConfig,
    PinMode,
    ocpp_server_url,
)
from evaccess.charger.fleet import FleetOptions, load_credentials, run_fleet
from evaccess.charger.run import run_charger
from evaccess.domain.clock import SystemClock, SystemRandom
from evaccess.domain.errors import InvalidInput
from evaccess.protocol.ocpp_frames import OcppVersion

charger_app = typer.Typer(no_args_is_help=True, pretty_exceptions_enable=False)


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


SERVER_HELP = (
    "The OCPP endpoint of the CSMS (the charging station management system: the back end "
    f"chargers connect to, here `evaccess server`), e.g. {EXAMPLE_SERVER}; the serial is appended."
)


def _keypad(raw: str | None) -> AsyncIterator[str] | None:
    """``--keypad``: scripted codes, ``-`` for stdin (or a hidden prompt), or no keypad."""
    if raw is None:
        return None
    if raw.strip() == "-":
        return keypad.from_stdin()
    codes = tuple(code.strip() for code in raw.split(",") if code.strip())
    if not codes or not all(code.isascii() and code.isdigit() for code in codes):
        raise InvalidInput("--keypad takes digits separated by commas, or - to read stdin")
    return keypad.scripted(codes)


def _password_from(path: Path, serial: str) -> str:
    for credential in load_credentials(path):
        if credential.serial == serial:
            return credential.password
    raise InvalidInput(f"{path} has no row for {serial}")


def default_state_dir(serial: str) -> Path:
    """Beside the server's data by default: one machine running both keeps one ``var/``."""
    return Path(os.environ.get("EVACCESS_DATA_DIR") or "var") / "charger" / serial


class _SayHandler(logging.Handler):
    """Prints the Bluetooth peripheral's events (advertising, pairings, configuration
    changes, lockouts) as ``bluetooth: ...`` lines beside the OCPP and keypad ones. Its log
    lines never hold a secret (tests/ble/test_no_secrets_in_logs.py)."""

    def emit(self, record: logging.LogRecord) -> None:
        _say(f"bluetooth: {record.getMessage()}")


def _print_bluetooth_events(*, debug: bool) -> None:
    logger = logging.getLogger("evaccess.charger.ble")
    logger.addHandler(_SayHandler())
    logger.setLevel(logging.DEBUG if debug else logging.INFO)
    logger.propagate = False


@charger_app.command("run")
@console.command
async def run(
    serial: Annotated[str, typer.Option(help="Charging station identity (serial number).")],
    server: Annotated[str, typer.Option(help=SERVER_HELP)],
    vendor: Annotated[str, typer.Option(help="Vendor reported at boot.")] = "evaccess",
    model: Annotated[str, typer.Option(help="Model reported at boot.")] = "emulator",
    firmware: Annotated[str, typer.Option(help="Firmware version reported at boot.")] = "0.1.0",
    password: Annotated[
        str | None,
        typer.Option(
            help="Basic Auth password (or EVACCESS_CHARGER_PASSWORD).",
            envvar="EVACCESS_CHARGER_PASSWORD",
            show_envvar=True,
        ),
    ] = None,
    password_file: Annotated[
        Path | None,
        typer.Option(
            help="Or a 'serial,password' CSV holding it (what `evaccess admin create-charger "
            "--out` writes)."
        ),
    ] = None,
    protocol: Annotated[OcppVersion, typer.Option(help="OCPP version to speak.")] = (
        OcppVersion.V201
    ),
    state_dir: Annotated[
        Path | None,
        typer.Option(
            help="Where the charger keeps its state, 0600 files [default: ./var/charger/SERIAL]."
        ),
    ] = None,
    keypad_input: Annotated[
        str | None,
        typer.Option(
            "--keypad",
            help=(
                "Give the charger a keypad: the codes to type, e.g. 1234,9999, or - to read "
                "codes from stdin, one per line (a hidden prompt on a terminal). "
                "Without it the charger has no keypad."
            ),
        ),
    ] = None,
    ble_transport: Annotated[
        str | None,
        typer.Option(
            help="Bluetooth controller as a transport of Bumble (the Bluetooth stack used), e.g. usb:0 or the "
            "tcp-client:127.0.0.1:PORT `evaccess ble-link` prints (enables Bluetooth)."
        ),
    ] = None,
    pin_mode: Annotated[
        PinMode,
        typer.Option(
            help="How phones prove the Bluetooth PIN: pake (a password-authenticated key exchange, CPace, the "
            "default) or passkey (the PIN as the Bluetooth pairing passkey)."
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
    ca_file: Annotated[
        Path | None,
        typer.Option(
            help="wss://: PEM CA the server's certificate must chain to [default: the system's]."
        ),
    ] = None,
    client_cert: Annotated[
        Path | None,
        typer.Option(
            help="wss://: PEM client certificate whose CN is the serial (OCPP security "
            "profile 3; then no password is needed)."
        ),
    ] = None,
    client_key: Annotated[
        Path | None, typer.Option(help="The client certificate's PEM private key.")
    ] = None,
) -> None:
    """Run one charger: an OCPP (Open Charge Point Protocol) client, a keypad with --keypad,
    and Bluetooth with --ble-transport."""
    if password_file is not None:
        password = _password_from(password_file, serial)
    if (client_cert is None) != (client_key is None):
        raise InvalidInput("--client-cert and --client-key go together")
    if not password and client_cert is None:
        raise InvalidInput(
            "a password is required (--password, EVACCESS_CHARGER_PASSWORD or --password-file)"
            " unless a --client-cert is given"
        )
    server = ocpp_server_url(server)
    if client_cert is not None and not server.startswith("wss://"):
        raise InvalidInput("--client-cert needs a wss:// --server")
    source = _keypad(keypad_input)
    debug = bool(os.environ.get("EVACCESS_DEBUG"))
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    _print_bluetooth_events(debug=debug)
    config = ChargerConfig(
        serial=serial,
        vendor=vendor,
        model=model,
        firmware=firmware,
        server=server,
        password=password or "",
        protocol=protocol,
        state_dir=state_dir or default_state_dir(serial),
        ble_transport=ble_transport,
        pin_mode=pin_mode,
        session_s=session_seconds,
        exit_when_done=exit_when_done,
        ca_file=ca_file,
        client_cert=client_cert,
        client_key=client_key,
    )
    await run_charger(config, clock=SystemClock(), rng=SystemRandom(), keypad=source, say=_say)


@charger_app.command("fleet")
@console.command
async def fleet(
    server: Annotated[str, typer.Option(help=SERVER_HELP)],
    password_file: Annotated[
        Path, typer.Option(help="CSV with a header 'serial,password', one charger per row.")
    ],
    count: Annotated[int | None, typer.Option(help="Use the first N rows.")] = None,
    protocol: Annotated[OcppVersion, typer.Option(help="OCPP version to speak.")] = (
        OcppVersion.V201
    ),
    concurrency: Annotated[int, typer.Option(help="Connections opened at once.")] = 200,
    hold_seconds: Annotated[
        float, typer.Option(help="Keep the fleet connected this long after booting.")
    ] = 0.0,
) -> None:
    """Run many chargers in one process: connect over OCPP (Open Charge Point Protocol),
    boot, report boot times."""
    server = ocpp_server_url(server)
    credentials = load_credentials(password_file, count=count)
    options = FleetOptions(
        server=server, protocol=protocol, concurrency=concurrency, hold_s=hold_seconds
    )
    report = await run_fleet(credentials, options, clock=SystemClock(), progress=True)
    console.print_table("fleet", *report.table())
    if report.failed:
        raise typer.Exit(1)
