"""Ownership pages in real browsers, each person in a context of their own: a transfer
started by the owner is accepted by the buyer, who then owns the charger (and may release
it after a confirm step); a claim with its purchase agreement goes through two support
agents while the owner objects, which stops it for good: the owner keeps the charger."""

from __future__ import annotations

import json
import re

import pytest
from playwright.sync_api import Page, expect

from tests.conftest import Canaries
from tests.e2e.conftest import Cli, Server, succeeded
from tests.portal.conftest import Portal, make_user

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

SERIAL = "WB-515151"
MODEL = ("--vendor", "Wallbox", "--model", "Pulsar Max", "--firmware", "6.11.4")
OWNER = ("olive@example.com", "amber kettle 4 meadow")
BUYER = ("bruno@example.com", "cobalt lantern 8 river")
NEWCOMER = ("nina@example.com", "saffron meadow 3 pebble")
SUE = ("sue@support.example", "violet harbour 2 crane")
TOM = ("tom@support.example", "copper orchard 7 finch")
PDF = b"%PDF-1.7\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF\n"


def _charger(cli: Cli, server: Server, canaries: Canaries) -> None:
    registered = succeeded(
        cli("admin", "create-charger", server.organisation_id, "--serial", SERIAL, *MODEL,
            "--by", server.admin_email, "--owner", OWNER[0], "--json")
    )  # fmt: skip
    canaries.add(json.loads(registered.stdout)["ocpp_password"])


def _access_of(page: Page) -> str:
    """What Charger Info says of the viewer's access to SERIAL."""
    page.goto("/chargers")
    page.get_by_role("link", name=SERIAL).click()
    expect(page.get_by_role("heading", name=f"Charger {SERIAL}")).to_be_visible()
    return page.locator("dl.facts dt:text-is('Your access') + dd").inner_text()


def test_a_transfer_started_in_one_browser_is_accepted_in_another(
    cli: Cli, server: Server, portal: Portal, canaries: Canaries
) -> None:
    canaries.add(OWNER[1], BUYER[1])
    make_user(cli, *OWNER)
    make_user(cli, *BUYER)
    _charger(cli, server, canaries)

    owner = portal.person(*OWNER)
    owner.get_by_role("link", name="Ownership").click()
    expect(owner.get_by_role("heading", name="Ownership", exact=True)).to_be_visible()
    expect(owner.get_by_text("No open transfers")).to_be_visible()
    portal.check(owner, "ownership")
    owner.get_by_label("Charger", exact=True).select_option(label=f"{SERIAL} (Wallbox Pulsar Max)")
    owner.get_by_label("Recipient's email").fill(BUYER[0])
    owner.get_by_role("button", name="Offer the charger").click()
    expect(owner.get_by_role("status")).to_contain_text(
        f"Charger {SERIAL} is offered to {BUYER[0]}"
    )
    offered = owner.locator("#open-transfers tbody tr").filter(has_text=SERIAL)
    expect(offered).to_contain_text(BUYER[0])
    expect(offered.get_by_role("button", name=re.compile("^Cancel"))).to_be_visible()
    expect(offered.get_by_role("button", name=re.compile("^Accept"))).to_have_count(0)
    portal.check(owner, "transfer-started")
    assert "owner" in _access_of(owner)  # the owner keeps the charger until acceptance

    buyer = portal.person(*BUYER)
    expect(buyer.get_by_role("link", name=SERIAL)).to_have_count(0)
    buyer.goto("/ownership")
    offer = buyer.locator("#open-transfers tbody tr").filter(has_text=SERIAL)
    expect(offer).to_contain_text(OWNER[0])
    expect(offer.get_by_role("button", name=re.compile("^Cancel"))).to_have_count(0)
    portal.check(buyer, "transfer-accept")
    offer.get_by_role("button", name=f"Accept charger {SERIAL}").click()
    expect(buyer.get_by_role("status")).to_contain_text(f"You own charger {SERIAL} now")
    expect(buyer.get_by_text("No open transfers")).to_be_visible()
    expect(
        buyer.get_by_text(re.compile(f"{SERIAL}: {re.escape(OWNER[0])} to you, accepted"))
    ).to_be_visible()
    portal.check(buyer, "transfer-accepted")

    # The charger shows its new owner; the previous owner's access ended with the handover.
    assert _access_of(buyer) == "owner"
    owner.goto("/chargers")
    expect(owner.get_by_text("You have no chargers yet")).to_be_visible()
    owner.goto("/ownership")
    expect(owner.get_by_text("You own no charger to transfer.")).to_be_visible()

    # Moving out: releasing asks first, then the charger has no owner.
    buyer.goto("/ownership")
    buyer.get_by_role("link", name=f"Release {SERIAL}…").click()
    expect(buyer.get_by_role("heading", name=f"Release charger {SERIAL}?")).to_be_visible()
    portal.check(buyer, "release-confirm")
    buyer.get_by_label(re.compile("I understand")).check()
    buyer.get_by_role("button", name=f"Release {SERIAL}").click()
    expect(buyer.get_by_role("status")).to_contain_text(f"Charger {SERIAL} is released")
    buyer.goto("/chargers")
    expect(buyer.get_by_text("You have no chargers yet")).to_be_visible()


def test_a_claim_goes_through_two_agents_while_the_owner_objects(
    cli: Cli, server: Server, portal: Portal, canaries: Canaries
) -> None:
    people = (OWNER, NEWCOMER, SUE, TOM)
    canaries.add(*(password for _, password in people))
    for person in people:
        make_user(cli, *person)
    _charger(cli, server, canaries)
    for agent in (SUE, TOM):
        succeeded(cli("admin", "set-staff-role", agent[0], "support"))

    # Context 1: the newcomer files a claim with the purchase agreement.
    newcomer = portal.person(*NEWCOMER)
    expect(newcomer.get_by_role("link", name="Support")).to_have_count(0)
    newcomer.goto("/ownership")
    newcomer.get_by_label("Serial number").fill(SERIAL)
    newcomer.get_by_label("Installation address").fill("12 Harbour Lane, Bristol")
    newcomer.get_by_label("Installer's name").fill("Sparks & Sons")
    newcomer.get_by_label(re.compile("^Purchase agreement")).set_input_files(
        {"name": "agreement.pdf", "mimeType": "application/pdf", "buffer": PDF}
    )
    newcomer.get_by_role("button", name="File the claim").click()
    expect(newcomer.get_by_role("status")).to_contain_text(f"Your claim of {SERIAL} is filed")
    expect(newcomer.get_by_role("status")).to_contain_text("may object until")
    mine = newcomer.locator("#claims tbody tr").filter(has_text=SERIAL)
    expect(mine).to_contain_text("Filed, waiting for support")
    expect(mine.get_by_role("button", name=re.compile("^Withdraw"))).to_be_visible()
    portal.check(newcomer, "claim-filed")
    newcomer.goto("/support/claims")
    expect(newcomer.get_by_role("alert")).to_contain_text("only support agents")

    # Context 2: agent Sue finds it in the queue, downloads the agreement, approves once.
    sue = portal.person(*SUE)
    sue.get_by_role("link", name="Support").click()
    expect(sue.get_by_role("heading", name="Claims to review")).to_be_visible()
    queued = sue.locator("#queue tbody tr").filter(has_text=SERIAL)
    expect(queued).to_contain_text(NEWCOMER[0])
    portal.check(sue, "support-queue")
    queued.get_by_role("link", name=SERIAL).click()
    expect(sue.get_by_role("heading", name=f"Claim of charger {SERIAL}")).to_be_visible()
    expect(sue.get_by_text("12 Harbour Lane, Bristol")).to_be_visible()
    expect(sue.locator("#objection-window")).to_contain_text("(open)")
    claim_url = sue.url
    with sue.expect_download() as download:
        sue.get_by_role("link", name=re.compile("^Download")).click()
    assert download.value.suggested_filename.endswith(".pdf")
    assert download.value.path().read_bytes() == PDF
    served = sue.context.request.get(claim_url + "/document")
    assert served.headers["content-type"] == "application/pdf"
    assert served.headers["content-disposition"].startswith("attachment;")
    assert served.headers["cache-control"] == "no-store"
    assert served.headers["x-content-type-options"] == "nosniff"
    portal.check(sue, "claim-review")
    sue.get_by_role("button", name="Approve").click()
    expect(sue.get_by_role("status")).to_contain_text("Approved once: a second, different")
    expect(sue.locator("#claim-state")).to_contain_text("Approved once")
    expect(sue.locator("#first-approver")).to_have_text(SUE[0])
    expect(sue.locator("#needs-second")).to_be_visible()
    expect(sue.get_by_role("button", name=re.compile("^Approve"))).to_have_count(0)
    portal.check(sue, "claim-approved-once")

    # Context 4 opens the claim before the owner acts: the second approval is offered.
    tom = portal.person(*TOM)
    tom.goto(claim_url)
    expect(tom.locator("#claim-state")).to_contain_text("Approved once")
    expect(tom.get_by_role("button", name="Approve (second approval)")).to_be_visible()

    # Context 3: the owner objects within the window.
    owner = portal.person(*OWNER)
    owner.goto("/ownership")
    against = owner.locator("#claims tbody tr").filter(has_text=SERIAL)
    expect(against).to_contain_text("Against your charger")
    expect(against).to_contain_text("Approved once")
    expect(against.get_by_role("button", name=re.compile("^Withdraw"))).to_have_count(0)
    portal.check(owner, "claim-object")
    against.get_by_role("button", name=f"Object to the claim of {SERIAL}").click()
    expect(owner.get_by_role("status")).to_contain_text("You objected")
    expect(against).to_contain_text("Stopped: the owner objected")
    expect(against.get_by_role("button")).to_have_count(0)

    # Context 4: agent Tom's approval comes too late: an objection stops the claim for good.
    tom.get_by_role("button", name="Approve (second approval)").click()
    expect(tom.get_by_role("heading", name="Conflict")).to_be_visible()
    expect(tom.get_by_role("alert")).to_contain_text(
        "this claim is closed: the owner objected to it"
    )
    portal.check(tom, "claim-conflict")
    tom.goto(claim_url)
    expect(tom.locator("#claim-state")).to_contain_text("Stopped: the owner objected")
    expect(tom.locator("#second-approver")).to_have_text("–")
    expect(tom.get_by_role("button")).to_have_count(1)  # only "Log out": no approve, no reject
    tom.goto("/support/claims")
    expect(tom.get_by_text("No claims open.")).to_be_visible()
    tom.get_by_label("Show").select_option("objected")
    tom.get_by_role("button", name="Show").click()
    expect(tom.locator("#queue tbody tr").filter(has_text=SERIAL)).to_contain_text(SUE[0])
    portal.check(tom, "support-objected")

    # The owner keeps the charger; the newcomer got nothing and sees why.
    assert _access_of(owner) == "owner"
    newcomer.goto("/ownership")
    expect(mine).to_contain_text("Stopped: the owner objected")
    expect(mine.get_by_role("button")).to_have_count(0)
    newcomer.goto("/chargers")
    expect(newcomer.get_by_role("link", name=SERIAL)).to_have_count(0)
    assert PDF.decode() not in server.output()
