"""Charger Info in process (both databases): what each person is offered follows the
permission table (the page only shows the services' answers), a change of PIN goes through
a form and says so, and security events reach those who may see them."""

from __future__ import annotations

from sqlalchemy import select

from evaccess.server.context import Context
from evaccess.server.db.models import BluetoothPin, SecurityEvent
from tests.conftest import Canaries
from tests.portal.test_portal_routes import signed_in
from tests.server.support import build_world, client_for, confirm_pin_push


async def test_the_owner_changes_the_pin_and_sees_a_lockout(
    ctx: Context, canaries: Canaries
) -> None:
    world = await build_world(ctx)
    charger = world.chargers["wallbox"]
    await confirm_pin_push(ctx, charger.serial)
    async with ctx.db.transaction() as session:
        session.add(
            SecurityEvent(
                charger_id=charger.id,
                event_type="KeypadLockout",
                at=ctx.clock.now(),
                tech_info="5 wrong keypad PINs",
                received_at=ctx.clock.now(),
            )
        )
    url = f"/chargers/{charger.id}"
    async with client_for(ctx) as client:
        csrf = await signed_in(client, world, "owner")
        page = (await client.get(url)).text
        assert "Reveal PIN" in page and "Change PIN" in page and "Forget every phone" in page
        assert "KeypadLockout" in page and "5 wrong keypad PINs" in page
        canaries.add("482917")
        changed = await client.post(
            f"{url}/bluetooth-pin/change", data={"csrf": csrf, "pin": "482917"}
        )
        assert changed.status_code == 303 and "482917" not in changed.headers["location"]
        after = (await client.get(changed.headers["location"])).text
        # No OCPP endpoint runs here: the charger is offline, and both messages say so.
        assert "The new Bluetooth PIN waits for the charger, which is offline" in after
        assert "Change being kept for the charger, which is offline" in after
        assert "482917" not in after
        forgot = await client.post(f"{url}/bluetooth/revoke-phones", data={"csrf": csrf})
        said = (await client.get(forgot.headers["location"])).text
        assert "Every phone must prove the Bluetooth PIN again once the charger" in said
        assert "which is offline, next connects" in said
        async with ctx.db.read() as session:
            row = await session.scalar(
                select(BluetoothPin).where(BluetoothPin.charger_id == charger.id)
            )
        assert row is not None and row.pending_ciphertext is not None

        # A rejected PIN is a readable page that names the rule, not the PIN.
        trivial = await client.post(
            f"{url}/bluetooth-pin/change", data={"csrf": csrf, "pin": "123456"}
        )
        assert trivial.status_code == 422 and "text/html" in trivial.headers["content-type"]
        assert "123456" not in trivial.text and "Traceback" not in trivial.text


async def test_a_user_of_the_charger_is_offered_what_users_may_do(ctx: Context) -> None:
    world = await build_world(ctx)
    charger = world.chargers["wallbox"]
    async with client_for(ctx) as client:
        await signed_in(client, world, "invited")
        page = (await client.get(f"/chargers/{charger.id}")).text
    assert "Charger Info" in page and charger.serial in page
    for owner_only in ("Change PIN", "Forget every phone", "Reveal history", "KeypadLockout"):
        assert owner_only not in page, owner_only
