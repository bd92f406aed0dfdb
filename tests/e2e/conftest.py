"""Fixtures for tests that run ``evaccess`` as separate processes: a real server on free
ports with a temporary data directory, and a ``cli`` that runs commands against it."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import Canaries, scan
from tests.support import eventually_blocking

EVACCESS = (sys.executable, "-m", "evaccess")
STARTUP_TIMEOUT_S = 30.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Result:
    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


@dataclass
class Pending:
    """A command started in the background (commands are seconds of imports each: the
    independent ones run side by side)."""

    args: tuple[str, ...]
    process: subprocess.Popen[str]
    stdin: str

    def result(self) -> Result:
        stdout, stderr = self.process.communicate(self.stdin, timeout=60)
        return Result(
            args=self.args, returncode=self.process.returncode, stdout=stdout, stderr=stderr
        )


@dataclass
class Cli:
    """Runs ``evaccess`` the way a user would, with this test's data directory and home."""

    env: dict[str, str]

    def start(self, *args: str, stdin: str = "", home: Path | None = None) -> Pending:
        env = self.env if home is None else self.env | {"EVACCESS_APP_HOME": str(home)}
        process = subprocess.Popen(
            (*EVACCESS, *args),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        return Pending(args=args, process=process, stdin=stdin)

    def __call__(self, *args: str, stdin: str = "", home: Path | None = None) -> Result:
        return self.start(*args, stdin=stdin, home=home).result()

    def ok(self, *args: str, stdin: str = "") -> Result:
        return succeeded(self(*args, stdin=stdin))


def succeeded(result: Result) -> Result:
    assert result.returncode == 0, (result.args, result.output)
    assert "Traceback" not in result.output, (result.args, result.output)
    return result


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    url: str
    out: Path
    err: Path
    admin_email: str
    admin_password: str
    organisation_id: str

    def output(self) -> str:
        return self.out.read_text() + self.err.read_text()


def one_line_error(result: Result, exit_code: int | None = None) -> str:
    """The whole of what a failed command printed: one ``error:`` line on stderr."""
    assert result.returncode != 0, (result.args, result.output)
    if exit_code is not None:
        assert result.returncode == exit_code, (result.args, result.returncode, result.output)
    assert "Traceback" not in result.output, result.output
    assert result.stdout == "", (result.args, result.stdout)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, (result.args, result.stderr)
    assert lines[0].startswith("error: "), lines
    return lines[0]


def leaked(text: str, canaries: Canaries, *allowed: str) -> list[str]:
    others = Canaries()
    others.add(*(value for value in canaries.values if value not in allowed))
    return scan(text, others)


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EVACCESS_")}
    env |= {
        "EVACCESS_DATA_DIR": str(tmp_path / "data"),
        "EVACCESS_APP_HOME": str(tmp_path / "app"),
        "EVACCESS_AUDIT_CHECKPOINT_FILE": str(tmp_path / "elsewhere" / "audit-checkpoints.jsonl"),
        "EVACCESS_OCPP_PORT": str(free_port()),
        "PYTHONUNBUFFERED": "1",
        "NO_COLOR": "1",
        "COLUMNS": "200",
    }
    return Cli(env=env)


@pytest.fixture
def server(cli: Cli, tmp_path: Path, canaries: Canaries) -> Iterator[Server]:
    port = free_port()
    out, err = tmp_path / "server.out", tmp_path / "server.err"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        process = subprocess.Popen(
            (*EVACCESS, "server", "run", "--port", str(port)),
            stdout=stdout,
            stderr=stderr,
            stdin=subprocess.DEVNULL,
            env=cli.env,
        )
    try:
        announced = _wait_for_announcement(process, out, err)
        url = f"http://127.0.0.1:{port}"
        _wait_for_health(process, url)
        canaries.add(announced["password"])
        yield Server(
            process=process,
            url=url,
            out=out,
            err=err,
            admin_email=announced["email"],
            admin_password=announced["password"],
            organisation_id=announced["organisation"],
        )
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)


def _wait_for_announcement(
    process: subprocess.Popen[bytes], out: Path, err: Path
) -> dict[str, str]:
    """The one-time credentials printed on the first start."""

    def announced() -> dict[str, str] | None:
        text = out.read_text()
        found = dict(re.findall(r"^\s+(email|password|organisation):\s+(\S+)", text, re.M))
        return found if len(found) == 3 else None

    def exited() -> str | None:
        if process.poll() is None:
            return None
        return f"the server exited with {process.returncode}: {err.read_text()[-2000:]}"

    found: dict[str, str] = eventually_blocking(
        announced,
        "the server to print its first-start credentials",
        timeout=STARTUP_TIMEOUT_S,
        unless=exited,
    )
    return found


def _wait_for_health(process: subprocess.Popen[bytes], url: str) -> None:
    def healthy() -> bool:
        try:
            return bool(httpx.get(f"{url}/health", timeout=1.0).json()["status"] == "ok")
        except httpx.TransportError:
            return False

    eventually_blocking(
        healthy,
        "the server to become healthy",
        timeout=STARTUP_TIMEOUT_S,
        unless=lambda: process.poll() is not None and "the server exited",
    )
