"""A reveal in a session older than the re-authentication window asks for the password
first (the window is 0 here, so every session is older); a wrong password shows nothing,
the right one shows the PIN and replaces the session (the old cookie stops working)."""

from __future__ import annotations

import json
import re

import httpx
import pytest
from playwright.sync_api import expect

from tests.conftest import Canaries
from tests.e2e.conftest import Cli, Server, succeeded
from tests.portal.conftest import Portal, make_user

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

OWNER = ("rita@example.com", "amber kettle 4 meadow")


@pytest.fixture
def cli(cli: Cli) -> Cli:
    cli.env["EVACCESS_PORTAL_REAUTH_S"] = "0"
    return cli


def test_an_older_session_confirms_the_password_before_a_reveal(
    cli: Cli, server: Server, portal: Portal, canaries: Canaries
) -> None:
    canaries.add(OWNER[1])
    make_user(cli, *OWNER)
    registered = succeeded(
        cli("admin", "create-charger", server.organisation_id, "--serial", "WB-515151",
            "--vendor", "Wallbox", "--model", "Pulsar Max", "--firmware", "6.11.4",
            "--by", server.admin_email, "--owner", OWNER[0], "--json")
    )  # fmt: skip
    canaries.add(json.loads(registered.stdout)["ocpp_password"])
    owner = portal.person(*OWNER)
    owner.get_by_role("link", name="WB-515151").click()
    charger_url = owner.url
    old = {c["name"]: c["value"] for c in owner.context.cookies()}["evaccess_session"]
    canaries.add(old)

    owner.get_by_role("button", name="Reveal PIN").click()
    expect(owner.get_by_role("heading", name="Confirm your password")).to_be_visible()
    owner.get_by_label("Password").fill("not my password")
    owner.get_by_role("button", name="Confirm and reveal").click()
    expect(owner.get_by_role("alert")).to_have_text("Wrong password.")
    assert owner.locator("#revealed-pin").count() == 0
    portal.check(owner, "confirm-password")

    owner.get_by_label("Password").fill(OWNER[1])
    owner.get_by_role("button", name="Confirm and reveal").click()
    pin = owner.locator("#revealed-pin").inner_text()
    assert re.fullmatch(r"\d{6}", pin)
    canaries.add(pin)
    new = {c["name"]: c["value"] for c in owner.context.cookies()}["evaccess_session"]
    canaries.add(new)
    assert new != old
    gone = httpx.get(charger_url, cookies={"evaccess_session": old}, follow_redirects=False)
    assert gone.status_code == 303 and gone.headers["location"].startswith("/login?next=")
    assert pin not in server.output()
