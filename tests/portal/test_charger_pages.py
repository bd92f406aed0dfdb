"""Charger pages in a real browser: the owner reveals the Bluetooth PIN and finds the reveal
in the history; a person of another organisation gets the same not-found page for that
charger as for one that does not exist; logging in is throttled; forms without a valid
CSRF value change nothing."""

from __future__ import annotations

import json
import re

import httpx
import pytest
from playwright.sync_api import expect

from tests.conftest import Canaries
from tests.e2e.conftest import Cli, Server, succeeded
from tests.portal.conftest import Portal, make_user

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

SERIAL = "WB-424242"
MODEL = ("--vendor", "Wallbox", "--model", "Pulsar Max", "--firmware", "6.11.4")
OWNER = ("olive@example.com", "amber kettle 4 meadow")
STRANGER = ("sam@elsewhere.example", "cobalt lantern 8 river")


def _charger(cli: Cli, server: Server, canaries: Canaries) -> None:
    registered = succeeded(
        cli("admin", "create-charger", server.organisation_id, "--serial", SERIAL, *MODEL,
            "--by", server.admin_email, "--owner", OWNER[0], "--json")
    )  # fmt: skip
    canaries.add(json.loads(registered.stdout)["ocpp_password"])


def test_owner_reveals_the_pin_and_sees_it_in_the_history(
    cli: Cli, server: Server, portal: Portal, canaries: Canaries
) -> None:
    canaries.add(OWNER[1], STRANGER[1])
    make_user(cli, *OWNER)
    make_user(cli, *STRANGER)
    _charger(cli, server, canaries)
    succeeded(cli("admin", "create-organisation", "Elsewhere Ltd", "--super-admin", STRANGER[0]))

    owner = portal.person(*OWNER)
    expect(owner.get_by_role("link", name=SERIAL)).to_be_visible()
    portal.check(owner, "chargers")
    # The search narrows the list as one types (htmx), and the address keeps the query.
    owner.get_by_label("Search").fill("zaptec")
    expect(owner.get_by_text("No charger matches.")).to_be_visible()
    assert "q=zaptec" in owner.url
    owner.get_by_label("Search").fill("pulsar")
    expect(owner.get_by_role("link", name=SERIAL)).to_be_visible()
    owner.get_by_role("link", name=SERIAL).click()
    expect(owner.get_by_role("heading", name=f"Charger {SERIAL}")).to_be_visible()
    expect(owner.get_by_text("Nobody has revealed the PIN")).to_be_visible()
    charger_url = owner.url
    before = owner.content()
    portal.check(owner, "charger-info")

    with owner.expect_response(re.compile(r"/reveal$")) as answer:
        owner.get_by_role("button", name="Reveal PIN").click()
    assert answer.value.headers["cache-control"] == "no-store"
    pin = owner.locator("#revealed-pin").inner_text()
    assert re.fullmatch(r"\d{6}", pin)
    canaries.add(pin)
    assert pin not in before, "the PIN was on the page before the reveal"
    assert pin not in owner.url
    history = owner.locator("#reveal-history")
    expect(history).to_contain_text(OWNER[0])
    expect(history).to_contain_text("owner")
    portal.check(owner, "revealed")

    # Leaving the page and coming back: the PIN is gone, the reveal stays in the history.
    owner.goto(charger_url)
    assert pin not in owner.content()
    expect(owner.locator("#reveal-history")).to_contain_text(OWNER[0])

    stranger = portal.person(*STRANGER)
    stranger.goto(charger_url)
    hidden = stranger.locator("main").inner_text()
    missing_url = re.sub(r"/chargers/[^/]+$", "/chargers/00000000000000000000000000", charger_url)
    stranger.goto(missing_url)
    assert stranger.locator("main").inner_text() == hidden
    expect(stranger.get_by_role("heading", name="Not found")).to_be_visible()
    portal.check(stranger, "not-found")

    assert pin not in server.output()


def test_forms_need_the_csrf_value_and_login_is_throttled(
    cli: Cli, server: Server, portal: Portal, canaries: Canaries
) -> None:
    canaries.add(OWNER[1])
    make_user(cli, *OWNER)
    _charger(cli, server, canaries)
    owner = portal.person(*OWNER)
    owner.get_by_role("link", name=SERIAL).click()
    charger_url = owner.url
    cookies = {c["name"]: c["value"] for c in owner.context.cookies()}
    canaries.add(cookies["evaccess_session"])

    # A form posted from another site (no CSRF value, a foreign Origin) changes nothing.
    forged = httpx.post(
        f"{charger_url}/bluetooth/revoke-phones",
        cookies=cookies,
        headers={"Origin": "https://evil.example"},
        data={"csrf": "0" * 64},
    )
    assert forged.status_code == 403
    assert "text/html" in forged.headers["content-type"]
    assert "out of date or came from another site" in forged.text
    assert "Traceback" not in forged.text

    page = portal.new_page()
    for _ in range(8):
        page.goto("/login")
        page.get_by_label("Email").fill(OWNER[0])
        page.get_by_label("Password").fill("not the password at all")
        page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("alert")).to_contain_text(re.compile(r"too many|try again", re.I))
    portal.check(page, "login-throttled")
