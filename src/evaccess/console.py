"""Command-line plumbing shared by the three programs: one readable line per error, a
non-zero exit code per error class, and a sync shell around each ``async def`` command."""

from __future__ import annotations

import asyncio
import getpass
import json
import logging
import os
import sys
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from functools import wraps
from typing import Any, NoReturn, ParamSpec, TypeVar

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text
from typer._click.exceptions import ClickException, NoArgsIsHelpError

from evaccess.domain import errors

P = ParamSpec("P")
T = TypeVar("T")

out = Console()
err = Console(stderr=True)

# One exit code per branch of the exception tree (the most specific class wins).
EXIT_CODES: tuple[tuple[type[errors.EvAccessError], int], ...] = (
    (errors.InvalidInput, 2),
    (errors.NotAuthenticated, 3),
    (errors.PermissionDenied, 4),
    (errors.NotFound, 5),
    (errors.Conflict, 6),
    (errors.Throttled, 7),
    (errors.IntegrityFailure, 8),
    (errors.AuditUnavailable, 9),
    (errors.ConfigurationError, 10),
    (errors.ClusterUnavailable, 11),
)
UNEXPECTED_EXIT = 1

log = logging.getLogger("evaccess.cli")


def exit_code(error: errors.EvAccessError) -> int:
    for cls, code in EXIT_CODES:
        if isinstance(error, cls):
            return code
    return UNEXPECTED_EXIT


def error_line(message: str) -> None:
    """One ``error:`` line on stderr. The message is text, never markup: it may quote what
    the user typed (a serial like ``[/x]`` must not crash the error path itself)."""
    err.print(Text.assemble(("error:", "bold red"), " ", message), highlight=False, soft_wrap=True)


def fail(message: str, code: int = UNEXPECTED_EXIT) -> NoReturn:
    """Print one line on stderr and exit."""
    error_line(message)
    raise typer.Exit(code)


def run_app(app: typer.Typer) -> NoReturn:
    """Run the command line. Usage errors (a missing argument, an unknown option) end as one
    line too, instead of click's usage block in a box."""
    # typer vendors click: its exception classes live in typer._click.

    try:
        result = app(standalone_mode=False)
    except NoArgsIsHelpError as exc:  # the help is already printed
        sys.exit(exc.exit_code)
    except ClickException as exc:
        error_line(f"{exc.format_message()} (see --help)")
        sys.exit(exc.exit_code)
    except typer.Abort:
        error_line("aborted")
        sys.exit(UNEXPECTED_EXIT)
    sys.exit(result if isinstance(result, int) else 0)


def command(func: Callable[P, Awaitable[T]]) -> Callable[P, T]:
    """Turn an ``async def`` into a typer command whose errors end as one line."""

    @wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            coro = func(*args, **kwargs)
            return asyncio.run(_as_coroutine(coro))
        except errors.EvAccessError as exc:
            fail(f"{exc.message} [{exc.code}]", exit_code(exc))
        except KeyboardInterrupt:
            fail("interrupted", 130)
        except (OSError, ConnectionError) as exc:
            # Network and file errors carry no secrets: their text is what the user needs.
            fail(f"{type(exc).__name__}: {exc.strerror or exc}", UNEXPECTED_EXIT)
        except (typer.Exit, typer.Abort, SystemExit):
            raise
        except Exception as exc:
            # Unexpected: the type alone, never the message (it could carry user input).
            log.debug("unexpected error", exc_info=True)
            fail(f"internal error ({type(exc).__name__}); run with EVACCESS_DEBUG=1 for details")

    return wrapper


async def _as_coroutine(awaitable: Awaitable[T]) -> T:
    return await awaitable


def shown_url(raw: str) -> str:
    """``raw`` fit for an error message: a ``user:password@`` part is never repeated."""
    head, at, rest = raw.strip().rpartition("@")
    if not at:
        return raw.strip()
    scheme, sep, _credentials = head.partition("://")
    return f"{scheme}{sep}…@{rest}" if sep else f"…@{rest}"


def _one_line_of_stdin() -> str:
    """Exactly one line, read a byte at a time from the file descriptor: Python's buffered
    ``sys.stdin`` would take what follows too, and a script answering several commands'
    prompts on one stream (``printf 'pw\\nwifi\\n' | sh steps.sh``) would lose it."""
    try:
        fd = sys.stdin.fileno()
    except (AttributeError, ValueError, OSError):  # replaced by a test, or closed
        return sys.stdin.readline()
    line = bytearray()
    while not line.endswith(b"\n") and (byte := os.read(fd, 1)):
        line += byte
    return line.decode("utf-8", errors="replace")


def secret(prompt: str, *, confirm: bool = False, from_stdin: bool = False) -> str:
    """A password or PIN from the person at the keyboard: a hidden prompt when stdin is a
    terminal, else one line of stdin (a pipe, a file, a test driving the program).

    ``getpass`` alone would read ``/dev/tty`` whenever the process has a controlling
    terminal, even with stdin piped: a script piping the secret would hang on a prompt.
    ``from_stdin`` (the ``--…-stdin`` flags) reads stdin even on a terminal."""
    if from_stdin or not sys.stdin.isatty():
        value = _one_line_of_stdin().rstrip("\r\n")
        if not value:
            raise errors.InvalidInput(f"no {prompt.lower()} on standard input")
        return value
    try:
        value = getpass.getpass(f"{prompt}: ")
        if not value:
            raise errors.InvalidInput(f"no {prompt.lower()} entered")
        if confirm and getpass.getpass(f"{prompt} (again): ") != value:
            raise errors.InvalidInput(f"the two {prompt.lower()}s differ")
    except EOFError:
        raise errors.InvalidInput(f"no {prompt.lower()} entered") from None
    return value


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def print_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Cells and title are text, not markup: they hold serials, names and models that
    users and chargers chose."""
    table = Table(title=Text(title), show_header=any(columns))
    for column in columns:
        table.add_column(Text(column))
    for row in rows:
        table.add_row(*(Text("" if cell is None else str(cell)) for cell in row))
    out.print(table)


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)
