"""Issue 9's journey end to end, in separate processes: the maker registers a charger with a
QR sticker; the first account scans it and sees the PIN, pairs its phone over Bluetooth
(Bumble's virtual link) and starts a session with its keypad PIN; it transfers the charger
to a second account, which accepts. Then at that charger the first account's phone
credential and keypad PIN no longer work, and the second account pairs with the new PIN."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from tests.conftest import Canaries
from tests.e2e.conftest import EVACCESS, Cli, Server, leaked, one_line_error, succeeded
from tests.support import eventually_blocking

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

SELLER, SELLER_PASSWORD = "seller@example.com", "amber kettle 4 meadow"
BUYER, BUYER_PASSWORD = "buyer@example.com", "cobalt lantern 8 river"
SERIAL = "WB-909090"
MODEL = ("--vendor", "Wallbox", "--model", "Pulsar Max", "--firmware", "6.11.4")
KEYPAD_PIN = "5829"


def test_scan_pair_transfer_and_the_old_access_is_gone(
    cli: Cli, server: Server, tmp_path: Path, canaries: Canaries
) -> None:
    canaries.add(SELLER_PASSWORD, BUYER_PASSWORD, KEYPAD_PIN)
    org, by = server.organisation_id, ("--by", server.admin_email)
    buyer_home = tmp_path / "buyer-app"
    sticker = tmp_path / "sticker.png"
    started = (
        cli.start("admin", "create-user", SELLER, "--password-stdin", stdin=f"{SELLER_PASSWORD}\n"),
        cli.start("admin", "create-user", BUYER, "--password-stdin", stdin=f"{BUYER_PASSWORD}\n"),
        cli.start("admin", "create-charger", org, "--serial", SERIAL, *MODEL, "--keypad", *by,
                  "--json", "--sticker", str(sticker)),
    )  # fmt: skip
    *_, registered = (succeeded(p.result()) for p in started)
    ocpp_password = json.loads(registered.stdout)["ocpp_password"]
    canaries.add(ocpp_password)
    started = (
        cli.start("app", "login", "--server", server.url, "--email", SELLER, "--password-stdin",
                  stdin=f"{SELLER_PASSWORD}\n"),
        cli.start("app", "login", "--server", server.url, "--email", BUYER, "--password-stdin",
                  stdin=f"{BUYER_PASSWORD}\n", home=buyer_home),
    )  # fmt: skip
    for pending in started:
        succeeded(pending.result())

    # The seller scans the sticker: the charger is theirs, and the PIN is on the screen.
    scanned = succeeded(cli("app", "scan", str(sticker)))
    assert f"{SERIAL} is yours now" in scanned.stdout
    shown = re.search(r"Bluetooth PIN: (\d{6})", scanned.stdout)
    assert shown is not None, scanned.stdout
    old_pin = shown.group(1)
    canaries.add(old_pin)
    cli.ok("app", "keypad-pin", "set", "--pin-stdin", stdin=f"{KEYPAD_PIN}\n")

    link = subprocess.Popen(
        (*EVACCESS, "ble-link"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli.env,
    )  # fmt: skip
    processes: list[subprocess.Popen[str]] = [link]
    log = tmp_path / "charger.log"
    try:
        assert link.stdout is not None
        charger_side, phone = (link.stdout.readline().strip() for _ in range(2))
        with log.open("w") as out:
            charger = subprocess.Popen(
                (
                    *EVACCESS, "charger", "run", "--serial", SERIAL, *MODEL,
                    "--server", f"ws://127.0.0.1:{cli.env['EVACCESS_OCPP_PORT']}/ocpp",
                    "--state-dir", str(tmp_path / "charger"), "--ble-transport", charger_side,
                    "--keypad", "-", "--session-seconds", "1",
                ),
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.PIPE, text=True,
                env=cli.env | {"EVACCESS_CHARGER_PASSWORD": ocpp_password},
            )  # fmt: skip
        processes.append(charger)

        def pin_status(home: Path | None = None) -> str:
            info = cli("app", "charger-info", SERIAL, "--json", home=home)
            return (
                str(json.loads(info.stdout)["bluetooth_pin"]["status"])
                if info.returncode == 0
                else ""
            )

        def type_code(code: str) -> None:
            assert charger.stdin is not None
            charger.stdin.write(f"{code}\n")
            charger.stdin.flush()

        def keypad_lines() -> list[str]:
            return [line for line in log.read_text().splitlines() if line.startswith("keypad: ")]

        eventually_blocking(lambda: pin_status() == "active", "the charger to take its PIN")
        paired = succeeded(cli("app", "pair", SERIAL, "--ble-transport", phone))
        assert "with its PIN" in paired.stdout
        type_code(KEYPAD_PIN)
        eventually_blocking(lambda: keypad_lines(), "the keypad's decision")
        assert keypad_lines()[-1].startswith("keypad: accepted"), keypad_lines()
        eventually_blocking(lambda: "session ended" in log.read_text(), "the session to end")

        # The transfer: the seller offers, the buyer accepts.
        offered = json.loads(
            succeeded(cli("app", "transfer", "start", SERIAL, BUYER, "--json")).stdout
        )
        accepted = succeeded(cli("app", "transfer", "accept", offered["id"], home=buyer_home))
        assert f"you own {SERIAL} now" in accepted.stdout
        # The charger revokes every phone and takes the rotated PIN (confirmed to the server).
        eventually_blocking(
            lambda: "revoked all" in log.read_text(), "the charger to revoke the phones"
        )
        eventually_blocking(
            lambda: pin_status(buyer_home) == "active", "the charger to take the new PIN"
        )

        # The seller's phone credential is refused at the charger.
        refused = cli("app", "configure", SERIAL, "--ble-transport", phone, "--current-limit", "10")
        one_line_error(refused)
        # The seller's keypad PIN no longer starts a session.
        type_code(KEYPAD_PIN)
        eventually_blocking(lambda: len(keypad_lines()) == 2, "the keypad's second decision")
        assert keypad_lines()[-1] == "keypad: rejected", keypad_lines()
        # The seller no longer sees the charger (nor its PIN); the old PIN no longer pairs.
        one_line_error(cli("app", "charger-info", SERIAL))
        wrong = cli("app", "pair", SERIAL, "--ble-transport", phone, "--pin", old_pin)
        assert "error: wrong PIN" in wrong.stderr, wrong.output

        # The buyer pairs with the new PIN the server gives them.
        paired = succeeded(cli("app", "pair", SERIAL, "--ble-transport", phone, home=buyer_home))
        assert "with its PIN" in paired.stdout
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
    everything = "\n".join(outputs) + log.read_text() + server.output()
    assert "Traceback" not in everything
    assert not leaked(everything, canaries, server.admin_password)
