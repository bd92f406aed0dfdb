"""CLI plumbing: every error is one line on stderr, whatever text it quotes."""

from __future__ import annotations

import io
import os
import pty
import select
import sys
import time

import pytest
import typer

from evaccess import console
from evaccess.domain.errors import InvalidInput, NotFound


def _app() -> typer.Typer:
    app = typer.Typer(pretty_exceptions_enable=False)

    @app.command()
    @console.command
    async def show(serial: str) -> None:
        raise NotFound(f"no charger with serial {serial}")

    @app.command()
    def other() -> None:
        """A second command, so that the first is a sub-command."""

    return app


def _run(monkeypatch: pytest.MonkeyPatch, *argv: str) -> int:
    monkeypatch.setattr(sys, "argv", ["evaccess", *argv])
    with pytest.raises(SystemExit) as exited:
        console.run_app(_app())
    return int(exited.value.code or 0)


@pytest.mark.parametrize("serial", ["[/x]", "[bold]X", "WB-1"])
def test_an_error_quoting_user_text_is_one_plain_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], serial: str
) -> None:
    assert _run(monkeypatch, "show", serial) == 5
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == f"error: no charger with serial {serial} [not_found]\n"


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (("show",), "Missing argument"),
        (("show", "X", "--bogus"), "No such option"),
        (("nope",), "No such command"),
    ],
)
def test_a_usage_error_is_one_line(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    argv: tuple[str, ...],
    words: str,
) -> None:
    assert _run(monkeypatch, *argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1
    assert captured.err.startswith("error: ")
    assert words in captured.err


def test_a_table_shows_cells_as_text(capsys: pytest.CaptureFixture[str]) -> None:
    console.print_table("Charger [/x]", ["serial"], [("[bold]WB-1[/]",)])
    out = capsys.readouterr().out
    assert "Charger [/x]" in out
    assert "[bold]WB-1[/]" in out


def test_a_secret_is_one_line_of_piped_stdin(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO("s3cret pass\nnext\n"))
    assert console.secret("Password", confirm=True) == "s3cret pass"


def test_no_secret_on_stdin_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    with pytest.raises(InvalidInput, match="no password on standard input"):
        console.secret("Password")


def _in_a_terminal(code: str, answers: list[str], timeout_s: float = 20.0) -> str:
    """Run ``code`` in a child whose controlling terminal is a fresh pty (as a person at a
    terminal would); answer each prompt ending in ``: `` with the next of ``answers``."""
    pid, master = pty.fork()
    if pid == 0:  # the child: stdin, stdout and /dev/tty are the pty
        os.execv(sys.executable, [sys.executable, "-c", code])
    seen = b""
    deadline = time.monotonic() + timeout_s
    pending = list(answers)
    answered = 0  # what was on the screen when the last prompt was answered
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if not ready:
                continue
            try:
                chunk = os.read(master, 1024)
            except OSError:  # the child closed the terminal: it has exited
                break
            if not chunk:
                break
            seen += chunk
            if pending and seen[answered:].rstrip().endswith(b":"):
                os.write(master, pending.pop(0).encode() + b"\n")
                answered = len(seen)
    finally:
        os.close(master)
        os.waitpid(pid, 0)
    return seen.decode(errors="replace")


SECRET_IN_A_TERMINAL = (
    "from evaccess import console\n"
    "from evaccess.domain.errors import InvalidInput\n"
    "try:\n"
    "    print('got', len(console.secret('Keypad PIN', confirm=True)), 'characters')\n"
    "except InvalidInput as exc:\n"
    "    print('refused:', exc.message)\n"
)


def test_a_secret_in_a_terminal_is_prompted_hidden_and_confirmed() -> None:
    seen = _in_a_terminal(SECRET_IN_A_TERMINAL, ["482913", "482913"])
    assert "Keypad PIN:" in seen and "Keypad PIN (again):" in seen
    assert "got 6 characters" in seen
    assert "482913" not in seen  # never echoed


def test_a_mistyped_confirmation_is_refused() -> None:
    seen = _in_a_terminal(SECRET_IN_A_TERMINAL, ["482913", "482914"])
    assert "refused: the two keypad pins differ" in seen


@pytest.mark.parametrize(
    "check", ["evaccess.app.api:server_url", "evaccess.charger.config:ocpp_server_url"]
)
def test_a_refused_server_url_never_repeats_its_password(check: str) -> None:
    import importlib

    from evaccess.domain.errors import InvalidInput

    module, name = check.split(":")
    with pytest.raises(InvalidInput) as refused:
        getattr(importlib.import_module(module), name)("ftp://admin:hunter2-secret@host:1/x")
    assert "hunter2-secret" not in str(refused.value)
    assert "ftp://…@host:1/x" in str(refused.value)
