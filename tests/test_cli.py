"""The ``evaccess`` command itself: its version, and help for every option of every
command."""

from __future__ import annotations

import sys
from importlib.metadata import version

import pytest

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
