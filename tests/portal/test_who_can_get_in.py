"""The Who can get in page in a real browser, against real processes: the server, a charger
(OCPP to the server, a Bluetooth peripheral on the virtual link) and the phone app. The
owner shares the charger, pairs a phone with the PIN (the charger reports the credential it
issued), finds both on the page, and ends both from it; the charger really forgets the
phone and the server really ends the grant."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.conftest import Canaries
from tests.e2e.conftest import EVACCESS, Cli, Server, leaked, one_line_error, succeeded
from tests.portal.conftest import ARTIFACTS, Portal, make_user
from tests.support import eventually_blocking

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

ROOT = Path(__file__).resolve().parents[2]
SERIAL = "WB-515151"
MODEL = ("--vendor", "Wallbox", "--model", "Pulsar Max", "--firmware", "6.11.2")
OWNER = ("olive@example.com", "amber kettle 4 meadow")
FRIEND = ("felix@example.com", "copper willow 9 harbour")


@contextmanager
def charger_on_link(cli: Cli, tmp_path: Path, ocpp_password: str, log: Path) -> Iterator[str]:
    """The virtual Bluetooth link and a charger on it, connected to the server; yields the
    link's phone side (as `tests/e2e/test_bluetooth_with_server.py` starts them)."""
    link = subprocess.Popen(
        (*EVACCESS, "ble-link"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=cli.env,
    )  # fmt: skip
    processes: list[subprocess.Popen[str]] = [link]
    try:
        assert link.stdout is not None
        charger_side, phone_side = (link.stdout.readline().strip() for _ in range(2))
        with log.open("w") as out:
            processes.append(
                subprocess.Popen(
                    (
                        *EVACCESS,
                        "charger",
                        "run",
                        "--serial",
                        SERIAL,
                        *MODEL,
                        "--server",
                        f"ws://127.0.0.1:{cli.env['EVACCESS_OCPP_PORT']}/ocpp",
                        "--state-dir",
                        str(tmp_path / "charger"),
                        "--ble-transport",
                        charger_side,
                    ),
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    text=True,
                    env=cli.env | {"EVACCESS_CHARGER_PASSWORD": ocpp_password},
                )  # fmt: skip
            )
        yield phone_side
    finally:
        for process in reversed(processes):
            process.terminate()
            try:
                process.communicate(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.communicate()


def _rows(page: Page, table: str) -> list[str]:
    return page.locator(f"#{table} tbody tr").all_inner_texts()


def test_the_owner_sees_and_ends_who_can_get_in(
    cli: Cli, server: Server, portal: Portal, tmp_path: Path, canaries: Canaries
) -> None:
    canaries.add(OWNER[1], FRIEND[1])
    make_user(cli, *OWNER)
    make_user(cli, *FRIEND)
    registered = json.loads(
        succeeded(
            cli("admin", "create-charger", server.organisation_id, "--serial", SERIAL, *MODEL,
                "--by", server.admin_email, "--owner", OWNER[0], "--json")
        ).stdout
    )  # fmt: skip
    canaries.add(registered["ocpp_password"])
    friend_home = tmp_path / "friend-app"
    for (email, password), home in ((OWNER, None), (FRIEND, friend_home)):
        succeeded(
            cli("app", "login", "--server", server.url, "--email", email, "--password-stdin",
                stdin=f"{password}\n", home=home)
        )  # fmt: skip
    invited = json.loads(
        succeeded(cli("app", "invite", SERIAL, "--email", FRIEND[0], "--json")).stdout
    )
    canaries.add(invited["token"])
    succeeded(cli("app", "accept", invited["token"], home=friend_home))

    charger_log = tmp_path / "charger.log"
    with charger_on_link(cli, tmp_path, registered["ocpp_password"], charger_log) as phone:

        def pin_active() -> bool:
            info = cli("app", "charger-info", SERIAL, "--json")
            return (
                info.returncode == 0
                and json.loads(info.stdout)["bluetooth_pin"]["status"] == "active"
            )

        eventually_blocking(pin_active, "the charger to accept its Bluetooth PIN")
        assert (
            "with its PIN" in succeeded(cli("app", "pair", SERIAL, "--ble-transport", phone)).stdout
        )

        owner = portal.person(*OWNER)
        owner.get_by_role("link", name=SERIAL).click()
        owner.get_by_role("navigation", name="Charger").get_by_role(
            "link", name="Who can get in"
        ).click()
        expect(owner.get_by_role("heading", name="Who can get in")).to_be_visible()
        expect(owner.locator("#owner")).to_contain_text(f"{OWNER[0]} (you)")
        expect(owner.locator("#grants")).to_contain_text(FRIEND[0])
        expect(owner.locator("#grants")).to_contain_text("User")

        # The charger reported the credential it issued: the page lists the phone.
        def phones_listed() -> list[str]:
            owner.reload()
            return _rows(owner, "phones")

        listed = eventually_blocking(phones_listed, "the paired phone to be listed", interval=0.5)
        assert len(listed) == 1 and "Not known" in listed[0], listed
        portal.check(owner, "who-can-get-in")
        shot = ARTIFACTS / f"{portal.name}-who-can-get-in-phone.png"
        shutil.copyfile(shot, ROOT / "docs" / "images" / "portal-who-can-get-in-phone.png")

        # Forget the phone: back on the page, it is gone, and the charger forgets it too.
        owner.get_by_role("button", name=re.compile(r"^Forget phone ")).click()
        expect(owner.get_by_role("status")).to_contain_text("That phone must prove")
        expect(owner.get_by_text("No phone holds a Bluetooth credential")).to_be_visible()
        assert re.search(r"/chargers/[^/]+/access\?done=", owner.url)

        def charger_forgot() -> bool:
            events = json.loads(succeeded(cli("app", "security-events", SERIAL, "--json")).stdout)
            return any(
                e["event_type"] == "evaccess.BluetoothCredentialRevoked"
                and (e["tech_info"] or "").startswith("phone_id=")
                for e in events
            )

        eventually_blocking(charger_forgot, "the charger to forget the phone")
        one_line_error(
            cli("app", "configure", SERIAL, "--ble-transport", phone, "--current-limit", "10")
        )

        # Revoke the friend's access: gone from the page and from the server.
        owner.get_by_role("button", name=f"Revoke access of {FRIEND[0]}").click()
        expect(owner.get_by_role("status")).to_contain_text("Their access has ended.")
        expect(owner.get_by_text("The charger is shared with nobody.")).to_be_visible()
        grants = json.loads(succeeded(cli("app", "grants", SERIAL, "--json")).stdout)
        assert [g["email"] for g in grants] == [OWNER[0]], grants
        gone = cli("app", "charger-info", SERIAL, home=friend_home)
        assert gone.returncode != 0 and "Traceback" not in gone.output
        portal.check(owner, "who-can-get-in-after")

    everything = charger_log.read_text() + server.output()
    assert "Traceback" not in everything
    assert not leaked(everything, canaries, server.admin_password)
