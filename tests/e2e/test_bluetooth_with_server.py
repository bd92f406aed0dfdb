"""Issue 4's acceptance path, as a person would walk it in four terminals: the server, the
virtual Bluetooth link, a charger (OCPP to the server, a Bluetooth peripheral on the link),
and the phone app. The app pairs with the PIN it gets from the server, configures Wi-Fi, and
the server shows the change the charger reported over OCPP."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.conftest import Canaries
from tests.e2e.conftest import EVACCESS, Cli, Server, leaked, one_line_error, succeeded
from tests.support import eventually_blocking

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

OWNER = "owner@example.com"
OWNER_PASSWORD = "plum tractor 7 lantern"
SERIAL = "WB-700007"
WIFI_PASSWORD = "garage-wifi-secret-42"


def test_pair_configure_and_see_it_on_the_server(
    cli: Cli, server: Server, tmp_path: Path, canaries: Canaries
) -> None:
    canaries.add(OWNER_PASSWORD, WIFI_PASSWORD)
    org = server.organisation_id
    by_admin = ("--by", server.admin_email)
    cli.ok("admin", "create-user", OWNER, "--password-stdin", stdin=f"{OWNER_PASSWORD}\n")
    registration = json.loads(
        cli.ok(
            "admin", "create-charger", org, "--serial", SERIAL, "--vendor", "Wallbox", "--model", "Pulsar Max",
            "--firmware", "6.11.2", "--owner", OWNER, *by_admin, "--json",
        ).stdout
    )  # fmt: skip
    canaries.add(registration["ocpp_password"])
    cli.ok(
        "app",
        "login",
        "--server",
        server.url,
        "--email",
        OWNER,
        "--password-stdin",
        stdin=f"{OWNER_PASSWORD}\n",
    )

    link = subprocess.Popen(
        (*EVACCESS, "ble-link"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cli.env,
    )
    processes: list[subprocess.Popen[str]] = [link]
    try:
        assert link.stdout is not None
        charger_side, phone_side = (link.stdout.readline().strip() for _ in range(2))
        charger_log = tmp_path / "charger.log"
        with charger_log.open("w") as charger_out:
            charger = subprocess.Popen(
                (
                    *EVACCESS, "charger", "run", "--serial", SERIAL, "--vendor", "Wallbox", "--model", "Pulsar Max",
                    "--firmware", "6.11.2", "--server", f"ws://127.0.0.1:{cli.env['EVACCESS_OCPP_PORT']}/ocpp",
                    "--state-dir", str(tmp_path / "charger"), "--ble-transport", charger_side,
                ),
                stdout=charger_out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True,
                env=cli.env | {"EVACCESS_CHARGER_PASSWORD": registration["ocpp_password"]},
            )  # fmt: skip
        processes.append(charger)

        # The server pushes the mandatory PIN; the charger accepts it; it becomes active.
        def pin_active() -> bool:
            info = cli("app", "charger-info", SERIAL, "--json")
            return (
                info.returncode == 0
                and json.loads(info.stdout)["bluetooth_pin"]["status"] == "active"
            )

        eventually_blocking(pin_active, "the charger to accept its Bluetooth PIN")

        # A wrong PIN: one line, and the troubleshooting screen shows the owner the right one.
        wrong = cli("app", "pair", SERIAL, "--ble-transport", phone_side, "--pin", "100000")
        assert wrong.returncode != 0
        assert "Traceback" not in wrong.output
        assert "error: wrong PIN: 4 attempts left before pairing locks" in wrong.stderr
        assert "Wrong PIN. The charger's Bluetooth PIN is" in wrong.stderr

        paired = succeeded(cli("app", "pair", SERIAL, "--ble-transport", phone_side))
        assert "with its PIN" in paired.stdout
        configured = succeeded(
            cli(
                "app", "configure", SERIAL, "--ble-transport", phone_side, "--wifi-ssid", "Garage",
                "--wifi-password-stdin", stdin=f"{WIFI_PASSWORD}\n",
            )
        )  # fmt: skip
        assert "Wi-Fi network Garage" in configured.stdout

        def reported() -> dict[str, str]:
            info = cli("app", "charger-info", SERIAL, "--json")
            return (
                json.loads(info.stdout)["charger"]["reported_settings"]
                if info.returncode == 0
                else {}
            )

        assert eventually_blocking(
            lambda: reported().get("WifiSsid") == "Garage", "the Wi-Fi change to reach the server"
        )

        # The app forgets the charger; the credential no longer works.
        succeeded(cli("app", "forget", SERIAL, "--ble-transport", phone_side))
        again = cli(
            "app", "configure", SERIAL, "--ble-transport", phone_side, "--current-limit", "10"
        )
        one_line_error(again)

        # Five wrong PINs lock pairing; the charger tells the server, the owner sees it.
        for left in ("4 attempts", "3 attempts", "2 attempts", "1 attempt"):
            wrong = cli("app", "pair", SERIAL, "--ble-transport", phone_side, "--pin", "100000")
            assert f"error: wrong PIN: {left} left before pairing locks" in wrong.stderr
        wrong = cli("app", "pair", SERIAL, "--ble-transport", phone_side, "--pin", "100000")
        assert "error: wrong PIN: pairing is now locked for 5 min" in wrong.stderr

        def lockouts() -> list[str]:
            info = cli("app", "charger-info", SERIAL, "--json")
            events = json.loads(info.stdout)["charger"]["recent_security_events"]
            return [e["tech_info"] for e in events if e["event_type"].endswith("PinLockout")]

        assert eventually_blocking(lockouts, "the lockout to reach the owner") == [
            "level=1 duration_s=300 consecutive_failures=5"
        ]
        shown = cli("app", "charger-info", SERIAL).stdout
        assert "recent security events" in shown  # the text itself: tests/app
    finally:
        outputs = []
        for process in reversed(processes):
            process.terminate()
            try:
                out, err = process.communicate(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                out, err = process.communicate()
            outputs.append((out or "") + (err or ""))
    # The charger told its operator what happened over Bluetooth, in order.
    bluetooth = [
        line for line in charger_log.read_text().splitlines() if line.startswith("bluetooth: ")
    ]
    expected = [
        "advertising as",
        "wrong Bluetooth PIN",
        "issued a credential",
        "changed the Wi-Fi network",
    ]
    positions = [next(i for i, line in enumerate(bluetooth) if part in line) for part in expected]
    assert positions == sorted(positions), bluetooth
    everything = "\n".join(outputs) + charger_log.read_text() + server.output()
    assert "Traceback" not in everything
    assert not leaked(everything, canaries, server.admin_password), (
        "a secret reached a log or a terminal"
    )
