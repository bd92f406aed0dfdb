"""Server-side commands: ``evaccess server run``, ``evaccess admin …``, ``evaccess audit …``.
Each is a sync shell around one ``async def`` (``console.command``).

The server stack (SQLAlchemy, Alembic, argon2, pydantic-settings: about two seconds) is
imported inside the commands, not here: ``evaccess app …`` attaches these commands too and
must not pay for a server it never starts."""

from __future__ import annotations

import csv
import os
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import asdict
from datetime import date
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TextIO

import typer
from rich.progress import Progress

from evaccess import console
from evaccess.domain.access import ORG_PERMISSIONS, MemberAccess, OrgAction, Role, StaffRole
from evaccess.domain.clock import SystemRandom
from evaccess.domain.errors import AuditChainBroken, InvalidInput, PermissionDenied
from evaccess.server.audit_anchor import AuditAnchor, read_head
from evaccess.server.bootstrap import build_context, database_label, require_schema
from evaccess.server.db.models import Organisation as OrganisationRow
from evaccess.server.runner import configure_logging, serve
from evaccess.server.services import (
    accounts,
    commissioning,
    directory,
    organisations,
    registration,
    rotation,
)
from evaccess.server.services.relations import Actor, org_role
from evaccess.server.settings import load_settings

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from evaccess.server.audit_anchor import AuditAnchor
    from evaccess.server.bootstrap import BootstrapAdmin
    from evaccess.server.context import Context
    from evaccess.server.services.registration import Registration
    from evaccess.server.services.relations import Actor
    from evaccess.server.settings import Settings

server_app = typer.Typer(no_args_is_help=True)
admin_app = typer.Typer(no_args_is_help=True)
audit_app = typer.Typer(no_args_is_help=True)


def _announce(settings: Settings, admin: BootstrapAdmin | None) -> None:

    url = settings.public_url or f"http://{settings.host}:{settings.port}"
    scheme = "wss" if settings.tls_cert else "ws"
    ocpp_url = (
        f"{scheme}://{settings.ocpp_host or settings.host}:{settings.ocpp_port}/ocpp/{{serial}}"
    )
    console.out.print(f"[bold]evaccess server[/] on {url}  (API docs: {url}/docs)", soft_wrap=True)
    console.out.print(f"web portal: {url}/login", soft_wrap=True)
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
            f"  organisation: {admin.organisation_id}  "
            f'("{admin.organisation_name}"; ORG_ID in the README: admin commands take the id '
            "or the name)",
            soft_wrap=True,
            markup=False,
        )
        console.out.print(f"  log in:   {url}/login in a browser, or", soft_wrap=True)
        console.out.print(
            f"            evaccess app login --server {url} --email {admin.email}", soft_wrap=True
        )


@server_app.command("run")
@console.command
async def run(
    host: Annotated[str | None, typer.Option(help="Address to listen on (EVACCESS_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="REST API port (EVACCESS_PORT).")] = None,
    ocpp_port: Annotated[
        int | None,
        typer.Option(help="Port chargers connect to over OCPP WebSocket (EVACCESS_OCPP_PORT)."),
    ] = None,
) -> None:
    """Create or migrate the database and serve the REST API and the OCPP endpoint (OCPP:
    Open Charge Point Protocol, how chargers talk to their server)."""

    given = {"host": host, "port": port, "ocpp_port": ocpp_port}
    settings = load_settings(**{k: v for k, v in given.items() if v is not None})
    configure_logging(settings.log_level)
    await serve(settings, announce=_announce)


@asynccontextmanager
async def _admin() -> AsyncIterator[Context]:
    """A context for an administrative command, on the database ``server run`` created
    (never a new one: run from the wrong directory, an admin command would otherwise fill
    an empty database). Names the database it used when the command succeeds."""

    settings = load_settings()
    await require_schema(settings)
    ctx = build_context(settings)
    try:
        yield ctx
    finally:
        await ctx.close()
    console.err.print(f"database: {database_label(settings)}", style="dim", markup=False)


async def _system_actor(ctx: Context, email: str) -> Actor:

    user = await accounts.user_by_email(ctx, email)
    return Actor(
        user_id=user.id,
        email=user.email,
        is_system_admin=user.is_system_admin,
        staff_role=StaffRole(user.staff_role) if user.staff_role else None,
    )


async def _acting(
    ctx: Context, email: str, organisation: str, action: OrgAction
) -> tuple[str, Actor]:
    """The organisation (by id or name) and the user ``--by`` names, when their role in it
    allows ``action``.

    The API answers an outsider "no such organisation" (it does not tell what exists); the
    operator at the server's console is told who lacks which role instead."""

    org_id = await _organisation_id(ctx, organisation)
    actor = await _system_actor(ctx, email)
    async with ctx.db.read() as session:
        org = await session.get(OrganisationRow, org_id)
        role = await org_role(session, actor.user_id, org_id)
    allowed = ORG_PERMISSIONS[action]
    if org is not None and role not in allowed:
        held = f"has the role {role.value} in" if role else "is not a member of"
        needed = " or ".join(sorted(r.value for r in allowed))
        raise PermissionDenied(f"{email} {held} {org.name}; this takes {needed} (--by names one)")
    return org_id, actor


async def _organisation_id(ctx: Context, ref: str) -> str:

    return (await directory.organisation(ctx, ref)).id


Organisation = Annotated[str, typer.Argument(help="Organisation id, or its unique name.")]
Json = Annotated[
    bool, typer.Option("--json", help="Print the result as JSON, for scripts, instead of text.")
]
Email = Annotated[str, typer.Argument(help="The account's email address (its login).")]
By = Annotated[
    str, typer.Option(help="Email of an admin of the organisation (audited as the actor).")
]


@admin_app.command("create-user")
@console.command
async def create_user(
    email: Email,
    password_stdin: Annotated[
        bool,
        typer.Option("--password-stdin", help="Read the password from stdin instead of a prompt."),
    ] = False,
    system_admin: Annotated[
        bool,
        typer.Option("--system-admin", help="A system administrator: may create organisations."),
    ] = False,
) -> None:
    """Create a user (the password is prompted for, or read from stdin when piped)."""

    password = console.secret("Password", confirm=True, from_stdin=password_stdin)
    async with _admin() as ctx:
        user = await accounts.create_user(ctx, email, password, is_system_admin=system_admin)
    console.out.print(f"created user {user.email} ({user.id})", markup=False)


@admin_app.command("reset-password")
@console.command
async def reset_password(email: Email) -> None:
    """Give an account a new one-time password (printed once) and end its sessions."""

    async with _admin() as ctx:
        password = await accounts.reset_password(ctx, email)
    console.out.print(f"new one-time password for {email}: {password}", markup=False)
    console.out.print("every session of the account was ended; change it after logging in")


class StaffChoice(StrEnum):
    SUPPORT = "support"
    MANUFACTURER = "manufacturer"
    NONE = "none"


@admin_app.command("set-staff-role")
@console.command
async def set_staff_role(
    email: Email,
    role: Annotated[
        StaffChoice,
        typer.Argument(
            help="support (reviews ownership claims), manufacturer (prints packaging "
            "labels) or none."
        ),
    ],
) -> None:
    """Make an account one of your support agents or manufacturers, or take it back."""

    staff = None if role is StaffChoice.NONE else StaffRole(role.value)
    async with _admin() as ctx:
        user = await accounts.set_staff_role(ctx, email, staff)
    console.out.print(f"{user.email}: staff role {role.value}", markup=False)


@admin_app.command("create-organisation")
@console.command
async def create_organisation(
    name: Annotated[str, typer.Argument(help="The organisation's name (unique).")],
    super_admin: Annotated[str, typer.Option(help="Email of the organisation's super-admin.")],
    parent: Annotated[
        str | None, typer.Option(help="Parent organisation, id or name (makes a subgroup).")
    ] = None,
) -> None:
    """Create an organisation (or a subgroup) with its super-admin."""

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
    email: Email,
    by: By,
    role: Annotated[
        Role,
        typer.Option(
            help="user, admin (adds members, manages chargers) or super_admin (also roles, settings)."
        ),
    ] = Role.USER,
) -> None:
    """Add an existing user to an organisation."""

    async with _admin() as ctx:
        org_id, actor = await _acting(ctx, by, organisation, OrgAction.MANAGE_MEMBERS)
        member = await organisations.add_member(ctx, actor, org_id, email, role)
    console.out.print(f"{member.email} is now {member.role.value} of {organisation}", markup=False)


@admin_app.command("set-member-access")
@console.command
async def set_member_access(
    organisation: Organisation,
    policy: Annotated[MemberAccess, typer.Argument(help="all or assigned.")],
    by: By,
) -> None:
    """Let all members use all the organisation's chargers (all), or only the chargers
    assigned to them (assigned). Applies to its subgroups too; audited."""

    async with _admin() as ctx:
        org_id, actor = await _acting(ctx, by, organisation, OrgAction.SET_MEMBER_ACCESS)
        org = await organisations.set_member_access(ctx, actor, org_id, policy)
    console.out.print(f"member access of {org.name} ({org.id}): {policy.value}", markup=False)


@admin_app.command("create-charger")
@console.command
async def create_charger(
    organisation: Organisation,
    serial: Annotated[str, typer.Option(help="The serial number on the charger's label.")],
    vendor: Annotated[str, typer.Option(help="Maker, e.g. Wallbox or Zaptec.")],
    model: Annotated[str, typer.Option(help='Model, e.g. "Pulsar Max".')],
    firmware: Annotated[str, typer.Option(help="Firmware version, e.g. 6.11.2.")],
    by: By,
    owner: Annotated[str | None, typer.Option(help="Owner's email.")] = None,
    production_date: Annotated[str | None, typer.Option(help="YYYY-MM-DD")] = None,
    keypad: Annotated[
        bool,
        typer.Option("--keypad", help="The charger has a keypad (keypad PINs start sessions)."),
    ] = False,
    bluetooth: Annotated[
        bool, typer.Option(" /--no-bluetooth", help="The charger has no Bluetooth LE radio.")
    ] = True,
    out: Annotated[
        Path | None,
        typer.Option(
            help="Write the OCPP password to this new file (0600, 'serial,password', what "
            "`evaccess charger run --password-file` reads) instead of printing it."
        ),
    ] = None,
    sticker: Annotated[
        Path | None,
        typer.Option(
            help="Draw the charger's commissioning QR sticker to this .png or .svg (its "
            "one-time code exists only there; `evaccess admin sticker` issues a new one)."
        ),
    ] = None,
    json_output: Json = False,
) -> None:
    """Register a charger; prints once the password it logs in to the server with over OCPP
    (Open Charge Point Protocol), or writes it to --out."""

    try:
        produced = date.fromisoformat(production_date) if production_date else None
    except ValueError:
        raise InvalidInput("--production-date takes YYYY-MM-DD") from None

    handle = _new_secret_file(out) if out is not None else None
    try:
        async with _admin() as ctx:
            org_id, actor = await _acting(ctx, by, organisation, OrgAction.REGISTER_CHARGER)
            reg = await registration.register(
                ctx,
                actor,
                organisation_id=org_id,
                serial=serial,
                vendor=vendor,
                model=model,
                firmware=firmware,
                production_date=produced,
                keypad=keypad,
                bluetooth=bluetooth,
                owner_email=owner,
            )
    except BaseException:
        if handle is not None and out is not None:  # nothing registered: no file left behind
            handle.close()
            out.unlink()
        raise
    if handle is not None:
        with handle:
            _write_password_file(handle, [reg])
    if sticker is not None and reg.sticker is not None:
        from evaccess import stickers  # noqa: PLC0415 (Pillow, zxing-cpp: only for this command)

        stickers.write_sticker(reg.sticker.payload, reg.sticker.serial, sticker)
        console.err.print(f"commissioning sticker drawn to {sticker}", markup=False)
    if json_output:
        shown = {"id": reg.charger.id, "serial": reg.charger.serial}
        secret = {"password_file": str(out)} if out else {"ocpp_password": reg.ocpp_password}
        console.print_json(shown | secret)
        return
    console.out.print(f"registered charger {reg.charger.serial} ({reg.charger.id})", markup=False)
    if out is not None:
        console.out.print(f"OCPP password written to {out} (0600)", markup=False)
    else:
        console.out.print(f"OCPP password (shown once): {reg.ocpp_password}")


StickerSerial = Annotated[str, typer.Argument(help="The charger's serial number.")]


@admin_app.command("sticker")
@console.command
async def sticker(
    serial: StickerSerial,
    by: By,
    out: Annotated[Path, typer.Option(help="The sticker to draw: a .png or .svg file.")],
) -> None:
    """Issue a new one-time commissioning code for a charger that has no owner and draw its
    QR sticker (the serial printed under the code). The previous sticker stops working."""
    from evaccess import stickers  # noqa: PLC0415 (Pillow, zxing-cpp: only for this command)

    if out.suffix.lower() not in (".png", ".svg"):
        raise InvalidInput(f"{out.name}: write .png or .svg")
    async with _admin() as ctx:
        issued = await commissioning.issue(ctx, await _system_actor(ctx, by), serial)
    stickers.write_sticker(issued.payload, issued.serial, out)
    console.out.print(f"sticker for {issued.serial} drawn to {out}", markup=False)


@admin_app.command("label")
@console.command
async def label(
    serial: StickerSerial,
    by: Annotated[
        str,
        typer.Option(help="Email of a super-admin of the charger's organisation (the maker)."),
    ],
    out: Annotated[Path, typer.Option(help="The packaging label: a .pdf or .png file.")],
    sticker: Annotated[
        Path | None,
        typer.Option(help="Also draw the QR sticker (same code) to this .png or .svg."),
    ] = None,
) -> None:
    """Render the packaging label (serial, QR sticker code, Bluetooth PIN) at manufacturing:
    only for vendors that print the PIN (Zaptec), only before the charger's first owner;
    audited as a reveal. Issues a new commissioning code (an older sticker stops working)."""
    from evaccess import stickers  # noqa: PLC0415 (Pillow, zxing-cpp: only for this command)

    if out.suffix.lower() not in (".pdf", ".png"):
        raise InvalidInput(f"{out.name}: write .pdf or .png")
    if sticker is not None and sticker.suffix.lower() not in (".png", ".svg"):
        raise InvalidInput(f"{sticker.name}: write .png or .svg")
    async with _admin() as ctx:
        made = await commissioning.packaging_label(ctx, await _system_actor(ctx, by), serial)
    stickers.write_label(made.payload, made.serial, made.pin, out)
    if sticker is not None:
        stickers.write_sticker(made.payload, made.serial, sticker)
    console.out.print(f"packaging label for {made.serial} drawn to {out}", markup=False)


class Listing(StrEnum):
    ORGANISATIONS = "organisations"
    USERS = "users"
    CHARGERS = "chargers"


@admin_app.command("list")
@console.command
async def list_(
    what: Annotated[Listing, typer.Argument(help="What to list.")], json_output: Json = False
) -> None:
    """List the organisations, users or chargers in the database."""

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

    async with _admin() as ctx:
        version = ctx.keys.add_vault_key(SystemRandom())
        count = await rotation.rotate_keys(ctx)
    console.out.print(f"re-encrypted {count} sealed value(s) under key version {version}")


@audit_app.command("verify")
@console.command
async def verify() -> None:
    """Walk the audit chain, compare it with the latest checkpoint, print its head digest.

    Names the first bad record or the disagreement with the checkpoint (exit 8)."""

    async with _admin() as ctx, ctx.db.snapshot() as session:
        anchor = _audit_anchor(ctx)
        records = await _verified(ctx, session)
        checkpoint = await anchor.check(session)
        head = await read_head(session)
    console.out.print(f"audit log verified: {records} record(s), chain intact")
    console.out.print(f"head: record {head.seq}, digest {head.digest.hex()}")
    if checkpoint is None:
        console.out.print(
            f"no checkpoint in {anchor.path} yet: `evaccess audit checkpoint` writes one",
            soft_wrap=True,
            markup=False,
        )
    else:
        console.out.print(
            f"matches the checkpoint at record {checkpoint.seq} of "
            f"{checkpoint.at.isoformat(timespec='seconds')} ({anchor.path})",
            soft_wrap=True,
            markup=False,
        )


@audit_app.command("checkpoint")
@console.command
async def checkpoint() -> None:
    """Append a signed checkpoint of the verified audit head to the checkpoint file.

    The checkpoint (sequence number, digest, time) goes to EVACCESS_AUDIT_CHECKPOINT_FILE,
    outside the data directory; `audit verify` then notices records cut from the end. Run
    it regularly (cron)."""
    async with _admin() as ctx, ctx.db.snapshot() as session:
        anchor = _audit_anchor(ctx)
        await _verified(ctx, session)
        written = await anchor.write(session)
    console.out.print(
        f"checkpoint written: record {written.seq}, digest {written.head.hex()}, to {anchor.path}",
        soft_wrap=True,
        markup=False,
    )


def _audit_anchor(ctx: Context) -> AuditAnchor:

    path = load_settings().resolved_audit_checkpoint_file
    return AuditAnchor(path, ctx.keys, ctx.clock)


async def _verified(ctx: Context, session: AsyncSession) -> int:
    """The number of records in the audit chain, once it verifies."""

    report = await ctx.audit.verify(session)
    if not report.ok:
        raise AuditChainBroken(f"audit record {report.first_bad_seq} is bad: {report.reason}")
    return report.records


BULK_PROGRESS_ABOVE = 50
"""Bulk registrations of more chargers than this show a progress bar."""


@admin_app.command("create-chargers")
@console.command
async def create_chargers(
    organisation: Organisation,
    vendor: Annotated[str, typer.Option(help="Maker, e.g. Wallbox or Zaptec.")],
    model: Annotated[str, typer.Option(help='Model, e.g. "Pulsar Max".')],
    firmware: Annotated[str, typer.Option(help="Firmware version, e.g. 6.11.2.")],
    by: By,
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
    keypad: Annotated[bool, typer.Option("--keypad", help="The chargers have a keypad.")] = False,
    bluetooth: Annotated[
        bool, typer.Option(" /--no-bluetooth", help="The chargers have no Bluetooth LE radio.")
    ] = True,
) -> None:
    """Register many chargers of one kind in one transaction; write the passwords they log
    in with over OCPP (Open Charge Point Protocol) to a file that `evaccess charger fleet
    --password-file` reads."""

    serials = _bulk_serials(count, prefix, start, serials_from)
    try:
        produced = date.fromisoformat(production_date) if production_date else None
    except ValueError:
        raise InvalidInput("--production-date takes YYYY-MM-DD") from None

    handle = _new_secret_file(out)
    registrations: list[Registration] | None = None
    try:
        async with _admin() as ctx:
            org_id, actor = await _acting(ctx, by, organisation, OrgAction.REGISTER_CHARGER)
            with Progress(
                console=console.err,
                transient=True,
                disable=len(serials) <= BULK_PROGRESS_ABOVE or not console.err.is_terminal,
            ) as bar:
                task = bar.add_task("registering chargers", total=len(serials))
                registrations = await registration.register_many(
                    ctx,
                    actor,
                    organisation_id=org_id,
                    serials=serials,
                    vendor=vendor,
                    model=model,
                    firmware=firmware,
                    production_date=produced,
                    keypad=keypad,
                    bluetooth=bluetooth,
                    keep=lambda regs: _write_password_file(handle, regs),
                    progress=lambda done: bar.update(task, completed=done),
                )
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

    writer = csv.writer(handle, lineterminator="\n")
    writer.writerow(("serial", "password"))
    writer.writerows((reg.charger.serial, reg.ocpp_password) for reg in registrations)
    handle.flush()
    os.fsync(handle.fileno())
