"""Organisation pages in process (both databases): the tree with its subgroups, the Users
page offering what the permission table allows, a generated keypad PIN shown once in the
POST's answer (never in a URL), wrong roles getting a readable page, the audit filters, and
the password change on the account page."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from evaccess.domain.errors import NotAuthenticated
from evaccess.domain.pins import PinSpaceCrowding
from evaccess.server.context import Context
from evaccess.server.db.models import AuditRecord, Grant
from evaccess.server.portal.pages import organisations as organisation_pages
from evaccess.server.services import accounts, keypad_pins
from evaccess.server.services.organisations import AuditFilter, audit_records
from tests.conftest import Canaries
from tests.portal.test_portal_routes import signed_in
from tests.server.support import PASSWORD, build_world, client_for


async def test_the_tree_shows_subgroups_under_their_parent(ctx: Context) -> None:
    world = await build_world(ctx)
    assert world.org is not None and world.subgroup is not None
    async with client_for(ctx) as client:
        await signed_in(client, world, "super_admin")
        page = (await client.get("/organisations")).text
    tree = page[page.index('id="org-tree"') :]
    acme, depot = tree.index("Acme Fleet"), tree.index("Depot North")
    assert acme < depot and "Rival" not in page
    # the subgroup sits in a list nested inside Acme's item
    assert tree[acme:depot].count('<ul class="tree">') == 1
    assert "New subgroup" in page and "New organisation" not in page  # not a system admin


async def test_a_super_admin_generates_a_members_pin_shown_once(
    ctx: Context, canaries: Canaries
) -> None:
    world = await build_world(ctx)
    assert world.org is not None
    member = world.users["member"]
    users = f"/organisations/{world.org.id}/users"
    async with client_for(ctx) as client:
        csrf = await signed_in(client, world, "super_admin")
        page = (await client.get(users)).text
        assert f'aria-label="Keypad PIN for {member.email}"' in page
        assert "Change role of" in page and "Add member" in page
        form = await client.get(
            f"/organisations/{world.org.id}/members/{member.id}/keypad-pin",
            headers={"HX-Request": "true"},
        )
        assert form.status_code == 200 and "<html" not in form.text
        assert f"New keypad PIN for {member.email}" in form.text
        answer = await client.post(
            f"/organisations/{world.org.id}/members/{member.id}/keypad-pin",
            data={"csrf": csrf, "generate": "yes"},
        )
        assert answer.status_code == 200
        assert answer.headers["cache-control"] == "no-store"
        found = re.search(r'id="generated-pin"[^>]*>(\d{4})<', answer.text)
        assert found, answer.text[:500]
        pin = found.group(1)
        canaries.add(pin)
        again = (await client.get(users)).text
        assert pin not in again
    # The PIN is the member's: it opens a keypad charger they may use.
    keypad = world.chargers["old"]
    async with ctx.db.transaction() as session:
        session.add(
            Grant(
                charger_id=keypad.id,
                user_id=member.id,
                kind="user",
                granted_by=world.users["super_admin"].id,
                created_at=ctx.clock.now(),
            )
        )
    ctx.keypad_index.invalidate()
    assert await keypad_pins.resolve(ctx, keypad.id, pin) == member.id


async def test_wrong_roles_get_a_readable_page(ctx: Context, canaries: Canaries) -> None:
    world = await build_world(ctx)
    assert world.org is not None
    org = world.org.id
    target = world.users["super_admin"].id
    async with client_for(ctx) as client:
        await signed_in(client, world, "member")
        for path in (f"/organisations/{org}/users", f"/organisations/{org}/audit"):
            refused = await client.get(path)
            assert refused.status_code == 403, path
            assert (
                "text/html" in refused.headers["content-type"] and "Traceback" not in refused.text
            )
        settings = (await client.get(f"/organisations/{org}")).text
        assert "Save settings" not in settings and ">Users<" not in settings

        # An admin may not set the PIN of the super-admin who outranks them.
        csrf = await signed_in(client, world, "admin")
        page = (await client.get(f"/organisations/{org}/users")).text
        assert "Change role of" not in page  # roles are the super-admin's
        canaries.add("5831")
        outranked = await client.post(
            f"/organisations/{org}/members/{target}/keypad-pin", data={"csrf": csrf, "pin": "5831"}
        )
        assert outranked.status_code == 403
        assert "outranks you" in outranked.text and "5831" not in outranked.text

        stranger_csrf = await signed_in(client, world, "stranger")
        hidden = await client.post(
            f"/organisations/{org}/members", data={"csrf": stranger_csrf, "email": "x@example.com"}
        )
        assert hidden.status_code in (403, 404) and "Traceback" not in hidden.text


async def test_the_audit_filters_narrow_the_records(ctx: Context) -> None:
    world = await build_world(ctx)
    assert world.org is not None
    org = world.org.id
    sa = world.actor("super_admin")
    await keypad_pins.set_pin(ctx, sa, org, world.users["member"].id, None)
    everything = await audit_records(ctx, sa, org)
    pins = await audit_records(ctx, sa, org, where=AuditFilter(action="keypad_pin.set"))
    members = await audit_records(ctx, sa, org, where=AuditFilter(action="member."))
    assert len(pins) == 1 and {r.action for r in members} == {"member.added"}
    assert len(everything) > len(members) > len(pins)
    by_admin = await audit_records(ctx, sa, org, where=AuditFilter(actor_email="ADMIN@example.com"))
    assert by_admin == []
    future = AuditFilter(since=ctx.clock.now().replace(year=ctx.clock.now().year + 1))
    assert await audit_records(ctx, sa, org, where=future) == []
    async with client_for(ctx) as client:
        await signed_in(client, world, "super_admin")
        all_page = (await client.get(f"/organisations/{org}/audit")).text
        only = (await client.get(f"/organisations/{org}/audit?action=keypad_pin.set")).text
        serial = world.chargers["wallbox"].serial
        charger = (await client.get(f"/organisations/{org}/audit?charger={serial}")).text
        bad = await client.get(f"/organisations/{org}/audit?since=yesterday")

    def cell(action: str) -> str:
        return f'<td data-label="Action">{action}</td>'

    assert cell("member.added") in all_page and cell("member.added") not in only
    assert only.count(cell("keypad_pin.set")) == 1 and only.count('data-label="Action"') == 1
    assert cell("member.added") not in charger
    async with ctx.db.read() as session:
        about_it = await session.scalars(
            select(AuditRecord.action).where(AuditRecord.charger_id == world.chargers["wallbox"].id)
        )
        actions = set(about_it.all())
    assert actions and all(cell(a) in charger for a in actions)
    assert bad.status_code == 422 and "YYYY-MM-DD" in bad.text


async def test_the_password_change_keeps_this_browser_signed_in(
    ctx: Context, canaries: Canaries
) -> None:
    world = await build_world(ctx)
    new = "violet harbour 9 compass"
    canaries.add(new)
    async with client_for(ctx) as client:
        csrf = await signed_in(client, world, "member")
        wrong = await client.post(
            "/account/password",
            data={"csrf": csrf, "current": "not it at all", "new": new, "again": new},
        )
        assert wrong.status_code == 401 and "current password is wrong" in wrong.text
        changed = await client.post(
            "/account/password", data={"csrf": csrf, "current": PASSWORD, "new": new, "again": new}
        )
        assert changed.status_code == 303 and new not in changed.headers["location"]
        after = await client.get(changed.headers["location"])
        assert after.status_code == 200 and "Your password is changed" in after.text
    email = world.users["member"].email
    await accounts.login(ctx, email, new, client="test")
    with pytest.raises(NotAuthenticated):
        await accounts.login(ctx, email, PASSWORD, client="test")


async def test_a_crowded_pin_space_is_announced(
    ctx: Context, monkeypatch: pytest.MonkeyPatch
) -> None:
    world = await build_world(ctx)
    assert world.org is not None
    users = f"/organisations/{world.org.id}/users"
    async with client_for(ctx) as client:
        await signed_in(client, world, "super_admin")
        assert 'id="crowding"' not in (await client.get(users)).text

        async def crowded(*_: object) -> PinSpaceCrowding:
            return PinSpaceCrowding(members_with_pin=150, digits=4)

        monkeypatch.setattr(keypad_pins, "crowding", crowded)
        page = (await client.get(users)).text
    warning = page[page.index('id="crowding"') :]
    assert "150 people hold one of 10000 possible 4-digit PINs (1.5 %)" in warning
    assert "Make the PINs longer" in warning


async def test_the_audit_log_pages_back_with_its_filters(
    ctx: Context, monkeypatch: pytest.MonkeyPatch
) -> None:
    world = await build_world(ctx)
    assert world.org is not None
    monkeypatch.setattr(organisation_pages, "AUDIT_PAGE", 2)
    audit = f"/organisations/{world.org.id}/audit?action=member."
    async with client_for(ctx) as client:
        await signed_in(client, world, "super_admin")
        first = (await client.get(audit)).text
        older = re.search(r'href="([^"]+before=\d+)">Older records', first)
        assert older, first[-2000:]
        second = (await client.get(older.group(1).replace("&amp;", "&"))).text
    assert first.count('data-label="Action">member.added') == 2
    assert second.count('data-label="Action">member.added') == 1  # 3 members were added
    assert "Older records" not in second and ">Newest</a>" in second


async def test_a_personal_keypad_pin_is_for_owners_and_shown_once(
    ctx: Context, canaries: Canaries
) -> None:
    world = await build_world(ctx)
    async with client_for(ctx) as client:
        csrf = await signed_in(client, world, "owner")
        answer = await client.post("/account/keypad-pin", data={"csrf": csrf, "generate": "yes"})
        assert answer.status_code == 200 and answer.headers["cache-control"] == "no-store"
        found = re.search(r'id="generated-pin"[^>]*>(\d{4})<', answer.text)
        assert found
        canaries.add(found.group(1))
        assert found.group(1) not in (await client.get("/account")).text
        deleted = await client.post("/account/keypad-pin/delete", data={"csrf": csrf})
        assert deleted.status_code == 303
        assert "Your keypad PIN is deleted" in (await client.get(deleted.headers["location"])).text

        csrf = await signed_in(client, world, "member")
        refused = await client.post("/account/keypad-pin", data={"csrf": csrf, "pin": "5831"})
        assert refused.status_code == 403 and "you own no charger" in refused.text


async def test_the_api_takes_the_same_audit_filters(ctx: Context) -> None:
    world = await build_world(ctx)
    assert world.org is not None
    url = f"/api/organisations/{world.org.id}/audit"
    async with client_for(ctx) as client:
        headers = await world.headers("super_admin")
        everything = (await client.get(url, headers=headers)).json()
        members = (await client.get(url, params={"action": "member."}, headers=headers)).json()
        by = {"by": world.users["super_admin"].email, "action": "member.added"}
        mine = (await client.get(url, params=by, headers=headers)).json()
        naive = await client.get(url, params={"since": "2026-01-01T00:00:00"}, headers=headers)
    assert len(everything) > len(members) == len(mine) == 3
    assert {r["action"] for r in members} == {"member.added"}
    assert naive.status_code == 422
