"""The ``evaccess`` command itself: its version, and help for every option of every
command."""

from __future__ import annotations

import enum
import re
import sys
from importlib.metadata import version

import pytest
import typer
from typer._click.core import Command
from typer.core import TyperGroup, TyperOption
from typer.testing import CliRunner

from evaccess import cli


def test_version_prints_the_installed_version_and_exits_0(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "argv", ["evaccess", "--version"])
    with pytest.raises(SystemExit) as exited:
        cli.main()
    assert exited.value.code == 0
    captured = capsys.readouterr()
    assert captured.out == f"evaccess {version('evaccess')}\n"
    assert captured.err == ""


# Jargon a help page may use only with its meaning on the same page.
GLOSSARY = {
    "CSMS": "charging station management system",
    "OCPP": "open charge point protocol",
    "PAKE": "password-authenticated key exchange",
    "HCI": "host controller interface",
    "Bumble": "bluetooth stack",
}
# Flags that once had no help; their help says what they do, not just that they exist.
MUST_EXPLAIN = {"--json": "json", "--pin-stdin": "stdin", "--keypad": "keypad"}


def _commands() -> list[tuple[str, Command]]:
    """Every command and group of ``evaccess``, by its command line."""
    cli.attach_all()
    found: list[tuple[str, Command]] = []

    def walk(command: Command, path: str) -> None:
        found.append((path, command))
        for name, sub in sorted(getattr(command, "commands", {}).items()):
            walk(sub, f"{path} {name}")

    walk(typer.main.get_command(cli.app), "evaccess")
    return found


COMMANDS = _commands()


def _page(command: Command) -> str:
    """The words of a help page: the command's help, its parameters' help and choices,
    and for a group the first paragraph of each command's help."""
    texts = [command.help or ""]
    for param in command.params:
        texts.append(getattr(param, "help", None) or "")
        kind = getattr(getattr(param, "type_descriptor", None), "annotation", None)
        if isinstance(kind, type) and issubclass(kind, enum.Enum):  # shown as <a|b>
            texts.extend(str(member.value) for member in kind)
    for sub in getattr(command, "commands", {}).values():
        texts.append((sub.short_help or sub.help or "").split("\n\n")[0])
    return " ".join(" ".join(texts).split())


def test_the_walk_sees_every_program() -> None:
    groups = {path for path, command in COMMANDS if isinstance(command, TyperGroup)}
    for program in ("server", "admin", "audit", "charger", "app", "app keypad-pin"):
        assert f"evaccess {program}" in groups
    assert len(COMMANDS) > 40


@pytest.mark.parametrize(("path", "command"), COMMANDS, ids=[p for p, _ in COMMANDS])
def test_every_option_has_help_and_jargon_is_explained(path: str, command: Command) -> None:
    shown = CliRunner().invoke(cli.app, [*path.split()[1:], "--help"])
    assert shown.exit_code == 0, shown.output
    assert (command.help or "").strip(), f"{path}: no help text"
    for param in command.params:
        names = [*param.opts, *param.secondary_opts]
        label = f"{path} {'/'.join(names)}"
        text = (getattr(param, "help", None) or "").strip()
        assert text, f"{label}: no help"
        assert not any(n.startswith("--no-no-") for n in names), label
        if isinstance(param, TyperOption) and param.is_flag and param.secondary_opts:
            assert param.default is True, f"{label}: a --no- form for a flag that is off anyway"
        for flag, word in MUST_EXPLAIN.items():
            if flag in names:
                assert word in text.casefold() and len(text.split()) >= 4, f"{label}: {text!r}"
    page = _page(command)
    for term, meaning in GLOSSARY.items():
        if re.search(rf"(?<![A-Za-z]){term}(?![A-Za-z])", page, re.IGNORECASE):
            assert meaning in page.casefold(), f"{path}: {term} without '{meaning}'"
