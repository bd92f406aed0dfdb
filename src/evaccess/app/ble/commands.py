"""``evaccess app pair|configure|forget``: the phone app's Bluetooth commands."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Protocol

import typer

from evaccess.app.api import ApiClient
from evaccess.app.ble import pairing
from evaccess.app.ble.credentials import CredentialStore
from evaccess.app.session import load_session
from evaccess.console import command, err, out, secret
from evaccess.domain.clock import RandomSource, SystemRandom
from evaccess.domain.errors import EvAccessError, InvalidInput, NotAuthenticated, PinRejected
from evaccess.domain.lockout import wait_text
from evaccess.domain.pins import check_bluetooth_pin_format, validate_bluetooth_pin
from evaccess.protocol.ble_access import WrongPin

ble_commands = typer.Typer(help="Pair with and configure chargers over Bluetooth LE.")

Transport = Annotated[
    str,
    typer.Option(
        "--ble-transport",
        help="The phone's Bluetooth controller, as a transport string of Bumble (the Python "
        "Bluetooth stack evaccess uses): tcp-client:127.0.0.1:PORT (from evaccess ble-link), "
        "usb:0, ...",
    ),
]


class ServerPins(Protocol):
    """The server's view of a charger's PIN, for the signed-in user."""

    async def may_reveal(self, serial: str) -> bool: ...

    async def reveal(self, serial: str) -> str: ...


class ApiServerPins:
    """``ServerPins`` over the REST API with the saved login."""

    async def may_reveal(self, serial: str) -> bool:
        session = load_session()
        async with ApiClient(session.server, session.token) as api:
            charger = await api.charger_by_serial(serial)
            return await api.may_reveal_bluetooth_pin(str(charger["id"]))

    async def reveal(self, serial: str) -> str:
        session = load_session()
        async with ApiClient(session.server, session.token) as api:
            charger = await api.charger_by_serial(serial)
            return await api.reveal_bluetooth_pin(str(charger["id"]))


def _default_server() -> ServerPins | None:
    try:
        load_session()
    except NotAuthenticated:
        return None
    return ApiServerPins()


server_factory: Callable[[], ServerPins | None] = _default_server
"""Tests replace this (or pass ``--pin``) to run without a server."""


def prompt_pin() -> str:
    return secret("Bluetooth PIN of the charger").strip()


async def run_pair(
    *,
    serial: str,
    transport: str,
    pin: str | None,
    server: ServerPins | None,
    store: CredentialStore,
    rng: RandomSource,
    prompt: Callable[[], str] = prompt_pin,
) -> pairing.PairResult:
    """The pairing screen: the PIN from the user (``--pin``, ``--pin-stdin``), else from
    the server when the user may see it, else typed; a PIN that is not 6 digits is refused
    before anything is sent. After a wrong typed or given PIN, the troubleshooting screen
    shows the correct PIN to a user the server allows to see it (as Wallbox's app does);
    the reveal is audited by the server as any other."""
    if pin is not None:
        check_bluetooth_pin_format(pin)
    from_server = False

    async def pin_source() -> str:
        nonlocal from_server
        if pin is not None:
            return pin
        if server is not None and await server.may_reveal(serial):
            from_server = True
            return await server.reveal(serial)
        return prompt()

    try:
        return await pairing.pair(
            transport=transport, serial=serial, pin=pin_source, store=store, rng=rng
        )
    except WrongPin as wrong:
        # The server's own PIN failing: showing it again would only repeat it (and audit a
        # second reveal); the error line says what the charger answered.
        if server is not None and not from_server:
            await _troubleshoot(server, serial, wrong)
        raise


async def _troubleshoot(server: ServerPins, serial: str, wrong: WrongPin) -> None:
    try:
        if not await server.may_reveal(serial):
            return
        correct = await server.reveal(serial)
    except EvAccessError:
        return  # no troubleshooting screen; the wrong-PIN line still follows
    when = f"in {wait_text(wrong.retry_after)}" if wrong.locked else "now"
    # The one deliberate PIN display: Wallbox's troubleshooting screen.
    err.print(
        f"Wrong PIN. The charger's Bluetooth PIN is [bold]{correct}[/]: try again {when}.",
        highlight=False,
    )


@ble_commands.command("pair")
@command
async def pair_command(
    serial: Annotated[str, typer.Argument(help="The charger's serial number.")],
    ble_transport: Transport,
    pin: Annotated[
        str | None,
        typer.Option(help="The PIN (otherwise from the server, or prompted).", show_default=False),
    ] = None,
    pin_stdin: Annotated[
        bool,
        typer.Option(
            "--pin-stdin", help="Read the PIN from the first line of stdin instead of a prompt."
        ),
    ] = False,
) -> None:
    """Pair this phone with a charger: prove its PIN once, keep a credential."""
    if pin_stdin:
        if pin is not None:
            raise InvalidInput("pass either --pin or --pin-stdin")
        pin = secret("Bluetooth PIN of the charger", from_stdin=True).strip()
    store = CredentialStore()
    result = await run_pair(
        serial=serial,
        transport=ble_transport,
        pin=pin,
        server=server_factory(),
        store=store,
        rng=SystemRandom(),
    )
    how = "with its PIN" if result.pin_required else "(no PIN required)"
    out.print(f"Paired with charger {serial} {how}; this phone is {result.phone_id[:8]}.")


@ble_commands.command("configure")
@command
async def configure_command(
    serial: Annotated[str, typer.Argument(help="The charger's serial number.")],
    ble_transport: Transport,
    wifi_ssid: Annotated[str | None, typer.Option(help="Wi-Fi network name.")] = None,
    wifi_password_stdin: Annotated[
        bool,
        typer.Option("--wifi-password-stdin", help="Read the Wi-Fi password from standard input."),
    ] = False,
    current_limit: Annotated[
        int | None, typer.Option(help="Charging current limit in amperes (6-32).")
    ] = None,
    firmware_update: Annotated[
        str | None, typer.Option(help="Start a firmware update from this https URL.")
    ] = None,
    new_pin: Annotated[
        bool, typer.Option("--new-pin", help="Change the charger's Bluetooth PIN (prompted).")
    ] = False,
) -> None:
    """Change a paired charger's settings over Bluetooth (uses the stored credential)."""
    password = None
    if wifi_password_stdin:
        if wifi_ssid is None:
            raise InvalidInput("--wifi-password-stdin goes with --wifi-ssid")
        password = secret("Wi-Fi password")
    pin = None
    if new_pin:
        pin = secret("New Bluetooth PIN", confirm=True).strip()
        try:
            validate_bluetooth_pin(pin)
        except PinRejected as exc:
            raise PinRejected(exc.message) from None
    change = pairing.ConfigChange(
        wifi_ssid=wifi_ssid,
        wifi_password=password,
        current_limit_a=current_limit,
        firmware_update_url=firmware_update,
        new_pin=pin,
    )
    settings = await pairing.configure(
        transport=ble_transport,
        serial=serial,
        change=change,
        store=CredentialStore(),
        rng=SystemRandom(),
    )
    out.print(
        f"Charger {serial}: Wi-Fi network {settings['wifi_ssid'] or '(none)'}, "
        f"current limit {settings['current_limit_a']} A"
        + (", PIN changed" if pin else "")
        + (", firmware update requested" if firmware_update else ""),
        highlight=False,
    )


@ble_commands.command("forget")
@command
async def forget_command(
    serial: Annotated[str, typer.Argument(help="The charger's serial number.")],
    ble_transport: Annotated[
        str | None,
        typer.Option(
            "--ble-transport", help="Also tell the charger (otherwise forget locally only)."
        ),
    ] = None,
) -> None:
    """Forget a charger: drop this phone's credential on the charger and here."""
    store = CredentialStore()
    store.load(serial)  # NotFound when not paired
    if ble_transport is not None:
        try:
            await pairing.forget(
                transport=ble_transport, serial=serial, store=store, rng=SystemRandom()
            )
        except NotAuthenticated:
            store.delete(serial)
            out.print(f"Charger {serial} no longer knew this phone; forgotten here too.")
            return
    store.delete(serial)
    out.print(f"Forgot charger {serial}.")


__all__: list[str] = ["ble_commands"]

if __name__ == "__main__":  # python -m evaccess.app.ble.commands (before app/cli.py merges it)
    ble_commands()
