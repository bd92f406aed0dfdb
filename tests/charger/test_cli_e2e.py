"""`evaccess charger ...` as separate processes against the test CSMS over real sockets."""

from __future__ import annotations

import asyncio
import fcntl
import os
import sys
import termios
from pathlib import Path

import pytest

from tests.charger.conftest import PASSWORD, SERIAL
from tests.charger.csms import TestCsms

EVACCESS = str(Path(sys.executable).parent / "evaccess")
pytestmark = pytest.mark.e2e


async def run_cli(*args: str, stdin: bytes | None = None, env: dict[str, str] | None = None):
    process = await asyncio.create_subprocess_exec(
        EVACCESS,
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "COLUMNS": "200", **(env or {})},
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(stdin), timeout=60)
    return process.returncode, stdout.decode(), stderr.decode()


def charger_args(csms: TestCsms, tmp_path: Path, *extra: str) -> list[str]:
    return [
        "charger",
        "run",
        "--serial",
        SERIAL,
        "--server",
        csms.url,
        "--state-dir",
        str(tmp_path / "state"),
        "--session-seconds",
        "0.2",
        "--exit-when-done",
        *extra,
    ]


async def test_scripted_keypad_prints_each_decision_never_the_code(tmp_path: Path, csms: TestCsms):
    code, out, err = await run_cli(
        *charger_args(csms, tmp_path, "--keypad", "4821,1190"),
        env={"EVACCESS_CHARGER_PASSWORD": PASSWORD},
    )
    assert code == 0, err
    keypad_lines = [line for line in out.splitlines() if line.startswith("keypad:")]
    assert len(keypad_lines) == 2
    assert keypad_lines[0].startswith("keypad: accepted (session started, transaction ")
    assert keypad_lines[1] == "keypad: rejected"
    assert "ocpp: boot accepted" in out
    for secret in ("4821", "1190", PASSWORD):
        assert secret not in out + err
    record = csms.records[SERIAL]
    assert [t["event_type"] for t in record.transactions] == ["Started", "Ended"]
    assert record.transactions[0]["transaction_info"]["transaction_id"] in keypad_lines[0]


async def test_keypad_lines_on_stdin_ocpp16(tmp_path: Path, csms: TestCsms):
    code, out, err = await run_cli(
        *charger_args(
            csms, tmp_path, "--protocol", "ocpp1.6", "--password", PASSWORD, "--keypad", "-"
        ),
        stdin=b"1190\n4821\n",
    )
    assert code == 0, err
    keypad_lines = [line for line in out.splitlines() if line.startswith("keypad:")]
    assert keypad_lines[0] == "keypad: rejected"
    assert keypad_lines[1].startswith("keypad: accepted")
    transaction = keypad_lines[1].split("transaction ")[1].rstrip(")")
    assert f"charger: session ended (transaction {transaction})" in out
    actions = [t["action"] for t in csms.records[SERIAL].transactions]
    assert actions == ["StartTransaction", "StopTransaction"]


async def test_missing_password_is_one_line_and_non_zero(tmp_path: Path, csms: TestCsms):
    code, out, err = await run_cli(*charger_args(csms, tmp_path, "--keypad", "1"))
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("error: a password is required")
    assert "Traceback" not in err


@pytest.mark.parametrize("command", ["run", "fleet"])
async def test_a_server_url_that_is_not_websocket_is_one_line(
    tmp_path: Path, csms: TestCsms, command: str
):
    http_url = csms.url.replace("ws://", "http://")
    args = (
        charger_args(csms, tmp_path)
        if command == "run"
        else ["charger", "fleet", "--server", csms.url, "--password-file", "chargers.csv"]
    )
    args[args.index("--server") + 1] = http_url
    code, out, err = await run_cli(*args, env={"EVACCESS_CHARGER_PASSWORD": PASSWORD})
    assert code != 0
    assert err.strip().splitlines() == [
        "error: --server must be the OCPP endpoint's ws:// or wss:// URL, "
        f"e.g. ws://127.0.0.1:9000/ocpp (got '{http_url}') [invalid_input]"
    ]
    assert not csms.records


async def test_fleet_of_50_boots_and_prints_a_summary(tmp_path: Path):
    passwords = {f"FLEET{i:04d}": f"pw-{i:04d}-secret" for i in range(60)}
    csv_file = tmp_path / "chargers.csv"
    csv_file.write_text("serial,password\n" + "".join(f"{s},{p}\n" for s, p in passwords.items()))
    csms = TestCsms(passwords=passwords)
    await csms.start()
    try:
        code, out, err = await run_cli(
            "charger",
            "fleet",
            "--count",
            "50",
            "--server",
            csms.url,
            "--password-file",
            str(csv_file),
            "--hold-seconds",
            "0.2",
        )
    finally:
        await csms.stop()
    assert code == 0, err
    assert len(csms.records) == 50
    assert csms.auth_failures == 0
    summary = [line for line in out.splitlines() if line.startswith("│")]
    cells = [cell.strip() for cell in summary[0].strip("│").split("│")]
    assert cells[:4] == ["50", "50", "50", "0"]
    assert float(cells[4]) > 0 and float(cells[5]) >= float(cells[4])
    for secret in passwords.values():
        assert secret not in out + err


async def test_fleet_reports_refused_chargers(tmp_path: Path):
    csv_file = tmp_path / "chargers.csv"
    csv_file.write_text("serial,password\nGOOD,pw-good\nBAD,pw-wrong\n")
    csms = TestCsms(passwords={"GOOD": "pw-good", "BAD": "pw-bad"})
    await csms.start()
    try:
        code, out, err = await run_cli(
            "charger", "fleet", "--server", csms.url, "--password-file", str(csv_file)
        )
    finally:
        await csms.stop()
    assert code == 1
    assert "HTTP 401: 1" in out


class OnATerminal:
    """``evaccess`` with a pty as its controlling terminal, as from a person's shell."""

    def __init__(self, process: asyncio.subprocess.Process, master: int) -> None:
        self.process = process
        self.master = master
        self.seen = b""

    @classmethod
    async def start(cls, *args: str) -> OnATerminal:
        master, slave = os.openpty()

        def take_terminal() -> None:
            # New session whose controlling terminal is the pty, so getpass can open /dev/tty.
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)

        process = await asyncio.create_subprocess_exec(
            EVACCESS,
            *args,
            stdin=slave,
            stdout=slave,
            stderr=slave,
            start_new_session=True,
            preexec_fn=take_terminal,
            env={**os.environ, "COLUMNS": "200", "EVACCESS_CHARGER_PASSWORD": PASSWORD},
        )
        os.close(slave)
        return cls(process, master)

    async def read_until(self, marker: bytes) -> None:
        loop = asyncio.get_running_loop()
        while marker not in self.seen:
            read = loop.run_in_executor(None, os.read, self.master, 1024)
            self.seen += await asyncio.wait_for(read, 30)

    def type(self, keys: bytes) -> None:
        os.write(self.master, keys)

    async def close(self) -> None:
        if self.process.returncode is None:
            self.process.terminate()
            await self.process.wait()
        os.close(self.master)


async def test_interactive_keypad_on_a_terminal_hides_the_code(tmp_path: Path, csms: TestCsms):
    terminal = await OnATerminal.start(*charger_args(csms, tmp_path, "--keypad", "-"))
    try:
        await terminal.read_until(b"keypad code: ")
        terminal.type(b"4821\n")
        await terminal.read_until(b"keypad: accepted")
        await terminal.read_until(b"keypad code: ")
        terminal.type(b"\x04")  # Ctrl-D: end of keypad input
        assert await asyncio.wait_for(terminal.process.wait(), 30) == 0
    finally:
        await terminal.close()
    text = terminal.seen.decode(errors="replace")
    assert "4821" not in text  # typed without echo, never printed
    assert [t["event_type"] for t in csms.records[SERIAL].transactions] == ["Started", "Ended"]


async def test_a_charger_without_keypad_never_prompts_on_a_terminal(tmp_path: Path, csms: TestCsms):
    """Without --keypad the charger has no keypad: a line typed on its terminal is echoed by
    the terminal (nobody reads it, nothing hides it) and starts nothing."""
    args = [arg for arg in charger_args(csms, tmp_path) if arg != "--exit-when-done"]
    terminal = await OnATerminal.start(*args)
    try:
        await terminal.read_until(b"ocpp: boot accepted")
        terminal.type(b"4821\n")
        await terminal.read_until(b"4821")
    finally:
        await terminal.close()
    assert b"keypad" not in terminal.seen
    assert csms.records[SERIAL].transactions == []


async def test_client_certificate_options_are_checked_in_one_line(tmp_path: Path, csms: TestCsms):
    cert = str(tmp_path / "cert.pem")
    cases = {
        ("--client-cert", cert): "error: --client-cert and --client-key go together",
        ("--client-cert", cert, "--client-key", cert): "error: --client-cert needs a wss://",
    }
    for extra, expected in cases.items():
        code, out, err = await run_cli(*charger_args(csms, tmp_path, *extra))
        assert code == 2
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(expected), lines
    assert not csms.records
