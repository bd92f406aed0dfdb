"""``evaccess app``: the phone app as a command line (the server over HTTP; Bluetooth
commands come from ``app/ble``)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from evaccess import console
from evaccess.app.api import ApiClient
from evaccess.app.ble.commands import ble_commands
from evaccess.app.session import AppSession, clear_session, load_session, save_session
from evaccess.domain.errors import InvalidInput, NotFound

app_app = typer.Typer(no_args_is_help=True)
keypad_app = typer.Typer(no_args_is_help=True, help="Your keypad PIN (Commander chargers).")
app_app.add_typer(keypad_app, name="keypad-pin")
app_app.add_typer(ble_commands)  # pair, configure, forget: straight under `evaccess app`

DEFAULT_SERVER = "http://127.0.0.1:8000"


def _client(session: AppSession) -> ApiClient:
    return ApiClient(session.server, session.token)


@app_app.command("login")
@console.command
async def login(
    email: Annotated[str, typer.Option(prompt=True)],
    server: Annotated[str, typer.Option(envvar="EVACCESS_SERVER")] = DEFAULT_SERVER,
    password_stdin: Annotated[bool, typer.Option("--password-stdin")] = False,
) -> None:
    """Log in and keep the session for the other commands."""
    password = console.secret("Password", from_stdin=password_stdin)
    async with ApiClient(server) as api:
        token = await api.login(email, password)
    path = save_session(AppSession(server=server, token=token, email=email))
    console.out.print(
        f"logged in as {email} at {server} (session in {path})", soft_wrap=True, markup=False
    )


@app_app.command("logout")
@console.command
async def logout() -> None:
    """Revoke the session's token and forget it."""
    session = load_session()
    async with _client(session) as api:
        await api.logout()
    clear_session()
    console.out.print("logged out")


def _pin_requirement(charger: dict[str, Any]) -> str:
    return str(charger["bluetooth_pin_requirement"])


@app_app.command("chargers")
@console.command
async def chargers(json_output: Annotated[bool, typer.Option("--json")] = False) -> None:
    """The chargers you can see."""
    async with _client(load_session()) as api:
        items = await api.chargers()
    if json_output:
        console.print_json(items)
        return
    console.print_table(
        "Your chargers",
        ["serial", "vendor", "model", "firmware", "access", "Bluetooth PIN", "online"],
        [
            (
                c["serial"],
                c["vendor"],
                c["model"],
                c["firmware"],
                ", ".join(c["access"]),
                _pin_requirement(c),
                "yes" if c["online"] else "no",
            )
            for c in items
        ],
    )


@app_app.command("charger-info")
@console.command
async def charger_info(
    serial: str,
    reveal: Annotated[
        bool, typer.Option("--reveal", help="Show the Bluetooth PIN (audited).")
    ] = False,
    json_output: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """A charger's details and Bluetooth PIN state; the PIN itself only with --reveal."""
    async with _client(load_session()) as api:
        charger = await api.charger((await api.charger_by_serial(serial))["id"])
        state = await api.bluetooth_pin_state(charger["id"])
        pin = await api.reveal_bluetooth_pin(charger["id"]) if reveal else None
    if json_output:
        console.print_json(
            {"charger": charger, "bluetooth_pin": state} | ({"pin": pin} if pin else {})
        )
        return
    rows = [
        ("serial", charger["serial"]),
        ("vendor / model", f"{charger['vendor']} {charger['model']}"),
        ("firmware", charger["firmware"]),
        ("your access", ", ".join(charger["access"]) or "-"),
        ("online", "yes" if charger["online"] else "no"),
        ("Bluetooth PIN", f"{state['requirement']}, {state['status']}"
         + (" (required)" if state["required"] else "")),
        ("PIN rule", state["rule"]),
        ("PIN changeable", "yes" if state["changeable"] else "no"),
    ]  # fmt: skip
    reported = charger.get("reported_settings") or {}
    if reported:
        rows.append(
            ("reported settings", ", ".join(f"{k} {v}" for k, v in sorted(reported.items())))
        )
    if pin is not None:
        rows.append(("Bluetooth PIN value", pin))
    elif state["can_reveal"]:
        rows.append(("Bluetooth PIN value", "hidden: add --reveal to show it"))
    console.print_table(f"Charger {serial}", ["", ""], rows)


async def _organisation(api: ApiClient, organisation: str | None) -> str:
    me = await api.me()
    orgs = me["organisations"]
    if organisation is not None:
        for org in orgs:
            if organisation in (org["organisation_id"], org["name"]):
                return str(org["organisation_id"])
        raise NotFound("you are not a member of that organisation")
    if len(orgs) != 1:
        raise InvalidInput("you belong to several organisations: pass --organisation")
    return str(orgs[0]["organisation_id"])


@keypad_app.command("set")
@console.command
async def keypad_set(
    organisation: Annotated[str | None, typer.Option(help="Organisation id or name.")] = None,
    pin_stdin: Annotated[bool, typer.Option("--pin-stdin")] = False,
) -> None:
    """Choose your keypad PIN (prompted, never on the command line)."""
    pin = console.secret("Keypad PIN", confirm=True, from_stdin=pin_stdin).strip()
    async with _client(load_session()) as api:
        org_id = await _organisation(api, organisation)
        result = await api.set_keypad_pin(org_id, pin)
    console.out.print(f"your {result['digits']}-digit keypad PIN is set")


@keypad_app.command("delete")
@console.command
async def keypad_delete(
    organisation: Annotated[str | None, typer.Option(help="Organisation id or name.")] = None,
) -> None:
    """Remove your keypad PIN (the keypad no longer starts sessions for you)."""
    async with _client(load_session()) as api:
        await api.delete_keypad_pin(await _organisation(api, organisation))
    console.out.print("your keypad PIN is deleted")


@keypad_app.command("generate")
@console.command
async def keypad_generate(
    organisation: Annotated[str | None, typer.Option(help="Organisation id or name.")] = None,
) -> None:
    """Let the server pick a keypad PIN for you (shown once)."""
    async with _client(load_session()) as api:
        org_id = await _organisation(api, organisation)
        result = await api.generate_keypad_pin(org_id)
    console.out.print(f"your new keypad PIN: [bold]{result['pin']}[/] (shown once)")
