"""The README's walk-through, run as written: each ``sh`` block of that section in its own
shell, as four terminals would, in a scratch copy of the checkout's top level (so ``make
run`` and ``$PWD/.venv/bin`` mean what they mean to a reader, and ``var/`` is the test's).

The only change made to the text is the port numbers: the well-known ones (8000, 9000, 7001,
7002) become free ports, and the environment carries the settings the README names for
moving them (``EVACCESS_PORT``, ``EVACCESS_OCPP_PORT``, ``EVACCESS_SERVER``). What a reader
would type at a prompt is piped in, one line per prompt.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import Canaries, scan
from tests.e2e.conftest import free_port
from tests.support import eventually_blocking

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

CHECKOUT = Path(__file__).resolve().parents[2]
README = CHECKOUT / "README.md"
LINKED = ("Makefile", "pyproject.toml", "uv.lock", ".venv", ".cache")
OWNER_PASSWORD = "walnut ferry 42 lamp"
WIFI_PASSWORD = "garage wifi passphrase"
WAIT_S = 90.0


def sh_blocks(text: str) -> list[str]:
    return re.findall(r"^```sh\n(.*?)^```", text, re.S | re.M)


def test_every_shell_block_is_one_that_runs() -> None:
    """Pasteable blocks are the quick start (CI runs `make test`; `make run` is terminal 1
    below) and the walk-through; synopses with placeholders are `text` blocks."""
    text = README.read_text()
    quick_start = text.split("\n## Quick start", 1)[1].split("\n## ", 1)[0]
    commands = [line.split("#")[0].strip() for line in sh_blocks(quick_start)[0].splitlines()]
    assert commands == ["make run", "make test"]
    assert sh_blocks(text) == sh_blocks(quick_start) + walkthrough_blocks()
    assert walkthrough_blocks()[0].splitlines()[1] == "make run"


def walkthrough_blocks() -> list[str]:
    section = README.read_text().split("\n## Walk-through", 1)[1].split("\n## ", 1)[0]
    return sh_blocks(section)


@dataclass
class Terminal:
    name: str
    process: subprocess.Popen[bytes]
    log: Path

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for(self, marker: str) -> str:
        return wait_until(lambda: marker in self.text(), f"{self.name} to print {marker!r}", self)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


def wait_until(condition: Callable[[], object], what: str, terminal: Terminal | None = None) -> str:
    """``eventually_blocking``, giving up when ``terminal`` exits; failures show its text."""

    def exited() -> str | None:
        if terminal is None or terminal.process.poll() is None:
            return None
        return f"{terminal.name} exited ({terminal.process.returncode})"

    try:
        eventually_blocking(condition, what, timeout=WAIT_S, unless=exited)
    except AssertionError as failure:
        pytest.fail(f"{failure}:\n{terminal.text() if terminal else ''}")
    return terminal.text() if terminal else ""


@pytest.fixture
def scratch(tmp_path: Path) -> Path:
    """The checkout's top level as a reader has it after `make test`: the Makefile, the
    project files and the built environment, linked; everything a run creates stays here."""
    missing = [name for name in LINKED if not (CHECKOUT / name).exists()]
    assert not missing, f"run `make test` first: {missing} missing"
    root = tmp_path / "checkout"
    root.mkdir()
    for name in LINKED:
        (root / name).symlink_to(CHECKOUT / name)
    return root


class Desk:
    """Where the reader sits: terminals opened on the scratch checkout, one environment."""

    def __init__(self, root: Path, logs: Path) -> None:
        self.root = root
        self.logs = logs
        self.ports = {well_known: free_port() for well_known in ("8000", "9000", "7001", "7002")}
        env = {k: v for k, v in os.environ.items() if not k.startswith("EVACCESS_")}
        self.env = env | {
            "EVACCESS_PORT": str(self.ports["8000"]),
            "EVACCESS_OCPP_PORT": str(self.ports["9000"]),
            "EVACCESS_SERVER": f"http://127.0.0.1:{self.ports['8000']}",
            "EVACCESS_APP_HOME": str(logs / "app"),
            "HOME": str(logs / "home"),
            "NO_COLOR": "1",
            "COLUMNS": "200",
            "PYTHONUNBUFFERED": "1",
        }
        self.opened: list[Terminal] = []

    def moved(self, block: str) -> str:
        for well_known, port in self.ports.items():
            block = re.sub(rf"(?<![0-9]){well_known}(?![0-9])", str(port), block)
        return block

    def open(self, name: str, block: str, typed: str) -> Terminal:
        script = self.logs / f"{name}.sh"
        script.write_text(self.moved(block))
        log = self.logs / f"{name}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                ("bash", "-e", str(script)),
                cwd=self.root,
                env=self.env,
                stdin=subprocess.PIPE,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a terminal of its own: stopped as a group
            )
        assert process.stdin is not None
        process.stdin.write(typed.encode())
        process.stdin.close()
        terminal = Terminal(name=name, process=process, log=log)
        self.opened.append(terminal)
        return terminal

    def run(self, command: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ("bash", "-c", f"export PATH=$PWD/.venv/bin:$PATH\n{self.moved(command)}"),
            cwd=self.root,
            env=self.env,
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )


@pytest.fixture
def desk(scratch: Path, tmp_path: Path) -> Iterator[Desk]:
    desk = Desk(scratch, tmp_path)
    yield desk
    for terminal in reversed(desk.opened):
        terminal.stop()


def test_the_walkthrough_runs_as_written(desk: Desk, scratch: Path, canaries: Canaries) -> None:
    blocks = walkthrough_blocks()
    assert [block.splitlines()[0].split(":")[0] for block in blocks] == [
        f"# Terminal {n}" for n in (1, 2, 3, 4)
    ]
    canaries.add(OWNER_PASSWORD, WIFI_PASSWORD)

    server = desk.open("terminal-1", blocks[0], "")
    first_start = server.wait_for("log in:")
    admin_password = re.search(r"^\s+password:\s+(\S+)", first_start, re.M)
    assert admin_password is not None, first_start
    url = re.search(r"evaccess server on (\S+)", first_start)
    assert url is not None
    portal = re.search(r"web portal: (\S+)", first_start)
    assert portal is not None and portal.group(1) == f"{url.group(1)}/login", first_start
    login_page = httpx.get(portal.group(1))
    assert login_page.status_code == 200 and "<h1>Log in</h1>" in login_page.text

    setup = desk.open("terminal-2", blocks[1], f"{OWNER_PASSWORD}\n")
    setup.wait_for("virtual link up")
    password_file = scratch / "var" / "WB-700007.csv"
    assert oct(password_file.stat().st_mode & 0o777) == "0o600"
    canaries.add(password_file.read_text().splitlines()[1].split(",")[1])

    charger = desk.open("terminal-3", blocks[2], "")
    charger.wait_for("ocpp: boot accepted")
    charger.wait_for("bluetooth: PIN settings from the server: PIN required")
    charger.wait_for("bluetooth: advertising as")
    # What the owner's `charger-info` will say once the server has the charger's answer.
    token = httpx.post(
        f"{url.group(1)}/api/auth/login",
        json={"email": "admin@example.com", "password": admin_password.group(1)},
    ).json()["token"]

    api = httpx.Client(base_url=url.group(1), headers={"Authorization": f"Bearer {token}"})
    charger_id = api.get("/api/chargers", params={"serial": "WB-700007"}).json()[0]["id"]

    def pin_active() -> bool:
        state = api.get(f"/api/chargers/{charger_id}/bluetooth-pin").json()
        return bool(state["status"] == "active")

    wait_until(pin_active, "the server to see the charger's PIN active")
    api.close()

    phone = desk.open("terminal-4", blocks[3], f"{OWNER_PASSWORD}\n{WIFI_PASSWORD}\n")
    assert phone.process.wait(timeout=WAIT_S) == 0, phone.text()
    shown = phone.text()
    assert "logged in as owner@example.com" in shown
    assert re.search(r"mandatory", shown) and re.search(r"\bactive\b", shown), shown
    assert "Paired with charger WB-700007 with its PIN" in shown
    assert "Wi-Fi network Garage" in shown

    # The last command's JSON: the charger's report may still be on its way; a reader who
    # does not see it yet runs the same command again.
    last_command = blocks[3].strip().splitlines()[-1].split("#")[0].strip()
    assert last_command == "evaccess app charger-info WB-700007 --json"

    def reported() -> dict[str, str]:
        again = desk.run(last_command)
        assert again.returncode == 0, again.stderr
        return dict(json.loads(again.stdout)["charger"]["reported_settings"])

    settings = json.loads(shown[shown.rindex("\n{") :])["charger"]["reported_settings"]
    if settings.get("WifiSsid") != "Garage":
        wait_until(lambda: reported().get("WifiSsid") == "Garage", "the Wi-Fi change to arrive")

    charger_lines = charger.text()
    assert "bluetooth: issued a credential" in charger_lines
    assert "bluetooth: phone" in charger_lines and "changed the Wi-Fi network" in charger_lines

    for terminal in (phone, charger, setup, server):
        terminal.stop()
    everything = "\n".join(t.text() for t in (server, setup, charger, phone))
    assert "Traceback" not in everything
    allowed = {admin_password.group(1)}  # printed once, by design, in terminal 1
    others = Canaries()
    others.add(*(value for value in canaries.values if value not in allowed))
    assert scan(everything, others) == []
