"""Server-side commands: ``evaccess server run``, ``evaccess admin …``, ``evaccess audit …``.
Each is a sync shell around one ``async def`` (``console.command``).

The server stack (SQLAlchemy, Alembic, argon2, pydantic-settings: about two seconds) is
imported inside the commands, not here: ``evaccess app …`` attaches these commands too and
must not pay for a server it never starts."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import asdict
from datetime import date
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any

import typer

from evaccess import console
from evaccess.domain.access import Role

if TYPE_CHECKING:
    from evaccess.server.bootstrap import BootstrapAdmin
    from evaccess.server.context import Context
    from evaccess.server.services.relations import Actor
    from evaccess.server.settings import Settings

server_app = typer.Typer(no_args_is_help=True)
admin_app = typer.Typer(no_args_is_help=True)
audit_app = typer.Typer(no_args_is_help=True)


def _logging(settings: Settings) -> None:
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


def _announce(settings: Settings, admin: BootstrapAdmin | None) -> None:
    from evaccess.server.bootstrap import database_label

    url = settings.public_url or f"http://{settings.host}:{settings.port}"
    scheme = "wss" if settings.tls_cert else "ws"
    ocpp_url = (
        f"{scheme}://{settings.ocpp_host or settings.host}:{settings.ocpp_port}/ocpp/{{serial}}"
    )
    console.out.print(f"[bold]evaccess server[/] on {url}  (API docs: {url}/docs)", soft_wrap=True)
    console.out.print(f"OCPP endpoint: {ocpp_url}", soft_wrap=True)
    console.out.print(
        f"database: {database_label(settings)}; keys in {settings.resolved_keys_dir}/",
        soft_wrap=True,
        markup=False,
    )
    if admin is None:
        console.out.print(
            "forgot the admin's password? evaccess admin reset-password EMAIL", soft_wrap=True
        )
    else:
        console.out.print(
            "[bold yellow]First start: a super-admin was created. These credentials are shown "
            "once; change the password after logging in.[/]"
        )
        console.out.print(f"  email:    {admin.email}")
        console.out.print(f"  password: {admin.password}")
        console.out.print(
            f'  organisation: "{admin.organisation_name}", id {admin.organisation_id} '
            "(ORG_ID in the README; admin commands take the id or the name)",
            soft_wrap=True,
            markup=False,
        )
        console.out.print(
            f"  log in:   evaccess app login --server {url} --email {admin.email}", soft_wrap=True
        )


@server_app.command("run")
@console.command
async def run(
    host: Annotated[str | None, typer.Option(help="Address to listen on (EVACCESS_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="REST API port (EVACCESS_PORT).")] = None,
    ocpp_port: Annotated[
        int | None, typer.Option(help="OCPP WebSocket port (EVACCESS_OCPP_PORT).")
    ] = None,
) -> None:
    """Create or migrate the database and serve the REST API and the OCPP endpoint."""
    from evaccess.server.runner import serve
    from evaccess.server.settings import load_settings

    given = {"host": host, "port": port, "ocpp_port": ocpp_port}
    settings = load_settings(**{k: v for k, v in given.items() if v is not None})
    _logging(settings)
    await serve(settings, announce=_announce)


@asynccontextmanager
async def _admin() -> AsyncIterator[Context]:
    """A context for an administrative command, on the database ``server run`` created
    (never a new one: run from the wrong directory, an admin command would otherwise fill
    an empty database). Names the database it used when the command succeeds."""
    from evaccess.server.bootstrap import build_context, database_label, require_schema
    from evaccess.server.settings import load_settings

    settings = load_settings()
    await require_schema(settings)
    ctx = build_context(settings)
    try:
        yield ctx
    finally:
        await ctx.db.dispose()
    console.err.print(f"database: {database_label(settings)}", style="dim", markup=False)


async def _system_actor(ctx: Context, email: str) -> Actor:
    from evaccess.server.services import accounts
    from evaccess.server.services.relations import Actor

    user = await accounts.user_by_email(ctx, email)
    return Actor(user_id=user.id, email=user.email, is_system_admin=user.is_system_admin)


async def _organisation_id(ctx: Context, ref: str) -> str:
    from evaccess.server.services import directory

    return (await directory.organisation(ctx, ref)).id


Organisation = Annotated[str, typer.Argument(help="Organisation id, or its unique name.")]
Json = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]


@admin_app.command("create-user")
@console.command
async def create_user(
    email: str,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from stdin.")
    ] = False,
    system_admin: Annotated[bool, typer.Option(help="May create organisations.")] = False,
) -> None:
    """Create a user (the password is prompted for, or read from stdin when piped)."""
    from evaccess.server.services import accounts

    password = console.secret("Password", confirm=True, from_stdin=password_stdin)
    async with _admin() as ctx:
        user = await accounts.create_user(ctx, email, password, is_system_admin=system_admin)
    console.out.print(f"created user {user.email} ({user.id})", markup=False)


@admin_app.command("reset-password")
@console.command
async def reset_password(email: str) -> None:
    """Give an account a new one-time password (printed once) and end its sessions."""
    from evaccess.server.services import accounts

    async with _admin() as ctx:
        password = await accounts.reset_password(ctx, email)
    console.out.print(f"new one-time password for {email}: {password}", markup=False)
    console.out.print("every session of the account was ended; change it after logging in")


@admin_app.command("create-organisation")
@console.command
async def create_organisation(
    name: str,
    super_admin: Annotated[str, typer.Option(help="Email of the organisation's super-admin.")],
    parent: Annotated[
        str | None, typer.Option(help="Parent organisation, id or name (makes a subgroup).")
    ] = None,
) -> None:
    """Create an organisation (or a subgroup) with its super-admin."""
    from evaccess.server.services import organisations
    from evaccess.server.services.relations import Actor

    async with _admin() as ctx:
        actor = await _system_actor(ctx, super_admin)
        if parent is None:
            actor = Actor(user_id=actor.user_id, email=actor.email, is_system_admin=True)
            org = await organisations.create_organisation(ctx, actor, name)
        else:
            parent_id = await _organisation_id(ctx, parent)
            org = await organisations.create_subgroup(ctx, actor, parent_id, name)
    console.out.print(f"created organisation {org.name} ({org.id})", markup=False)


@admin_app.command("add-member")
@console.command
async def add_member(
    organisation: Organisation,
    email: str,
    by: Annotated[str, typer.Option(help="Email of an admin of the organisation.")],
    role: Annotated[Role, typer.Option()] = Role.USER,
) -> None:
    """Add an existing user to an organisation."""
    from evaccess.server.services import organisations

    async with _admin() as ctx:
        actor = await _system_actor(ctx, by)
        org_id = await _organisation_id(ctx, organisation)
        member = await organisations.add_member(ctx, actor, org_id, email, role)
    console.out.print(f"{member.email} is now {member.role.value} of {organisation}", markup=False)


@admin_app.command("create-charger")
@console.command
async def create_charger(
    organisation: Organisation,
    serial: Annotated[str, typer.Option(help="The serial number on the charger's label.")],
    vendor: Annotated[str, typer.Option(help="Maker, e.g. Wallbox or Zaptec.")],
    model: Annotated[str, typer.Option(help='Model, e.g. "Pulsar Max".')],
    firmware: Annotated[str, typer.Option(help="Firmware version, e.g. 6.11.2.")],
    by: Annotated[str, typer.Option(help="Email of an admin of the organisation.")],
    owner: Annotated[str | None, typer.Option(help="Owner's email.")] = None,
    production_date: Annotated[str | None, typer.Option(help="YYYY-MM-DD")] = None,
    keypad: Annotated[
        bool,
        typer.Option("--keypad", help="The charger has a keypad (keypad PINs start sessions)."),
    ] = False,
    bluetooth: Annotated[
        bool, typer.Option(" /--no-bluetooth", help="The charger has no Bluetooth LE radio.")
    ] = True,
    json_output: Json = False,
) -> None:
    """Register a charger; prints its OCPP password once."""
    from evaccess.domain.errors import InvalidInput
    from evaccess.server.services import chargers

    try:
        produced = date.fromisoformat(production_date) if production_date else None
    except ValueError:
        raise InvalidInput("--production-date takes YYYY-MM-DD") from None
    async with _admin() as ctx:
        actor = await _system_actor(ctx, by)
        reg = await chargers.register(
            ctx,
            actor,
            organisation_id=await _organisation_id(ctx, organisation),
            serial=serial,
            vendor=vendor,
            model=model,
            firmware=firmware,
            production_date=produced,
            keypad=keypad,
            bluetooth=bluetooth,
            owner_email=owner,
        )
    if json_output:
        console.print_json(
            {"id": reg.charger.id, "serial": reg.charger.serial, "ocpp_password": reg.ocpp_password}
        )
        return
    console.out.print(f"registered charger {reg.charger.serial} ({reg.charger.id})", markup=False)
    console.out.print(f"OCPP password (shown once): {reg.ocpp_password}")


class Listing(StrEnum):
    ORGANISATIONS = "organisations"
    USERS = "users"
    CHARGERS = "chargers"


@admin_app.command("list")
@console.command
async def list_(what: Listing, json_output: Json = False) -> None:
    """List the organisations, users or chargers in the database."""
    from evaccess.server.services import directory

    async with _admin() as ctx:
        match what:
            case Listing.ORGANISATIONS:
                rows: Sequence[Any] = await directory.organisations(ctx)
                columns = ["id", "name", "parent_id", "members", "chargers"]
            case Listing.USERS:
                rows = await directory.users(ctx)
                columns = ["id", "email", "system_admin", "organisations"]
            case Listing.CHARGERS:
                rows = await directory.chargers(ctx)
                columns = ["serial", "organisation", "vendor", "model", "firmware", "online", "id"]
    if json_output:
        console.print_json([asdict(row) for row in rows])
        return
    console.print_table(
        what.value.capitalize(), columns, [[getattr(row, c) for c in columns] for row in rows]
    )


@admin_app.command("rotate-keys")
@console.command
async def rotate_keys() -> None:
    """Add a new vault key version and re-encrypt every Bluetooth PIN under it (safe while
    the server runs: it picks up the new key from the key directory)."""
    from evaccess.domain.clock import SystemRandom
    from evaccess.server.services import rotation

    async with _admin() as ctx:
        version = ctx.keys.add_vault_key(SystemRandom())
        count = await rotation.rotate_keys(ctx)
    console.out.print(f"re-encrypted {count} sealed value(s) under key version {version}")


@audit_app.command("verify")
@console.command
async def verify() -> None:
    """Walk the audit chain; name the first bad record (exit 8) or confirm it is whole."""
    from evaccess.domain.errors import AuditChainBroken

    async with _admin() as ctx, ctx.db.read() as session:
        report = await ctx.audit.verify(session)
    if not report.ok:
        raise AuditChainBroken(f"audit record {report.first_bad_seq} is bad: {report.reason}")
    console.out.print(f"audit log verified: {report.records} record(s), chain intact")
