"""The Users page, the audit log and the account page in a real browser against the real
server: the super-admin assigns a keypad charger to a member, sets the member's keypad PIN
with the keypad PIN button next to them, and the PIN opens the charger's keypad (the
charger simulator, over OCPP); a generated PIN is shown once and never again; the audit
filter narrows the log to those PIN changes; a password changed on the account page is the
only one that logs in afterwards."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.conftest import Canaries
from tests.e2e.conftest import EVACCESS, Cli, Server, succeeded
from tests.portal.conftest import Portal, make_user

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

MEMBER = ("mira@example.com", "saffron ladder 3 orchard")
SERIAL = "WB-K0042"
MODEL = ("--vendor", "Wallbox", "--model", "Commander 2", "--firmware", "6.7.16")
CHOSEN_PIN = "5829"


def _keypad(cli: Cli, tmp_path: Path, password: str, codes: str, run: int) -> str:
    """Type ``codes`` on the charger's keypad (the simulator, until its session ended)."""
    charger = subprocess.run(
        (
            *EVACCESS, "charger", "run", "--serial", SERIAL, *MODEL,
            "--server", f"ws://127.0.0.1:{cli.env['EVACCESS_OCPP_PORT']}/ocpp",
            "--state-dir", str(tmp_path / "charger"), "--keypad", codes,
            "--session-seconds", "1", "--exit-when-done",
        ),
        capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
        env=cli.env | {"EVACCESS_CHARGER_PASSWORD": password},
    )  # fmt: skip
    assert charger.returncode == 0, (run, charger.stdout + charger.stderr)
    return charger.stdout + charger.stderr


def test_a_super_admin_sets_a_members_keypad_pin_from_the_users_page(
    cli: Cli, server: Server, portal: Portal, canaries: Canaries, tmp_path: Path
) -> None:
    canaries.add(MEMBER[1], CHOSEN_PIN)
    make_user(cli, *MEMBER)
    by = ("--by", server.admin_email)
    succeeded(cli("admin", "add-member", server.organisation_id, MEMBER[0], *by))
    registered = succeeded(
        cli("admin", "create-charger", server.organisation_id, "--serial", SERIAL, *MODEL,
            "--keypad", *by, "--json")
    )  # fmt: skip
    ocpp_password = json.loads(registered.stdout)["ocpp_password"]
    canaries.add(ocpp_password)

    admin = portal.person(server.admin_email, server.admin_password)
    admin.get_by_role("navigation", name="Main").get_by_role("link", name="Organisations").click()
    expect(admin.get_by_role("heading", name="Organisations", exact=True)).to_be_visible()
    portal.check(admin, "organisations")
    admin.locator("#org-tree a").first.click()
    portal.check(admin, "organisation-settings")
    admin.get_by_role("navigation", name="Organisation").get_by_role("link", name="Users").click()
    expect(admin.get_by_role("heading", name=re.compile("^Users of"))).to_be_visible()
    users_url = admin.url
    row = admin.locator("#members tr", has_text=MEMBER[0])
    expect(row.get_by_role("cell", name="None")).to_be_visible()
    portal.check(admin, "users-page")

    # The charger is the member's to use: assigned on this page.
    row.get_by_label(f"Charger to assign to {MEMBER[0]}").select_option(label=SERIAL)
    row.get_by_role("button", name=f"Assign the charger to {MEMBER[0]}").click()
    expect(admin.get_by_role("status")).to_contain_text(f"{SERIAL} is assigned to {MEMBER[0]}")

    # The keypad PIN button opens the small form in place; a PIN of the admin's choice.
    row = admin.locator("#members tr", has_text=MEMBER[0])
    row.get_by_role("button", name=f"Keypad PIN for {MEMBER[0]}").click()
    field = admin.get_by_label(f"New keypad PIN for {MEMBER[0]}")
    expect(field).to_be_visible()
    portal.check(admin, "keypad-pin-form")
    field.fill(CHOSEN_PIN)
    admin.get_by_role("button", name="Set PIN", exact=True).click()
    expect(admin.get_by_role("status")).to_contain_text(f"The keypad PIN of {MEMBER[0]} is set")
    assert CHOSEN_PIN not in admin.url and CHOSEN_PIN not in admin.content()
    row = admin.locator("#members tr", has_text=MEMBER[0])
    expect(row.get_by_text("Set", exact=True)).to_be_visible()

    # The PIN really opens the charger's keypad for the member.
    typed = _keypad(cli, tmp_path, ocpp_password, CHOSEN_PIN, 1)
    assert "keypad: accepted" in typed, typed

    # A generated PIN: shown once, in the answer to the POST, never in a URL nor again.
    row.get_by_role("button", name=f"Keypad PIN for {MEMBER[0]}").click()
    expect(admin.get_by_label(f"New keypad PIN for {MEMBER[0]}")).to_be_visible()
    with admin.expect_response(
        lambda r: r.url.endswith("/keypad-pin") and r.request.method == "POST"
    ) as answer:
        admin.get_by_role("button", name="Generate a PIN").click()
    assert answer.value.headers["cache-control"] == "no-store"
    generated = admin.locator("#generated-pin").inner_text()
    assert re.fullmatch(r"\d{4}", generated) and generated != CHOSEN_PIN
    canaries.add(generated)
    assert generated not in admin.url
    portal.check(admin, "generated-pin")
    admin.goto(users_url)
    assert generated not in admin.content()
    admin.reload()
    assert generated not in admin.content()
    # The old PIN is gone, the generated one works.
    typed = _keypad(cli, tmp_path, ocpp_password, f"{CHOSEN_PIN},{generated}", 2)
    assert "keypad: rejected" in typed and "keypad: accepted" in typed, typed

    # The audit log, filtered to keypad PIN changes: the two changes, by the admin, no PIN.
    admin.get_by_role("navigation", name="Organisation").get_by_role("link", name="Audit").click()
    records = admin.locator("#audit-records tbody tr")
    expect(records.first).to_be_visible()
    everything = records.count()
    admin.get_by_label("Action").fill("keypad_pin.set")
    admin.get_by_role("button", name="Filter").click()
    expect(records).to_have_count(2)
    assert everything > 2
    assert "action=keypad_pin.set" in admin.url
    expect(records.first).to_contain_text(MEMBER[0])
    expect(records.first).to_contain_text(server.admin_email)
    text = admin.locator("main").inner_text()
    assert CHOSEN_PIN not in text and generated not in text
    portal.check(admin, "audit-filtered")
    admin.get_by_label("By (email)").fill(MEMBER[0])
    admin.get_by_role("button", name="Filter").click()
    expect(admin.get_by_text("No record matches.")).to_be_visible()

    assert CHOSEN_PIN not in server.output() and generated not in server.output()


def test_a_changed_password_is_the_only_one_that_logs_in(
    cli: Cli, server: Server, portal: Portal, canaries: Canaries
) -> None:
    new = "indigo compass 5 harbour"
    canaries.add(MEMBER[1], new)
    make_user(cli, *MEMBER)
    member = portal.person(*MEMBER)
    member.get_by_role("navigation", name="Main").get_by_role("link", name="Account").click()
    expect(member.get_by_role("heading", name="Account")).to_be_visible()
    portal.check(member, "account")
    member.get_by_label("Current password").fill(MEMBER[1])
    member.get_by_label("New password", exact=True).fill(new)
    member.get_by_label("New password again").fill(new)
    member.get_by_role("button", name="Change password").click()
    expect(member.get_by_role("status")).to_contain_text("Your password is changed")
    # this browser goes on signed in
    member.goto("/account")
    expect(member.get_by_role("heading", name="Account")).to_be_visible()
    member.get_by_role("button", name="Log out").click()

    page = portal.new_page()
    page.goto("/login")
    page.get_by_label("Email").fill(MEMBER[0])
    page.get_by_label("Password").fill(MEMBER[1])
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("alert")).to_contain_text("Wrong email or password")
    assert portal.person(MEMBER[0], new).url.endswith("/chargers")
    assert new not in server.output() and MEMBER[1] not in server.output()
