"""The way a person meets evaccess: the ``evaccess`` command in separate processes.

A real server (``evaccess server run`` on a free port, a temporary data directory) is
started and stopped with SIGTERM; ``evaccess admin …`` works on the same data directory
while it runs; ``evaccess app …`` talks to it over HTTP with its session in a temporary
home. Every error a user can provoke here ends as exactly one line on stderr with a
non-zero exit status, and no secret (password, Bluetooth PIN, keypad PIN, OCPP password)
appears in any output but the one that exists to show it.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import Canaries, scan

# Each command is a new Python process (about a second of imports): on a loaded 2-core
# machine the whole path can take far longer than its ~30 s on an idle one.
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

EVACCESS = (sys.executable, "-m", "evaccess")
OWNER = "owner@example.com"
OWNER_PASSWORD = "plum tractor 7 lantern"
STARTUP_TIMEOUT_S = 30.0
CHARGER = ("--serial", "WB-100001", "--vendor", "Wallbox", "--model", "Pulsar Max", "--firmware", "6.11.4")  # fmt: skip


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
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        text = out.read_text()
        found = dict(re.findall(r"^\s+(email|password|organisation):\s+(\S+)\s*$", text, re.M))
        if len(found) == 3:
            return found
        if process.poll() is not None:
            pytest.fail(f"the server exited with {process.returncode}: {err.read_text()[-2000:]}")
        time.sleep(0.1)
    pytest.fail("the server did not print its first-start credentials")


def _wait_for_health(process: subprocess.Popen[bytes], url: str) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/health", timeout=1.0).json()["status"] == "ok":
                return
        except httpx.TransportError:
            pass
        assert process.poll() is None, "the server exited"
        time.sleep(0.1)
    pytest.fail("the server never became healthy")


def test_a_user_meets_evaccess_through_the_command_line(
    cli: Cli, server: Server, tmp_path: Path, canaries: Canaries
) -> None:
    canaries.add(OWNER_PASSWORD)
    org = server.organisation_id

    # --- the administrator sets up a user and a charger, beside the running server ------
    # (independent commands run side by side: each is a second or more of imports)
    created = cli.ok("admin", "create-user", OWNER, "--password-stdin", stdin=f"{OWNER_PASSWORD}\n")
    log_in = ("app", "login", "--server", server.url, "--email", OWNER, "--password-stdin")
    by_admin = ("--by", server.admin_email)
    started = (
        cli.start("admin", "add-member", org, OWNER, *by_admin),
        cli.start("admin", "create-charger", org, *CHARGER, "--owner", OWNER, *by_admin, "--json"),
        cli.start(*log_in, stdin=f"{OWNER_PASSWORD}\n"),  # the owner logs in with the app
    )
    added, registration, login = (succeeded(p.result()) for p in started)
    registered = json.loads(registration.stdout)
    canaries.add(registered["ocpp_password"])
    assert registered["serial"] == "WB-100001"
    session = json.loads((tmp_path / "app" / "session.json").read_text())
    assert oct((tmp_path / "app" / "session.json").stat().st_mode & 0o777) == "0o600"
    canaries.add(session["token"])

    # --- the owner looks at the charger, reveals its PIN, chooses a keypad PIN --------------
    chosen = "4826"
    canaries.add(chosen)
    started = (
        cli.start("app", "chargers", "--json"),
        cli.start("app", "charger-info", "WB-100001"),
        cli.start("app", "charger-info", "WB-100001", "--reveal", "--json"),
        cli.start("app", "charger-info", "WB-100001", "--reveal"),
        cli.start("app", "keypad-pin", "set", "--pin-stdin", stdin=f"{chosen}\n"),
    )
    listing, info, revealed, table, set_pin = (succeeded(p.result()) for p in started)
    listed = json.loads(listing.stdout)
    assert [(c["serial"], sorted(c["access"])) for c in listed] == [
        ("WB-100001", ["org_user", "owner"])
    ]
    assert "mandatory" in info.stdout
    assert "add --reveal to show it" in info.stdout
    pin = json.loads(revealed.stdout)["pin"]
    assert re.fullmatch(r"\d{6}", pin)
    canaries.add(pin)
    assert re.search(rf"Bluetooth PIN value\s*│\s*{pin}\s", table.stdout), table.stdout
    assert pin not in info.stdout + listing.stdout
    assert "4-digit keypad PIN is set" in set_pin.stdout

    # Each reveal is in the audit log, attributed to the owner, and the chain verifies.
    history = httpx.get(
        f"{server.url}/api/chargers/{registered['id']}/bluetooth-pin/reveals",
        headers={"Authorization": f"Bearer {session['token']}"},
    ).json()
    assert [(e["actor_email"], e["basis"]) for e in history] == [(OWNER, "owner")] * 2
    verify = cli.start("audit", "verify")  # collected below, with the failures

    # The keypad PIN again, generated by the server this time (shown once).
    generated = cli.ok("app", "keypad-pin", "generate")
    new_pin = re.search(r"your new keypad PIN: (\d{4}) \(shown once\)", generated.stdout)
    assert new_pin is not None, generated.stdout
    canaries.add(new_pin.group(1))

    # --- what goes wrong, goes wrong in one line --------------------------------------------
    pending = {
        "trivial": cli.start("app", "keypad-pin", "set", "--pin-stdin", stdin="1234\n"),
        "unknown": cli.start("app", "charger-info", "NOPE-404"),
        "markup": cli.start("app", "charger-info", "[/x]"),  # user text is never markup
        "wrong": cli.start(*log_in, stdin="not the password at all\n"),
        "nobody": cli.start("app", "chargers", home=tmp_path / "nobody"),
        "usage": cli.start("app", "charger-info"),
    }
    canaries.add("not the password at all")
    failed = {name: p.result() for name, p in pending.items()}
    assert "cannot be used" in one_line_error(failed["trivial"], exit_code=2)
    assert "1234" not in failed["trivial"].output  # a refused PIN is not echoed either
    assert "no charger with serial NOPE-404" in one_line_error(failed["unknown"], exit_code=5)
    assert "[/x]" in one_line_error(failed["markup"], exit_code=5)
    assert "wrong email or password" in one_line_error(failed["wrong"], exit_code=3)
    assert "not logged in" in one_line_error(failed["nobody"], exit_code=3)
    assert "Missing argument" in one_line_error(failed["usage"], exit_code=2)
    assert "chain intact" in succeeded(verify.result()).stdout

    # --- the server stops on SIGTERM, cleanly, having printed no PIN ------------------------
    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(timeout=20) == 0, server.err.read_text()[-2000:]
    log = server.output()
    assert "Traceback" not in log
    assert "Shutting down" in log
    assert leaked(log, canaries, server.admin_password) == []  # shown once, by design

    down = cli("app", "chargers")
    assert "cannot reach the server" in one_line_error(down)

    # --- and no command printed a secret it was not there to show ----------------------------
    quiet = (created, added, login, listing, info, set_pin, down, *failed.values())
    for result in quiet:
        assert leaked(result.output, canaries) == [], result.args
    for result, shown in (
        (registration, registered["ocpp_password"]),
        (revealed, pin),
        (table, pin),
        (generated, new_pin.group(1)),
    ):
        assert leaked(result.output, canaries, shown) == [], result.args
