"""CLI plumbing: every error is one line on stderr, whatever text it quotes."""

from __future__ import annotations

import sys

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


class _Stdin:
    def __init__(self, text: str, *, tty: bool) -> None:
        self._lines = iter(text.splitlines(keepends=True))
        self._tty = tty

    def isatty(self) -> bool:
        return self._tty

    def readline(self) -> str:
        return next(self._lines, "")


@pytest.mark.parametrize(
    ("text", "expected"),
    [("s3cret pass\nnext\n", "s3cret pass"), ("windows\r\n", "windows"), ("at eof", "at eof")],
)
def test_secret_reads_one_line_when_stdin_is_no_terminal(
    monkeypatch: pytest.MonkeyPatch, text: str, expected: str
) -> None:
    monkeypatch.setattr(sys, "stdin", _Stdin(text, tty=False))
    monkeypatch.setattr("getpass.getpass", _no_prompt)
    assert console.secret("Password", confirm=True) == expected


@pytest.mark.parametrize("text", ["", "\n"])
def test_secret_refuses_empty_stdin(monkeypatch: pytest.MonkeyPatch, text: str) -> None:
    monkeypatch.setattr(sys, "stdin", _Stdin(text, tty=False))
    with pytest.raises(InvalidInput, match="no password on stdin"):
        console.secret("Password")


def test_secret_prompts_hidden_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    answers = iter(["hunter2 horse", "hunter2 horse", "hunter2 horse", "other"])
    prompts: list[str] = []

    def getpass(prompt: str) -> str:
        prompts.append(prompt)
        return next(answers)

    monkeypatch.setattr(sys, "stdin", _Stdin("", tty=True))
    monkeypatch.setattr("getpass.getpass", getpass)
    assert console.secret("New password", confirm=True) == "hunter2 horse"
    assert prompts == ["New password: ", "New password (again): "]
    with pytest.raises(InvalidInput, match="differ"):
        console.secret("New password", confirm=True)


def _no_prompt(prompt: str) -> str:
    raise AssertionError("no terminal: nothing to prompt on")
