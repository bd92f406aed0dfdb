"""Separate processes: `ble-link` hosting the virtual controllers, the charger peripheral,
and the app's commands, talking over real TCP sockets and real Bumble stacks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.ble.test_no_secrets_in_logs import exposed

PIN = "472913"
SERIAL = "EVA-E2E-1"
ROOT = Path(__file__).resolve().parents[2]


def spawn(*args: str, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-u", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
    )


@pytest.fixture
def base_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EVACCESS")}
    env["EVACCESS_APP_HOME"] = str(tmp_path / "phone")
    env["PYTHONPATH"] = str(ROOT)
    return env


@pytest.fixture
def charger(tmp_path: Path, base_env: dict[str, str]) -> Iterator[str]:
    """Starts ble-link and the charger; yields the app's transport string."""
    link = spawn("-m", "evaccess.charger.ble.link", "--devices", "2", env=base_env)
    procs = [link]
    try:
        assert link.stdout is not None
        transports = [link.stdout.readline().strip() for _ in range(2)]
        assert all(t.startswith("tcp-client:127.0.0.1:") for t in transports), transports
        charger = spawn(
            "-m",
            "tests.ble.charger_harness",
            transports[0],
            SERIAL,
            str(tmp_path / "charger"),
            env={**base_env, "EVACCESS_TEST_PIN": PIN},
        )
        procs.append(charger)
        assert charger.stdout is not None
        assert charger.stdout.readline().strip() == "ready"
        yield transports[1]
    finally:
        for proc in reversed(procs):
            proc.terminate()
            proc.communicate(timeout=10)


def app(*args: str, env: dict[str, str], stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "evaccess.app.ble.commands", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        input=stdin,
        timeout=60,
    )


@pytest.mark.e2e
def test_pair_configure_forget_across_processes(
    charger: str, base_env: dict[str, str], tmp_path: Path
) -> None:
    wrong = app("pair", SERIAL, "--ble-transport", charger, "--pin", "472914", env=base_env)
    assert wrong.returncode == 3, wrong.stderr
    lines = wrong.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: wrong PIN"), lines
    assert "Traceback" not in wrong.stderr

    paired = app("pair", SERIAL, "--ble-transport", charger, "--pin", PIN, env=base_env)
    assert paired.returncode == 0, paired.stderr
    assert f"Paired with charger {SERIAL} with its PIN" in paired.stdout
    assert PIN not in paired.stdout + paired.stderr

    configured = app(
        "configure",
        SERIAL,
        "--ble-transport",
        charger,
        "--current-limit",
        "20",
        "--wifi-ssid",
        "home",
        "--wifi-password-stdin",
        env=base_env,
        stdin="hunter22-wifi\n",
    )
    assert configured.returncode == 0, configured.stderr
    assert "Wi-Fi network home, current limit 20 A" in configured.stdout
    assert "hunter22" not in configured.stdout + configured.stderr

    new_pin = "583920"
    changed = app(
        "configure",
        SERIAL,
        "--ble-transport",
        charger,
        "--new-pin",
        env=base_env,
        stdin=f"{new_pin}\n{new_pin}\n",
    )
    assert changed.returncode == 0, changed.stderr
    assert "PIN changed" in changed.stdout
    assert new_pin not in changed.stdout + changed.stderr  # typed, never echoed

    forgotten = app("forget", SERIAL, "--ble-transport", charger, env=base_env)
    assert forgotten.returncode == 0, forgotten.stderr
    assert not (tmp_path / "phone" / "credentials" / f"{SERIAL}.json").exists()

    reports = [
        json.loads(line)
        for line in (tmp_path / "charger" / "server.jsonl").read_text().splitlines()
    ]
    assert {"configuration": {"WifiSsid": "home"}} in reports
    assert {"configuration": {"CurrentLimit": "20"}} in reports
    assert "hunter22" not in json.dumps(reports)
    assert {"pin_changed": True} in reports

    log = (tmp_path / "charger" / "charger.log").read_text()
    assert "wrong Bluetooth PIN" in log and "GATT" in log  # DEBUG lines were written
    for secret in (PIN, "472914", "hunter22-wifi", new_pin):
        assert not exposed(secret, log)
