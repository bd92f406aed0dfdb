"""Claims through support, at the service level: the evidence is checked and kept outside
the rows, two different agents approve, the owner at filing is told and may object within
the window, the handover is the transfer's, at most 3 claims per charger in 30 days, every
step audited, and support never meets a PIN."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from sqlalchemy import select

from evaccess.domain.access import StaffRole
from evaccess.domain.claim import OBJECTION_WINDOW, ClaimParty, ClaimState
from evaccess.domain.errors import Conflict, InvalidInput, NotFound, PermissionDenied, Throttled
from evaccess.server.context import Context
from evaccess.server.db.models import AuditRecord, Notification, OwnershipClaim
from evaccess.server.services import accounts, bluetooth_pins, claims, transfers
from evaccess.server.services.relations import Actor
from tests.conftest import ManualClock
from tests.server.support import PASSWORD, World, build_world, client_for, confirm_pin_push
from tests.server.test_ownership_transfer import active_grants, cid, commands, owner_of

PDF = b"%PDF-1.7\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF\n"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


@pytest.fixture
async def world(ctx: Context) -> World:
    world = await build_world(ctx)
    for name in ("agent_a", "agent_b"):
        world.users[name] = await accounts.create_user(ctx, f"{name}@support.example", PASSWORD)
        await accounts.set_staff_role(ctx, f"{name}@support.example", StaffRole.SUPPORT)
    return world


def agent(world: World, name: str) -> Actor:
    user = world.users[name]
    return Actor(user_id=user.id, email=user.email, staff_role=StaffRole.SUPPORT)


async def file(world: World, key: str = "wallbox", person: str = "stranger") -> claims.ClaimView:
    return await claims.file_claim(
        world.ctx,
        world.actor(person),
        world.chargers[key].serial,
        installation_address="12 Harbour Lane, Bristol",
        installer_name="Sparks & Sons",
        document=PDF,
    )


async def notified(ctx: Context, user_id: str) -> list[str]:
    async with ctx.db.read() as session:
        rows = await session.scalars(
            select(Notification.subject)
            .where(Notification.user_id == user_id)
            .order_by(Notification.created_at)
        )
        return list(rows.all())


async def audited(ctx: Context) -> list[str]:
    async with ctx.db.read() as session:
        rows = await session.scalars(select(AuditRecord.action).order_by(AuditRecord.seq))
        return [a for a in rows.all() if a.startswith(("claim.", "ownership."))]


async def test_two_agents_approve_and_after_the_window_the_claimant_owns_the_charger(
    ctx: Context, world: World, clock: ManualClock
) -> None:
    wallbox = cid(world, "wallbox")
    await confirm_pin_push(ctx, "WB-100001")
    old_pin = (await bluetooth_pins.reveal(ctx, world.actor("owner"), wallbox)).pin
    claim = await file(world)
    assert (claim.state, claim.role) == (ClaimState.FILED, ClaimParty.CLAIMANT)
    assert claim.objection_until == ctx.clock.now() + OBJECTION_WINDOW
    assert await notified(ctx, world.users["owner"].id) == ["Someone claims your charger WB-100001"]
    [seen] = await claims.list_claims(ctx, world.actor("owner"))
    assert (seen.id, seen.role) == (claim.id, ClaimParty.OWNER)

    first = await claims.approve(ctx, agent(world, "agent_a"), claim.id)
    assert first.claim.state is ClaimState.APPROVED_ONCE and first.handover is None
    with pytest.raises(PermissionDenied) as caught:
        await claims.approve(ctx, agent(world, "agent_a"), claim.id)
    assert caught.value.code == "claim_same_agent"
    second = await claims.approve(ctx, agent(world, "agent_b"), claim.id)
    assert second.claim.state is ClaimState.APPROVED and second.handover is None
    assert (second.claim.first_approver_email, second.claim.second_approver_email) == (
        "agent_a@support.example",
        "agent_b@support.example",
    )

    assert await claims.complete_due(ctx) == 0  # the owner's window is still open
    assert await owner_of(ctx, wallbox) == world.users["owner"].id
    clock.advance(OBJECTION_WINDOW.total_seconds())
    assert await claims.complete_due(ctx) == 1

    stranger = world.users["stranger"].id
    assert await owner_of(ctx, wallbox) == stranger
    assert await active_grants(ctx, wallbox) == [(stranger, "owner")]
    for name in ("owner", "invited", "service"):
        with pytest.raises(NotFound):
            await bluetooth_pins.reveal(ctx, world.actor(name), wallbox)
    assert "revoke_credentials" in [c.kind for c in await commands(ctx, wallbox)]
    await confirm_pin_push(ctx, "WB-100001")
    assert (await bluetooth_pins.reveal(ctx, world.actor("stranger"), wallbox)).pin != old_pin
    [mine] = await claims.list_claims(ctx, world.actor("stranger"))
    assert mine.state is ClaimState.COMPLETED
    [theirs] = await claims.list_claims(ctx, world.actor("owner"))  # what ended their ownership
    assert (theirs.state, theirs.role) == (ClaimState.COMPLETED, ClaimParty.OWNER)
    assert "You own charger WB-100001 now" in await notified(ctx, stranger)
    assert "Charger WB-100001 has a new owner" in await notified(ctx, world.users["owner"].id)
    assert await audited(ctx) == [
        "claim.filed",
        "claim.approved",
        "claim.approved",
        "ownership.handed_over",
    ]
    async with ctx.db.read() as session:
        handed = await session.scalar(
            select(AuditRecord).where(AuditRecord.action == "ownership.handed_over")
        )
    assert handed is not None and json.loads(handed.details)["reason"] == "claim"
    assert handed.actor_id == world.users["agent_b"].id


async def test_the_owner_objects_and_the_claim_stops_for_good(
    ctx: Context, world: World, clock: ManualClock
) -> None:
    claim = await file(world)
    await claims.approve(ctx, agent(world, "agent_a"), claim.id)
    await claims.approve(ctx, agent(world, "agent_b"), claim.id)
    with pytest.raises(NotFound):  # only the owner at filing may object
        await claims.object_to(ctx, world.actor("invited"), claim.id)
    clock.advance(OBJECTION_WINDOW.total_seconds() - 60)
    objected = await claims.object_to(ctx, world.actor("owner"), claim.id)
    assert objected.state is ClaimState.OBJECTED
    clock.advance(3600)
    assert await claims.complete_due(ctx) == 0
    assert await owner_of(ctx, cid(world, "wallbox")) == world.users["owner"].id
    assert "Your claim of charger WB-100001 was stopped" in await notified(
        ctx, world.users["stranger"].id
    )
    with pytest.raises(Conflict) as caught:
        await claims.withdraw(ctx, world.actor("stranger"), claim.id)
    assert caught.value.code == "claim_objected"


async def test_the_window_closes_and_a_late_objection_is_refused(
    ctx: Context, world: World, clock: ManualClock
) -> None:
    claim = await file(world)
    clock.advance(OBJECTION_WINDOW.total_seconds())
    with pytest.raises(Conflict) as caught:
        await claims.object_to(ctx, world.actor("owner"), claim.id)
    assert caught.value.code == "claim_window_closed"


async def test_a_charger_without_owner_is_handed_over_at_the_second_approval(
    ctx: Context, world: World
) -> None:
    await transfers.release(ctx, world.actor("owner"), cid(world, "wallbox"))
    claim = await file(world)
    assert claim.objection_until is None
    await claims.approve(ctx, agent(world, "agent_a"), claim.id)
    decided = await claims.approve(ctx, agent(world, "agent_b"), claim.id)
    assert decided.claim.state is ClaimState.COMPLETED
    assert decided.handover is not None
    assert decided.handover.new_owner_id == world.users["stranger"].id
    assert await owner_of(ctx, cid(world, "wallbox")) == world.users["stranger"].id


async def test_a_transfer_meanwhile_supersedes_the_claim(ctx: Context, world: World) -> None:
    claim = await file(world)
    await claims.approve(ctx, agent(world, "agent_a"), claim.id)
    started = await transfers.start_transfer(
        ctx, world.actor("owner"), cid(world, "wallbox"), world.users["member"].email
    )
    await transfers.accept_transfer(ctx, world.actor("member"), started.id)
    [view] = await claims.list_claims(ctx, world.actor("stranger"))
    assert view.state is ClaimState.SUPERSEDED
    with pytest.raises(Conflict) as caught:
        await claims.approve(ctx, agent(world, "agent_b"), claim.id)
    assert caught.value.code == "claim_superseded"
    assert await owner_of(ctx, cid(world, "wallbox")) == world.users["member"].id


async def test_support_rejects_with_a_reason_the_claimant_sees(ctx: Context, world: World) -> None:
    claim = await file(world)
    rejected = await claims.reject(
        ctx, agent(world, "agent_a"), claim.id, "The agreement names another address."
    )
    assert rejected.state is ClaimState.REJECTED
    [view] = await claims.list_claims(ctx, world.actor("stranger"))
    assert view.reason == "The agreement names another address."
    [owner_view] = await claims.list_claims(ctx, world.actor("owner"))
    assert owner_view.reason is None  # support's reason is for the claimant


async def test_at_most_three_claims_per_charger_in_30_days(
    ctx: Context, world: World, clock: ManualClock
) -> None:
    for person in ("stranger", "member", "invited"):
        view = await file(world, person=person)
        if person == "stranger":
            with pytest.raises(Conflict) as pending:
                await file(world, person=person)
            assert pending.value.code == "claim_pending"
            await claims.withdraw(ctx, world.actor(person), view.id)
    with pytest.raises(Throttled) as caught:
        await file(world, person="admin")
    assert caught.value.code == "claim_limit"
    clock.advance(timedelta(days=30).total_seconds() + 1)
    await file(world, person="admin")


async def test_the_owner_cannot_claim_their_own_charger(ctx: Context, world: World) -> None:
    with pytest.raises(Conflict) as caught:
        await file(world, person="owner")
    assert caught.value.code == "claim_own_charger"
    with pytest.raises(NotFound):
        await claims.file_claim(
            ctx,
            world.actor("stranger"),
            "NO-SUCH-1",
            installation_address="x",
            installer_name="y",
            document=PDF,
        )


@pytest.mark.parametrize(
    ("document", "code"),
    [
        (b"", "document_missing"),
        (b"<html><script>alert(1)</script></html>", "document_type"),
        (b"MZ\x90\x00 an executable", "document_type"),
    ],
)
async def test_the_document_is_checked_by_its_content(
    ctx: Context, world: World, document: bytes, code: str
) -> None:
    with pytest.raises(InvalidInput) as caught:
        await claims.file_claim(
            ctx,
            world.actor("stranger"),
            "WB-100001",
            installation_address="12 Harbour Lane",
            installer_name="Sparks",
            document=document,
        )
    assert caught.value.code == code


@pytest.mark.settings(claim_document_max_mb=0.001)
async def test_a_document_over_the_size_limit_is_refused_and_nothing_is_kept(
    ctx: Context, world: World
) -> None:
    with pytest.raises(InvalidInput) as caught:
        await claims.file_claim(
            ctx,
            world.actor("stranger"),
            "WB-100001",
            installation_address="12 Harbour Lane",
            installer_name="Sparks",
            document=PNG + b"\x00" * 2048,
        )
    assert caught.value.code == "document_too_large"
    assert ctx.documents is not None
    assert not ctx.documents.directory.exists() or not any(ctx.documents.directory.iterdir())


async def test_the_document_lives_outside_the_rows_and_only_support_reads_it(
    ctx: Context, world: World
) -> None:
    claim = await file(world)
    assert ctx.documents is not None
    [stored] = list(ctx.documents.directory.iterdir())
    assert stored.read_bytes() == PDF and stored.stat().st_mode & 0o077 == 0
    async with ctx.db.read() as session:
        row = await session.get_one(OwnershipClaim, claim.id)
    assert row.document_key == stored.name and row.document_size == len(PDF)
    for outsider in (world.actor("stranger"), world.actor("owner"), world.actor("root")):
        with pytest.raises(PermissionDenied):
            await claims.document(ctx, outsider, claim.id)
        with pytest.raises(PermissionDenied):
            await claims.queue(ctx, outsider)
    data, kind = await claims.document(ctx, agent(world, "agent_a"), claim.id)
    assert (data, kind) == (PDF, "application/pdf")
    assert "claim.document_read" in await audited(ctx)


async def test_support_reviews_without_meeting_a_pin(ctx: Context, world: World) -> None:
    await confirm_pin_push(ctx, "WB-100001")
    pin = (await bluetooth_pins.reveal(ctx, world.actor("owner"), cid(world, "wallbox"))).pin
    claim = await file(world)
    [queued] = await claims.queue(ctx, agent(world, "agent_a"))
    assert queued.id == claim.id and queued.charger_owned
    assert queued.claimant_email == "stranger@example.com"
    assert pin not in repr(queued)
    with pytest.raises(NotFound):  # reviewing gives no basis on the charger
        await bluetooth_pins.reveal(ctx, agent(world, "agent_a"), cid(world, "wallbox"))
    decided = await claims.approve(ctx, agent(world, "agent_a"), claim.id)
    assert pin not in repr(decided)


# --- through the API ---------------------------------------------------------------------------


async def test_a_claim_through_the_api_from_upload_to_handover(
    ctx: Context, world: World, clock: ManualClock
) -> None:
    async with client_for(ctx) as client:
        stranger = await world.headers("stranger")
        form = {
            "serial": "WB-100001",
            "installation_address": "12 Harbour Lane, Bristol",
            "installer_name": "Sparks & Sons",
        }
        refused = await client.post(
            "/api/claims",
            data=form,
            files={"document": ("agreement.pdf", b"GIF89a not a pdf", "application/pdf")},
            headers=stranger,
        )
        assert refused.status_code == 422
        assert refused.headers["content-type"].startswith("application/problem+json")
        assert refused.json()["code"] == "document_type"
        filed = await client.post(
            "/api/claims",
            data=form,
            files={"document": ("agreement.pdf", PDF, "application/pdf")},
            headers=stranger,
        )
        assert filed.status_code == 201, filed.text
        claim_id = filed.json()["id"]
        assert filed.json()["state"] == "filed"

        forbidden = await client.get(
            f"/api/support/claims/{claim_id}/document", headers=await world.headers("owner")
        )
        assert forbidden.status_code == 403
        for name in ("agent_a", "agent_b"):
            headers = await world.headers(name)
            got = await client.get(f"/api/support/claims/{claim_id}/document", headers=headers)
            assert got.content == PDF
            assert got.headers["content-type"] == "application/pdf"
            assert got.headers["cache-control"] == "no-store"
            assert got.headers["content-disposition"].startswith("attachment")
            decided = await client.post(f"/api/support/claims/{claim_id}/approve", headers=headers)
            assert decided.status_code == 200, decided.text
        assert decided.json()["claim"]["state"] == "approved"
        again = await client.post(
            f"/api/support/claims/{claim_id}/approve", headers=await world.headers("agent_a")
        )
        assert (again.status_code, again.json()["code"]) == (409, "claim_approved")
        clock.advance(OBJECTION_WINDOW.total_seconds())
        assert await claims.complete_due(ctx) == 1
        mine = await client.get("/api/claims", headers=stranger)
        assert [c["state"] for c in mine.json()] == ["completed"]
        charger = await client.get("/api/chargers?serial=WB-100001", headers=stranger)
        assert charger.status_code == 200 and charger.json()


async def test_the_fourth_claim_in_30_days_is_a_429_problem(ctx: Context, world: World) -> None:
    async with client_for(ctx) as client:
        codes = []
        for person in ("stranger", "member", "invited", "admin"):
            response = await client.post(
                "/api/claims",
                data={"serial": "WB-100001", "installation_address": "x", "installer_name": "y"},
                files={"document": ("a.png", PNG, "image/png")},
                headers=await world.headers(person),
            )
            codes.append((response.status_code, response.json().get("code")))
    assert codes[:3] == [(201, None)] * 3
    assert codes[3] == (429, "claim_limit")
