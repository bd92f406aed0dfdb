"""Who can get in, in process (both databases): each person sees the sections the
permission table gives them; the owner withdraws an invitation and cancels a transfer from
the page; keypad holders are listed by name, never with their PIN."""

from __future__ import annotations

import re

from evaccess.domain.access import GrantKind
from evaccess.domain.ownership_transfer import TransferState
from evaccess.server.context import Context
from evaccess.server.services import invitations, keypad_pins, transfers
from tests.conftest import Canaries
from tests.portal.test_portal_routes import signed_in
from tests.server.support import build_world, client_for

SECTIONS = {
    "owner": "Owner",
    "grants": "People it is shared with",
    "phones": "Phones with Bluetooth access",
    "keypad": "Keypad PINs that open it",
    "invitations": "Open invitations",
    "transfer": "Ownership transfer",
}


async def test_each_person_sees_what_they_may(ctx: Context, canaries: Canaries) -> None:
    world = await build_world(ctx)
    assert world.org is not None
    charger = world.chargers["old"]  # a keypad and Bluetooth
    owner = world.actor("owner")
    canaries.add("6083")
    await keypad_pins.set_pin(ctx, owner, world.org.id, owner.user_id, "6083")
    await transfers.start_transfer(ctx, owner, charger.id, "buyer@example.com")
    expected = {
        "owner": set(SECTIONS),
        "super_admin": {"owner", "grants", "keypad", "invitations"},
        "admin": {"owner", "keypad"},
        "service": {"owner", "phones"},
        "invited": {"owner"},
    }
    async with client_for(ctx) as client:
        for who, shown in expected.items():
            await signed_in(client, world, who)
            answer = await client.get(f"/chargers/{charger.id}/access")
            assert answer.status_code == 200, who
            headings = set(re.findall(r"<h3 id=\"[^\"]+\">([^<]+)</h3>", answer.text))
            assert headings == {SECTIONS[s] for s in shown}, who
            assert "6083" not in answer.text
            if "keypad" in shown:
                assert "owner@example.com" in answer.text.split("Keypad PINs")[1]
        await signed_in(client, world, "stranger")
        assert (await client.get(f"/chargers/{charger.id}/access")).status_code == 404


async def test_the_owner_withdraws_an_invitation_and_cancels_a_transfer(ctx: Context) -> None:
    world = await build_world(ctx)
    charger = world.chargers["wallbox"]
    owner = world.actor("owner")
    issued = await invitations.invite(
        ctx, owner, charger.id, email="later@example.com", kind=GrantKind.SERVICE
    )
    offer = await transfers.start_transfer(ctx, owner, charger.id, "buyer@example.com")
    url = f"/chargers/{charger.id}/access"
    async with client_for(ctx) as client:
        csrf = await signed_in(client, world, "owner")
        page = (await client.get(url)).text
        assert "later@example.com" in page and "buyer@example.com" in page
        assert issued.token not in page

        withdrawn = await client.post(
            f"{url}/invitations/{issued.invitation.id}/revoke", data={"csrf": csrf}
        )
        assert withdrawn.status_code == 303
        assert withdrawn.headers["location"].startswith(url + "?done=")
        after = (await client.get(withdrawn.headers["location"])).text
        assert "The invitation is withdrawn." in after and "later@example.com" not in after
        assert await invitations.list_invitations(ctx, owner, charger.id) == []

        cancelled = await client.post(f"{url}/transfers/{offer.id}/cancel", data={"csrf": csrf})
        assert cancelled.status_code == 303
        after = (await client.get(cancelled.headers["location"])).text
        assert "The transfer is cancelled." in after and "buyer@example.com" not in after
        [view] = await transfers.list_transfers(ctx, owner)
        assert view.state is TransferState.CANCELLED

        # The owner's own grant is not offered for revoking; another's, unknown, is not found.
        missing = await client.post(
            f"{url}/grants/00000000-0000-0000-0000-000000000000/revoke", data={"csrf": csrf}
        )
        assert missing.status_code == 404 and "text/html" in missing.headers["content-type"]
