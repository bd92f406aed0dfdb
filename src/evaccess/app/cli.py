"""``evaccess app``: the phone app as a command line (the server over HTTP; Bluetooth
commands come from ``app/ble``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.text import Text

from evaccess import console
from evaccess.app.api import EXAMPLE_SERVER, ApiClient, server_url
from evaccess.app.ble.commands import ble_commands
from evaccess.app.cards import cards_app
from evaccess.app.claims import claim_app, support_app
from evaccess.app.output import done as _done
from evaccess.app.output import when as _when
from evaccess.app.session import AppSession, clear_session, load_session, save_session
from evaccess.domain.access import MemberAccess
from evaccess.domain.errors import InvalidInput, NotFound
from evaccess.domain.lockout import wait_text
from evaccess.protocol import sticker as sticker_payload
from evaccess.protocol.ocpp_components import SecurityEventType

app_app = typer.Typer(no_args_is_help=True)
keypad_app = typer.Typer(no_args_is_help=True, help="Your keypad PIN (Commander chargers).")
app_app.add_typer(keypad_app, name="keypad-pin")
app_app.add_typer(cards_app, name="cards")
transfer_app = typer.Typer(
    no_args_is_help=True,
    help="Hand a charger you own to another account (it accepts; you can cancel until then).",
)
app_app.add_typer(transfer_app, name="transfer")
app_app.add_typer(claim_app, name="claim")
app_app.add_typer(support_app, name="support")
app_app.add_typer(ble_commands)  # pair, configure, forget: straight under `evaccess app`

DEFAULT_SERVER = EXAMPLE_SERVER
JSON_HELP = "Print the result as JSON, for scripts, instead of a table."
JsonOption = Annotated[bool, typer.Option("--json", help=JSON_HELP)]
Serial = Annotated[str, typer.Argument(help="The charger's serial number.")]


def _client(session: AppSession) -> ApiClient:
    return ApiClient(session.server, session.token)


@app_app.command("login")
@console.command
async def login(
    email: Annotated[str, typer.Option(prompt=True, help="Your account's email (prompted).")],
    server: Annotated[
        str, typer.Option(envvar="EVACCESS_SERVER", help="The evaccess server's URL.")
    ] = DEFAULT_SERVER,
    password_stdin: Annotated[
        bool,
        typer.Option("--password-stdin", help="Read the password from stdin instead of a prompt."),
    ] = False,
) -> None:
    """Log in and keep the session for the other commands."""
    server = server_url(server)
    async with ApiClient(server) as api:
        await api.check_server()
        password = console.secret("Password", from_stdin=password_stdin)
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
async def chargers(json_output: JsonOption = False) -> None:
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
    serial: Serial,
    reveal: Annotated[
        bool, typer.Option("--reveal", help="Show the Bluetooth PIN (audited).")
    ] = False,
    json_output: JsonOption = False,
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
        ("online", "yes" if state["charger_online"] else "no"),
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
    events = charger.get("recent_security_events")
    if events is not None:  # null: this user may not see them
        lines = [_security_event_text(e) for e in events] or ["none"]
        rows += [("recent security events" if i == 0 else "", line) for i, line in enumerate(lines)]
    if pin is not None:
        rows.append(("Bluetooth PIN value", pin))
    elif state["can_reveal"]:
        rows.append(("Bluetooth PIN value", "hidden: add --reveal to show it"))
    console.print_table(f"Charger {serial}", ["", ""], rows)


def _tech_fields(tech_info: str | None) -> dict[str, str]:
    """``level=1 duration_s=300`` -> {"level": "1", "duration_s": "300"}."""
    pairs = (part.partition("=") for part in (tech_info or "").split() if "=" in part)
    return {key: value for key, _, value in pairs}


def _security_event_text(event: dict[str, Any]) -> str:
    """One security event as the owner reads it (docs/ble-protocol.md section 8)."""
    kind, when, tech = event["event_type"], _when(event["at"]), event.get("tech_info")
    fields = _tech_fields(tech)
    if kind == SecurityEventType.BLUETOOTH_PIN_LOCKOUT:
        text = f"Bluetooth PIN pairing locked at {when}"
        if fields.get("duration_s", "").isdigit():
            text += f" for {wait_text(int(fields['duration_s']))}"
        failures = fields.get("consecutive_failures")
        return text + (f" after {failures} wrong PINs" if failures else "")
    if kind == SecurityEventType.BLUETOOTH_PIN_PAIRING_DISABLED:
        failures = fields.get("consecutive_failures", "100")
        return (
            f"Bluetooth PIN pairing disabled at {when} after {failures} wrong PINs in a row"
            " (evaccess app reenable-pairing)"
        )
    return f"{kind} at {when}" + (f": {tech}" if tech else "")


async def _pin_space(api: ApiClient, organisation: str | None, personal: bool) -> str | None:
    """The organisation whose PIN space to use, or ``None`` for your personal one (charger
    owners): chosen with --personal, or when you belong to no organisation."""
    if personal:
        if organisation is not None:
            raise InvalidInput("pass --organisation or --personal, not both")
        return None
    me = await api.me()
    orgs = me["organisations"]
    if organisation is not None:
        for org in orgs:
            if organisation in (org["organisation_id"], org["name"]):
                return str(org["organisation_id"])
        raise NotFound("you are not a member of that organisation")
    if not orgs:
        return None
    if len(orgs) != 1:
        raise InvalidInput(
            "you belong to several organisations: pass --organisation (or --personal)"
        )
    return str(orgs[0]["organisation_id"])


OrganisationOption = Annotated[
    str | None, typer.Option(help="Organisation id or name (default: your only one).")
]
PersonalOption = Annotated[
    bool,
    typer.Option(
        "--personal",
        help="Your personal PIN, for the chargers you own (the default with no organisation).",
    ),
]


def _space_name(org_id: str | None) -> str:
    return "personal keypad PIN" if org_id is None else "keypad PIN"


@keypad_app.command("set")
@console.command
async def keypad_set(
    organisation: OrganisationOption = None,
    personal: PersonalOption = False,
    pin_stdin: Annotated[
        bool,
        typer.Option(
            "--pin-stdin", help="Read the PIN from the first line of stdin instead of a prompt."
        ),
    ] = False,
) -> None:
    """Choose your keypad PIN (prompted, never on the command line)."""
    pin = console.secret("Keypad PIN", confirm=True, from_stdin=pin_stdin).strip()
    async with _client(load_session()) as api:
        org_id = await _pin_space(api, organisation, personal)
        result = await api.set_keypad_pin(org_id, pin)
    console.out.print(f"your {result['digits']}-digit {_space_name(org_id)} is set")


@keypad_app.command("delete")
@console.command
async def keypad_delete(
    organisation: OrganisationOption = None, personal: PersonalOption = False
) -> None:
    """Remove your keypad PIN (the keypad no longer starts sessions for you)."""
    async with _client(load_session()) as api:
        org_id = await _pin_space(api, organisation, personal)
        await api.delete_keypad_pin(org_id)
    console.out.print(f"your {_space_name(org_id)} is deleted")


@keypad_app.command("generate")
@console.command
async def keypad_generate(
    organisation: OrganisationOption = None, personal: PersonalOption = False
) -> None:
    """Let the server pick a keypad PIN for you (shown once)."""
    async with _client(load_session()) as api:
        org_id = await _pin_space(api, organisation, personal)
        result = await api.generate_keypad_pin(org_id)
    console.out.print(f"your new {_space_name(org_id)}: [bold]{result['pin']}[/] (shown once)")


# --- your account ------------------------------------------------------------------------


@app_app.command("password")
@console.command
async def password(
    password_stdin: Annotated[
        bool,
        typer.Option("--password-stdin", help="Read two lines from stdin: current, then new."),
    ] = False,
) -> None:
    """Change your password (prompted hidden); every session of yours ends."""
    session = load_session()
    current = console.secret("Current password", from_stdin=password_stdin)
    new = console.secret("New password", confirm=True, from_stdin=password_stdin)
    async with _client(session) as api:
        await api.change_password(current, new)
    clear_session()
    console.out.print(
        "password changed; all your sessions ended: log in again (evaccess app login)"
    )


# --- who may use a charger ---------------------------------------------------------------------


class InviteRole(StrEnum):
    USER = "user"
    SERVICE = "service"


def _now() -> datetime:
    return datetime.now(UTC)


def _invitation_rows(items: list[dict[str, Any]]) -> list[tuple[str, ...]]:
    return [
        (i["id"], i["email"], i["kind"], _when(i["expires_at"]), _when(i["service_expires_at"]))
        for i in items
    ]


INVITATION_COLUMNS = ("invitation", "email", "role", "invitation expires", "access expires")
GRANT_COLUMNS = ("grant", "email", "role", "since", "expires")


def _grant_rows(items: list[dict[str, Any]]) -> list[tuple[str, ...]]:
    return [
        (g["id"], g["email"], g["kind"], _when(g["created_at"]), _when(g["expires_at"]))
        for g in items
    ]


@app_app.command("invite")
@console.command
async def invite(
    serial: Serial,
    email: Annotated[str, typer.Option(help="The invitee's email (their account's).")],
    role: Annotated[InviteRole, typer.Option(help="user, or service (an installer).")] = (
        InviteRole.USER
    ),
    expires_days: Annotated[
        int | None,
        typer.Option("--expires-days", min=1, help="Service access ends after this many days."),
    ] = None,
    json_output: JsonOption = False,
) -> None:
    """Invite someone to a charger; the invitation code is shown once."""
    until = _now() + timedelta(days=expires_days) if expires_days else None
    async with _client(load_session()) as api:
        charger = await api.charger_by_serial(serial)
        issued = await api.invite(charger["id"], email, role.value, until)
    if json_output:
        console.print_json(issued)
        return
    console.print_table(f"Invitation to {serial}", INVITATION_COLUMNS, _invitation_rows([issued]))
    console.out.print(
        Text.assemble(
            "invitation code (shown once): ",
            (issued["token"], "bold"),
            "\nthe invitee logs in and runs: evaccess app accept CODE",
        ),
        soft_wrap=True,
    )


@app_app.command("invitations")
@console.command
async def invitations(serial: Serial, json_output: JsonOption = False) -> None:
    """A charger's open invitations."""
    async with _client(load_session()) as api:
        items = await api.invitations((await api.charger_by_serial(serial))["id"])
    if json_output:
        console.print_json(items)
        return
    console.print_table(
        f"Open invitations to {serial}", INVITATION_COLUMNS, _invitation_rows(items)
    )


@app_app.command("invitation-revoke")
@console.command
async def invitation_revoke(
    serial: Serial,
    invitation_id: Annotated[str, typer.Argument(help="As `invitations` lists it.")],
    json_output: JsonOption = False,
) -> None:
    """Withdraw an invitation before it is accepted."""
    async with _client(load_session()) as api:
        await api.revoke_invitation((await api.charger_by_serial(serial))["id"], invitation_id)
    _done(json_output, {"invitation_id": invitation_id, "revoked": True}, "invitation revoked")


@app_app.command("accept")
@console.command
async def accept(
    code: Annotated[
        str | None, typer.Argument(help="The invitation code (prompted when left out).")
    ] = None,
    json_output: JsonOption = False,
) -> None:
    """Accept an invitation sent to your account's email."""
    token = code if code is not None else console.secret("Invitation code")
    async with _client(load_session()) as api:
        grant = await api.accept_invitation(token)
    if json_output:
        console.print_json(grant)
        return
    console.print_table("Access granted", GRANT_COLUMNS, _grant_rows([grant]))


@app_app.command("grants")
@console.command
async def grants(serial: Serial, json_output: JsonOption = False) -> None:
    """Who may use a charger (owner, users, service)."""
    async with _client(load_session()) as api:
        items = await api.grants((await api.charger_by_serial(serial))["id"])
    if json_output:
        console.print_json(items)
        return
    console.print_table(f"Access to {serial}", GRANT_COLUMNS, _grant_rows(items))


@app_app.command("revoke")
@console.command
async def revoke(
    serial: Serial,
    grant_id: Annotated[str, typer.Argument(help="As `grants` lists it.")],
    json_output: JsonOption = False,
) -> None:
    """End someone's access to a charger (see `grants` for the ids)."""
    async with _client(load_session()) as api:
        await api.revoke_grant((await api.charger_by_serial(serial))["id"], grant_id)
    _done(json_output, {"grant_id": grant_id, "revoked": True}, "access revoked")


@app_app.command("assign")
@console.command
async def assign(
    serial: Serial,
    member: Annotated[str, typer.Option(help="The member's email.")],
    organisation: Annotated[
        str | None,
        typer.Option(
            help="Organisation id or name the member belongs to (default: the charger's)."
        ),
    ] = None,
    json_output: JsonOption = False,
) -> None:
    """Assign a charger to a member of its organisation (super-admins)."""
    async with _client(load_session()) as api:
        charger = await api.charger_by_serial(serial)
        org_id = (
            await _visible_organisation(api, organisation)
            if organisation is not None
            else str(charger["organisation_id"])
        )
        wanted = member.strip().casefold()
        found = [m for m in await api.members(org_id) if m["email"].casefold() == wanted]
        if not found:
            raise NotFound(
                "no member with that email in the organisation"
                + ("" if organisation else " (pass --organisation for another group)")
            )
        grant = await api.assign(charger["id"], found[0]["user_id"])
    if json_output:
        console.print_json(grant)
        return
    console.print_table(f"Assigned {serial}", GRANT_COLUMNS, _grant_rows([grant]))


async def _visible_organisation(api: ApiClient, organisation: str) -> str:
    """An organisation (or subgroup) the caller belongs to, by id or by name."""
    for org in await api.organisations():
        if organisation in (org["id"], org["name"]):
            return str(org["id"])
    raise NotFound("no such organisation among yours")


@app_app.command("set-member-access")
@console.command
async def set_member_access(
    organisation: Annotated[str, typer.Argument(help="Organisation id or name.")],
    policy: Annotated[MemberAccess, typer.Argument(help="all or assigned.")],
    json_output: JsonOption = False,
) -> None:
    """Let all members use all the organisation's chargers, or only those assigned to them
    (super-admins and admins; applies to its subgroups too)."""
    async with _client(load_session()) as api:
        org = await api.set_member_access(
            await _visible_organisation(api, organisation), policy.value
        )
    _done(json_output, org, f"members of {org['name']} may use {_access_phrase(policy)}")


def _access_phrase(policy: MemberAccess) -> str:
    if policy is MemberAccess.ALL:
        return "all its chargers"
    return "the chargers assigned to them"


@app_app.command("grant-extend")
@console.command
async def grant_extend(
    serial: Serial,
    grant_id: Annotated[str, typer.Argument(help="As `grants` lists it (service access).")],
    days: Annotated[
        int,
        typer.Option("--days", min=1, max=365, help="The access ends this many days from now."),
    ] = 14,
    json_output: JsonOption = False,
) -> None:
    """Move the end of someone's service access (end it now with `revoke`)."""
    async with _client(load_session()) as api:
        grant = await api.extend_grant(
            (await api.charger_by_serial(serial))["id"], grant_id, _now() + timedelta(days=days)
        )
    if json_output:
        console.print_json(grant)
        return
    console.print_table(f"Access to {serial}", GRANT_COLUMNS, _grant_rows([grant]))


# --- ownership --------------------------------------------------------------------------------

TRANSFER_COLUMNS = ("transfer", "charger", "from", "to", "state", "expires")
KeepServiceOption = Annotated[
    bool,
    typer.Option(
        "--keep-service-access",
        help="An installer handing over to the customer: keep service access after the "
        "acceptance (14 days, which the new owner extends or ends).",
    ),
]
TransferId = Annotated[str, typer.Argument(help="As `transfer list` shows it.")]


def _transfer_rows(items: list[dict[str, Any]]) -> list[tuple[str, ...]]:
    return [
        (t["id"], t["serial"], t["from_email"], t["to_email"], t["state"], _when(t["expires_at"]))
        for t in items
    ]


def _handover_lines(result: dict[str, Any]) -> list[str]:
    revoked = result.get("revoked") or {}
    lines = [
        "revoked: " + ", ".join(f"{count} {name}" for name, count in sorted(revoked.items())),
        "every phone's Bluetooth credential revocation queued: the charger gets it over OCPP",
    ]
    if result["bluetooth_pin"] == "rotated":
        lines.append("a new Bluetooth PIN is on its way to the charger (active once it confirms)")
    if result.get("warning"):
        lines.append(f"warning: {result['warning']}")
    return lines


@transfer_app.command("start")
@console.command
async def transfer_start(
    serial: Serial,
    email: Annotated[str, typer.Argument(help="The new owner's account email.")],
    keep_service_access: KeepServiceOption = False,
    json_output: JsonOption = False,
) -> None:
    """Offer your charger to another account; you keep full access until it accepts."""
    async with _client(load_session()) as api:
        transfer = await api.start_transfer(
            (await api.charger_by_serial(serial))["id"],
            email,
            keep_service_access=keep_service_access,
        )
    if json_output:
        console.print_json(transfer)
        return
    console.print_table(f"Transfer of {serial}", TRANSFER_COLUMNS, _transfer_rows([transfer]))
    console.out.print(
        f"the recipient logs in and runs: evaccess app transfer accept {transfer['id']}",
        soft_wrap=True,
        markup=False,
    )


@transfer_app.command("list")
@console.command
async def transfer_list(json_output: JsonOption = False) -> None:
    """Transfers you started or were offered."""
    async with _client(load_session()) as api:
        items = await api.transfers()
    if json_output:
        console.print_json(items)
        return
    console.print_table("Ownership transfers", TRANSFER_COLUMNS, _transfer_rows(items))


@transfer_app.command("accept")
@console.command
async def transfer_accept(transfer_id: TransferId, json_output: JsonOption = False) -> None:
    """Become the owner of a charger offered to you; the previous ownership's access ends."""
    async with _client(load_session()) as api:
        result = await api.accept_transfer(transfer_id)
    if json_output:
        console.print_json(result)
        return
    console.out.print(f"you own {result['transfer']['serial']} now", soft_wrap=True, markup=False)
    for line in _handover_lines(result):
        console.out.print(line, soft_wrap=True, markup=False)


@transfer_app.command("cancel")
@console.command
async def transfer_cancel(transfer_id: TransferId, json_output: JsonOption = False) -> None:
    """Withdraw a transfer you started, before it is accepted."""
    async with _client(load_session()) as api:
        transfer = await api.cancel_transfer(transfer_id)
    _done(json_output, transfer, f"transfer of {transfer['serial']} cancelled")


@app_app.command("release")
@console.command
async def release(
    serial: Serial,
    yes: Annotated[
        bool, typer.Option("--yes", help="Confirm: every access to the charger ends, yours too.")
    ] = False,
    json_output: JsonOption = False,
) -> None:
    """Give up a charger you own without a buyer (moving out): it has no owner afterwards."""
    if not yes:
        raise InvalidInput(f"releasing ends every access to {serial}, yours too: add --yes")
    async with _client(load_session()) as api:
        result = await api.release((await api.charger_by_serial(serial))["id"])
    if json_output:
        console.print_json(result)
        return
    console.out.print(f"{serial} released: it has no owner now", soft_wrap=True, markup=False)
    for line in _handover_lines(result):
        console.out.print(line, soft_wrap=True, markup=False)


# --- a charger's history, and its phones ---------------------------------------------------


@app_app.command("reveals")
@console.command
async def reveals(serial: Serial, json_output: JsonOption = False) -> None:
    """Who revealed a charger's Bluetooth PIN, and when (owners)."""
    async with _client(load_session()) as api:
        items = await api.reveal_history((await api.charger_by_serial(serial))["id"])
    if json_output:
        console.print_json(items)
        return
    console.print_table(
        f"Bluetooth PIN reveals of {serial}",
        ["at", "by", "basis", "request"],
        [(_when(e["at"]), e["actor_email"] or "-", e["basis"] or "-", e["request_id"] or "-")
         for e in items],
    )  # fmt: skip


@app_app.command("security-events")
@console.command
async def security_events(serial: Serial, json_output: JsonOption = False) -> None:
    """Security events the charger reported (newest first)."""
    async with _client(load_session()) as api:
        items = await api.security_events((await api.charger_by_serial(serial))["id"])
    if json_output:
        console.print_json(items)
        return
    console.print_table(
        f"Security events of {serial}",
        ["at", "event", "details", "received"],
        [(_when(e["at"]), e["event_type"], e["tech_info"] or "-", _when(e["received_at"]))
         for e in items],
    )  # fmt: skip


@app_app.command("reenable-pairing")
@console.command
async def reenable_pairing(serial: Serial, json_output: JsonOption = False) -> None:
    """Lift the charger's cap on PIN pairing after 100 failed attempts in a row."""
    async with _client(load_session()) as api:
        command = await api.reenable_pairing((await api.charger_by_serial(serial))["id"])
    _done(
        json_output,
        {"serial": serial, "queued": "reenable_pairing"} | _delivery(command),
        "PIN pairing re-enable queued: " + _reaches(command),
    )


@app_app.command("revoke-phones")
@console.command
async def revoke_phones(
    serial: Serial,
    phone: Annotated[str | None, typer.Option("--phone", help="One phone's id.")] = None,
    every_phone: Annotated[bool, typer.Option("--all", help="Every paired phone.")] = False,
    json_output: JsonOption = False,
) -> None:
    """Make the charger forget a phone's Bluetooth credential (or every phone's)."""
    if (phone is None) == (not every_phone):
        raise InvalidInput("pass either --phone PHONE_ID or --all")
    async with _client(load_session()) as api:
        command = await api.revoke_phones((await api.charger_by_serial(serial))["id"], phone)
    _done(
        json_output,
        {"serial": serial, "queued": "revoke_phones", "phone_id": phone} | _delivery(command),
        ("every phone's" if phone is None else "the phone's")
        + " credential revocation queued: "
        + _reaches(command),
    )


def _delivery(command: dict[str, Any]) -> dict[str, Any]:
    return {"command_id": command["command_id"], "charger_online": command["charger_online"]}


def _reaches(command: dict[str, Any]) -> str:
    """When an OCPP command reaches the charger, as the server answered it."""
    if command["charger_online"]:
        return "the charger is online and gets it over OCPP now"
    return "the charger is OFFLINE and gets it over OCPP when it next connects"


# --- charging sessions ------------------------------------------------------------------------


@app_app.command("sessions")
@console.command
async def sessions(
    serial: Annotated[
        str | None, typer.Argument(help="A charger's sessions (default: your own).")
    ] = None,
    json_output: JsonOption = False,
) -> None:
    """Charging sessions: yours, or a charger's (all of them for its owner and admins)."""
    async with _client(load_session()) as api:
        charger_id = None if serial is None else (await api.charger_by_serial(serial))["id"]
        items = await api.transactions(charger_id)
    if json_output:
        console.print_json(items)
        return
    console.print_table(
        "Your charging sessions" if serial is None else f"Charging sessions at {serial}",
        ["started", "stopped", "charger", "user", "energy (kWh)", "token", "stop reason"],
        [
            (
                _when(t["started_at"]),
                _when(t["stopped_at"]),
                t["charger_serial"],
                t["user_email"] or "-",
                "-" if t["energy_wh"] is None else f"{t['energy_wh'] / 1000:.2f}",
                t["token_type"] or "-",
                t["stop_reason"] or "-",
            )
            for t in items
        ],
    )


def _sticker_payload(source: str) -> str:
    """The QR text of a sticker: ``source`` itself when it is a payload, else the code read
    from the picture file it names (PNG, JPEG, SVG or a phone photo)."""

    path = Path(source)
    if not path.exists():
        if source.strip().upper().startswith("EVA"):
            return source.strip()
        raise InvalidInput(f"{source}: no such picture, nor a sticker's text (EVA1:...)")
    from evaccess import stickers  # noqa: PLC0415 (Pillow, zxing-cpp: only for this command)

    return stickers.read_qr(stickers.load_image(path))


@app_app.command("scan")
@console.command
async def scan(
    sticker: Annotated[
        str,
        typer.Argument(
            help="A picture of the charger's QR sticker (PNG, JPEG, SVG, a photo), or the "
            "text in the code (EVA1:...)."
        ),
    ],
    customer: Annotated[
        str | None,
        typer.Option(
            "--for",
            help="You are the installer: offer the charger to this customer's account at "
            "once; you keep service access (14 days) after they accept.",
        ),
    ] = None,
    json_output: JsonOption = False,
) -> None:
    """Commission a new charger from its QR sticker: your account becomes its owner and its
    Bluetooth PIN is shown at once (audited), ready for `evaccess app pair`. An installer
    adds --for CUSTOMER_EMAIL: the charger is then offered to the customer."""

    payload = _sticker_payload(sticker)
    serial = sticker_payload.parse(payload).serial  # a wrong picture fails here, offline
    transfer: dict[str, Any] | None = None
    session = load_session()
    if customer is not None and (
        "@" not in customer or customer.strip().casefold() == session.email.casefold()
    ):
        raise InvalidInput(f"--for names the customer's account email, not {customer!r}")
    async with _client(session) as api:
        done = await api.request("POST", "/api/commissioning/scan", json={"payload": payload})
        if customer is not None:
            transfer = await api.start_transfer(
                done["charger_id"], customer, keep_service_access=True
            )
    if json_output:
        console.print_json(done if transfer is None else {**done, "transfer": transfer})
        return
    console.out.print(f"charger {serial} is yours now (owner)", markup=False)
    if transfer is not None:
        console.out.print(
            f"offered to {transfer['to_email']}: they run `evaccess app transfer accept "
            f"{transfer['id']}`; you keep service access for 14 days after that",
            soft_wrap=True,
            markup=False,
        )
    pin = done.get("bluetooth_pin")
    if pin is None:
        console.out.print("it has no Bluetooth PIN", markup=False)
        return
    console.out.print(f"Bluetooth PIN: {pin['pin']} ({pin['status']})", markup=False)
    console.out.print(f"pair your phone: evaccess app pair {serial}", markup=False)
