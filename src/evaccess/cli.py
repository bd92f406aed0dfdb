"""The ``evaccess`` command: one entry point, a sub-command per program."""

from __future__ import annotations

import importlib
import sys

import typer

import evaccess
from evaccess import console

app = typer.Typer(
    name="evaccess",
    help="Security for EV chargers: Bluetooth PINs, keypad PINs, access and ownership.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _print_version(value: bool) -> None:
    if value:
        console.out.print(f"evaccess {evaccess.__version__}", markup=False, highlight=False)
        raise typer.Exit(0)


@app.callback()
def _root(
    show_version: bool = typer.Option(
        False,
        "--version",
        callback=_print_version,
        is_eager=True,
        help="Print the installed version (evaccess X.Y.Z) and exit.",
    ),
) -> None:
    """Security for EV chargers: Bluetooth PINs, keypad PINs, access and ownership."""


# (module, attribute, name, help). Each program owns its commands in its own package; they
# are attached here, the one place that knows all three programs.
SUBCOMMANDS: tuple[tuple[str, str, str, str], ...] = (
    ("evaccess.server.cli", "server_app", "server", "Run the evaccess cloud server."),
    ("evaccess.server.cli", "admin_app", "admin", "Administer the server's database."),
    ("evaccess.server.cli", "audit_app", "audit", "Inspect and verify the audit log."),
    (
        "evaccess.charger.cli",
        "charger_app",
        "charger",
        "Run a charger (firmware emulator) speaking OCPP (Open Charge Point Protocol).",
    ),
    (
        "evaccess.charger.ble.link",
        "ble_link_app",
        "ble-link",
        "Host virtual Bluetooth controllers so a charger and an app can meet without radios.",
    ),
    ("evaccess.app.cli", "app_app", "app", "The phone app, as a command line."),
    ("evaccess.bench.cli", "bench_app", "bench", "Benchmarks that print figures."),
)


def _attach(argv: list[str]) -> None:
    """Attach the program named on the command line: each program's imports cost a second
    or more, and a command needs one. Bare ``evaccess`` or ``--help`` lists them all by
    name and help text, without importing any."""
    if argv[1:2] == ["--version"]:
        return  # answered by the root callback, no program needed
    names = {name for _, _, name, _ in SUBCOMMANDS}
    wanted = argv[1] if len(argv) > 1 and argv[1] in names else None
    for module_name, attribute, name, help_text in SUBCOMMANDS:
        if name == wanted:
            _attach_program(module_name, attribute, name, help_text)
        elif wanted is None:  # the root's help lists the programs; none is imported
            app.add_typer(typer.Typer(), name=name, help=help_text)


def attach_all() -> None:
    """Every program's commands (for tools that walk the whole command tree)."""
    for subcommand in SUBCOMMANDS:
        _attach_program(*subcommand)


def _attach_program(module_name: str, attribute: str, name: str, help_text: str) -> None:
    module = importlib.import_module(module_name)
    app.add_typer(getattr(module, attribute), name=name, help=help_text)


def main() -> None:
    _attach(sys.argv)
    console.run_app(app)
