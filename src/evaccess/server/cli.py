"""Server-side commands: ``evaccess server run``, ``evaccess admin …``, ``evaccess audit …``.
Each is a sync shell around one ``async def`` (``console.command``).

The server stack (SQLAlchemy, Alembic, argon2, pydantic-settings: about two seconds) is
imported inside the commands, not here: ``evaccess app …`` attaches these commands too and
must not pay for a server it never starts."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TextIO

import typer

from evaccess import console
from evaccess.domain.access import Role

if TYPE_CHECKING:
    from evaccess.server.bootstrap import BootstrapAdmin
    from evaccess.server.context import Context
    from evaccess.server.services.chargers import Registration
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
    url = settings.public_url or f"http://{settings.host}:{settings.port}"
    scheme = "wss" if settings.tls_cert else "ws"
    ocpp_url = (
        f"{scheme}://{settings.ocpp_host or settings.host}:{settings.ocpp_port}/ocpp/{{serial}}"
    )
    console.out.print(f"[bold]evaccess server[/] on {url}  (API docs: {url}/docs)", soft_wrap=True)
    console.out.print(f"OCPP endpoint: {ocpp_url}", soft_wrap=True)
    console.out.print(
        f"database: {settings.resolved_database_url.split('://')[0]}, data in {settings.data_dir}/"
    )
    if admin is not None:
        console.out.print(
            "[bold yellow]First start: a super-admin was created. These credentials are shown "
            "once; change the password after logging in.[/]"
        )
        console.out.print(f"  email:    {admin.email}")
        console.out.print(f"  password: {admin.password}")
        console.out.print(f"  organisation: {admin.organisation_id}")
        console.out.print(
            f"  log in:   evaccess app login --server {url} --email {admin.email}", soft_wrap=True
        )


@server_app.command("run")
@console.command
async def run(
    host: Annotated[str | None, typer.Option(help="Address to listen on (EVACCESS_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="HTTP port (EVACCESS_PORT).")] = None,
) -> None:
    """Migrate the database and serve the REST API and the OCPP endpoint."""
    from evaccess.server.runner import serve
    from evaccess.server.settings import load_settings

    overrides = {k: v for k, v in {"host": host, "port": port}.items() if v is not None}
    settings = load_settings(**overrides)
    _logging(settings)
    await serve(settings, announce=_announce)


async def _admin_context() -> tuple[Context, Actor]:
    """A context for administrative commands, acting as the system itself."""
    from evaccess.server.bootstrap import build_context, migrate
    from evaccess.server.services.relations import Actor
    from evaccess.server.settings import load_settings

    settings = load_settings()
    await migrate(settings)
    ctx = build_context(settings)
    return ctx, Actor(user_id="", email="", is_system_admin=True)


async def _system_actor(ctx: Context, email: str) -> Actor:
    from evaccess.server.services import accounts
    from evaccess.server.services.relations import Actor

    user = await accounts.user_by_email(ctx, email)
    return Actor(user_id=user.id, email=user.email, is_system_admin=user.is_system_admin)


@admin_app.command("create-user")
@console.command
async def create_user(
    email: str,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from stdin.")
    ] = False,
    system_admin: Annotated[bool, typer.Option(help="May create organisations.")] = False,
) -> None:
    """Create a user (the password is prompted for, or read from stdin)."""
    import sys

    password = (
        sys.stdin.readline().rstrip("\n")
        if password_stdin
        else typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    )
    from evaccess.server.services import accounts

    ctx, _ = await _admin_context()
    try:
        user = await accounts.create_user(ctx, email, password, is_system_admin=system_admin)
    finally:
        await ctx.db.dispose()
    console.out.print(f"created user {user.email} ({user.id})", markup=False)


@admin_app.command("create-organisation")
@console.command
async def create_organisation(
    name: str,
    super_admin: Annotated[str, typer.Option(help="Email of the organisation's super-admin.")],
    parent: Annotated[str | None, typer.Option(help="Parent organisation id (a subgroup).")] = None,
) -> None:
    """Create an organisation (or a subgroup) with its super-admin."""
    from evaccess.server.services import organisations
    from evaccess.server.services.relations import Actor

    ctx, _ = await _admin_context()
    try:
        actor = await _system_actor(ctx, super_admin)
        if parent is None:
            actor = Actor(user_id=actor.user_id, email=actor.email, is_system_admin=True)
            org = await organisations.create_organisation(ctx, actor, name)
        else:
            org = await organisations.create_subgroup(ctx, actor, parent, name)
    finally:
        await ctx.db.dispose()
    console.out.print(f"created organisation {org.name} ({org.id})", markup=False)


@admin_app.command("add-member")
@console.command
async def add_member(
    organisation: str,
    email: str,
    by: Annotated[str, typer.Option(help="Email of an admin of the organisation.")],
    role: Annotated[Role, typer.Option()] = Role.USER,
) -> None:
    """Add an existing user to an organisation."""
    from evaccess.server.services import organisations

    ctx, _ = await _admin_context()
    try:
        actor = await _system_actor(ctx, by)
        member = await organisations.add_member(ctx, actor, organisation, email, role)
    finally:
        await ctx.db.dispose()
    console.out.print(f"{member.email} is now {member.role.value} of {organisation}", markup=False)


@admin_app.command("create-charger")
@console.command
async def create_charger(
    organisation: str,
    serial: Annotated[str, typer.Option()],
    vendor: Annotated[str, typer.Option()],
    model: Annotated[str, typer.Option()],
    firmware: Annotated[str, typer.Option()],
    by: Annotated[str, typer.Option(help="Email of an admin of the organisation.")],
    owner: Annotated[str | None, typer.Option(help="Owner's email.")] = None,
    production_date: Annotated[str | None, typer.Option(help="YYYY-MM-DD")] = None,
    keypad: Annotated[bool, typer.Option()] = False,
    no_bluetooth: Annotated[bool, typer.Option()] = False,
    json_output: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Register a charger; prints its OCPP password once."""
    from evaccess.domain.errors import InvalidInput

    try:
        produced = date.fromisoformat(production_date) if production_date else None
    except ValueError:
        raise InvalidInput("--production-date takes YYYY-MM-DD") from None
    from evaccess.server.services import chargers

    ctx, _ = await _admin_context()
    try:
        actor = await _system_actor(ctx, by)
        reg = await chargers.register(
            ctx,
            actor,
            organisation_id=organisation,
            serial=serial,
            vendor=vendor,
            model=model,
            firmware=firmware,
            production_date=produced,
            keypad=keypad,
            bluetooth=not no_bluetooth,
            owner_email=owner,
        )
    finally:
        await ctx.db.dispose()
    if json_output:
        console.print_json(
            {"id": reg.charger.id, "serial": reg.charger.serial, "ocpp_password": reg.ocpp_password}
        )
        return
    console.out.print(f"registered charger {reg.charger.serial} ({reg.charger.id})", markup=False)
    console.out.print(f"OCPP password (shown once): {reg.ocpp_password}")


@admin_app.command("rotate-keys")
@console.command
async def rotate_keys() -> None:
    """Add a new vault key version and re-encrypt every Bluetooth PIN under it (safe while
    the server runs: it picks up the new key from the key directory)."""
    from evaccess.domain.clock import SystemRandom
    from evaccess.server.services import rotation

    ctx, _ = await _admin_context()
    try:
        version = ctx.keys.add_vault_key(SystemRandom())
        count = await rotation.rotate_keys(ctx)
    finally:
        await ctx.db.dispose()
    console.out.print(f"re-encrypted {count} sealed value(s) under key version {version}")


@audit_app.command("verify")
@console.command
async def verify() -> None:
    """Walk the audit chain; name the first bad record (exit 8) or confirm it is whole."""
    from evaccess.domain.errors import AuditChainBroken

    ctx, _ = await _admin_context()
    try:
        async with ctx.db.read() as session:
            report = await ctx.audit.verify(session)
    finally:
        await ctx.db.dispose()
    if not report.ok:
        raise AuditChainBroken(f"audit record {report.first_bad_seq} is bad: {report.reason}")
    console.out.print(f"audit log verified: {report.records} record(s), chain intact")


BULK_PROGRESS_ABOVE = 50
"""Bulk registrations of more chargers than this show a progress bar."""


@admin_app.command("create-chargers")
@console.command
async def create_chargers(
    organisation: str,
    vendor: Annotated[str, typer.Option()],
    model: Annotated[str, typer.Option()],
    firmware: Annotated[str, typer.Option()],
    by: Annotated[str, typer.Option(help="Email of an admin of the organisation.")],
    out: Annotated[
        Path,
        typer.Option(help="Password file to create (0600): 'serial,password', for charger fleet."),
    ],
    count: Annotated[int | None, typer.Option(help="How many serials to make.")] = None,
    prefix: Annotated[str | None, typer.Option(help="Serials PREFIX0001, PREFIX0002, …")] = None,
    start: Annotated[int, typer.Option(help="The first number after the prefix.")] = 1,
    serials_from: Annotated[
        Path | None,
        typer.Option(help="A file with one serial per line, or a CSV with a 'serial' column."),
    ] = None,
    production_date: Annotated[str | None, typer.Option(help="YYYY-MM-DD")] = None,
    keypad: Annotated[bool, typer.Option()] = False,
    no_bluetooth: Annotated[bool, typer.Option()] = False,
) -> None:
    """Register many chargers of one kind in one transaction; write their OCPP passwords to
    a file that `evaccess charger fleet --password-file` reads."""
    from evaccess.domain.errors import InvalidInput

    serials = _bulk_serials(count, prefix, start, serials_from)
    try:
        produced = date.fromisoformat(production_date) if production_date else None
    except ValueError:
        raise InvalidInput("--production-date takes YYYY-MM-DD") from None
    from rich.progress import Progress

    from evaccess.server.services import chargers

    handle = _new_secret_file(out)
    registrations: list[Registration] | None = None
    try:
        ctx, _ = await _admin_context()
        try:
            actor = await _system_actor(ctx, by)
            with Progress(
                console=console.err,
                transient=True,
                disable=len(serials) <= BULK_PROGRESS_ABOVE or not console.err.is_terminal,
            ) as bar:
                task = bar.add_task("registering chargers", total=len(serials))
                registrations = await chargers.register_many(
                    ctx,
                    actor,
                    organisation_id=organisation,
                    serials=serials,
                    vendor=vendor,
                    model=model,
                    firmware=firmware,
                    production_date=produced,
                    keypad=keypad,
                    bluetooth=not no_bluetooth,
                    keep=lambda regs: _write_password_file(handle, regs),
                    progress=lambda done: bar.update(task, completed=done),
                )
        finally:
            await ctx.db.dispose()
    finally:
        handle.close()
        if registrations is None:  # nothing was registered: the file holds no password
            out.unlink(missing_ok=True)
    console.out.print(
        f"registered {len(registrations)} chargers in {organisation}; "
        f"their OCPP passwords are in {out} (0600, shown nowhere else)",
        markup=False,
        soft_wrap=True,
    )


def _bulk_serials(
    count: int | None, prefix: str | None, start: int, serials_from: Path | None
) -> list[str]:
    from evaccess.domain.errors import InvalidInput

    if (count is None) == (serials_from is None):
        raise InvalidInput("give either --count with --prefix, or --serials-from")
    if serials_from is not None:
        return _read_serials(serials_from)
    assert count is not None
    if prefix is None:
        raise InvalidInput("--count needs --prefix")
    if not 1 <= count <= 100_000:
        raise InvalidInput("--count takes 1 to 100000")
    if start < 0:
        raise InvalidInput("--start takes a number from 0")
    width = max(4, len(str(start + count - 1)))
    return [f"{prefix}{n:0{width}d}" for n in range(start, start + count)]


def _read_serials(path: Path) -> list[str]:
    """One serial per line, or a CSV whose header has a ``serial`` column."""
    import csv

    from evaccess.domain.errors import InvalidInput

    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise InvalidInput(f"cannot read the serials file {path}: {reason}") from None
    lines = [line for line in lines if line.strip()]
    rows = list(csv.reader(lines))
    header = [cell.strip().casefold() for cell in rows[0]] if rows else []
    if "serial" not in header:
        return lines
    column = header.index("serial")
    return [row[column] if column < len(row) else "" for row in rows[1:]]


def _new_secret_file(path: Path) -> TextIO:
    """Create ``path`` for writing, 0600 from the start; refuse to replace a file (it may
    hold the only copy of other chargers' passwords)."""
    import os

    from evaccess.domain.errors import InvalidInput

    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise InvalidInput(f"{path} exists; choose another --out (it is never replaced)") from None
    except OSError as exc:
        raise InvalidInput(f"cannot create {path}: {exc.strerror}") from None
    os.fchmod(fd, 0o600)  # whatever the umask
    return os.fdopen(fd, "w", newline="", encoding="utf-8")


def _write_password_file(handle: TextIO, registrations: Sequence[Registration]) -> None:
    """The format ``charger fleet`` reads (``charger/fleet.py``): a header, then one
    ``serial,password`` row per charger; flushed to disk before the registrations commit."""
    import csv
    import os

    writer = csv.writer(handle, lineterminator="\n")
    writer.writerow(("serial", "password"))
    writer.writerows((reg.charger.serial, reg.ocpp_password) for reg in registrations)
    handle.flush()
    os.fsync(handle.fileno())
