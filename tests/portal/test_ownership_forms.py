"""The ownership and support forms in process (both databases), for what a browser test
does not reach: a purchase agreement too large or not a PDF, PNG or JPEG is refused with a
readable page and nothing is filed; the document is served to support agents only, as an
attachment that is never cached or sniffed; releasing needs its confirmation, and only the
owner is offered it."""

from __future__ import annotations

import httpx
import pytest

from evaccess.domain.access import StaffRole
from evaccess.server.context import Context
from evaccess.server.services import accounts, claims
from evaccess.server.services.relations import Actor
from tests.portal.test_portal_routes import signed_in
from tests.server.support import PASSWORD, World, build_world, client_for

PDF = b"%PDF-1.7\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF\n"


def _claim_form(csrf: str, serial: str) -> dict[str, str]:
    return {
        "csrf": csrf,
        "serial": serial,
        "installation_address": "12 Harbour Lane, Bristol",
        "installer_name": "Sparks & Sons",
    }


def _support(world: World) -> Actor:
    user = world.users["support"]
    return Actor(user_id=user.id, email=user.email, staff_role=StaffRole.SUPPORT)


async def _agent(ctx: Context, world: World) -> None:
    agent = await accounts.create_user(ctx, "support@example.com", PASSWORD)
    world.users["support"] = await accounts.set_staff_role(ctx, agent.email, StaffRole.SUPPORT)


async def _file(client: httpx.AsyncClient, csrf: str, world: World, data: bytes) -> httpx.Response:
    return await client.post(
        "/ownership/claims",
        data=_claim_form(csrf, world.chargers["wallbox"].serial),
        files={"document": ("agreement.pdf", data, "application/pdf")},
    )


@pytest.mark.settings(claim_document_max_mb=0.5)
async def test_a_document_too_large_or_of_another_kind_files_nothing(ctx: Context) -> None:
    world = await build_world(ctx)
    await _agent(ctx, world)
    async with client_for(ctx) as client:
        csrf = await signed_in(client, world, "stranger")
        too_large = await _file(client, csrf, world, PDF + b"0" * (512 * 1024))
        assert too_large.status_code == 422
        assert "larger than 0.5 MB" in too_large.text
        disguised = await _file(client, csrf, world, b"<html><script>alert(1)</script>")
        assert disguised.status_code == 422
        assert "must be a PDF, PNG or JPEG" in disguised.text
        assert "<script>alert" not in disguised.text
        missing = await client.post(
            "/ownership/claims", data=_claim_form(csrf, world.chargers["wallbox"].serial)
        )
        assert missing.status_code == 422 and "Please check document" in missing.text
    assert await claims.queue(ctx, _support(world)) == []


async def test_the_document_goes_to_support_only_as_an_uncached_attachment(
    ctx: Context,
) -> None:
    world = await build_world(ctx)
    await _agent(ctx, world)
    async with client_for(ctx) as client:
        csrf = await signed_in(client, world, "stranger")
        filed = await _file(client, csrf, world, PDF)
        assert filed.status_code == 303 and filed.headers["location"].startswith("/ownership?done=")
        [claim] = await claims.queue(ctx, _support(world))
        url = f"/support/claims/{claim.id}/document"
        for name in ("stranger", "owner"):  # the claimant and the owner: support only
            await signed_in(client, world, name)
            refused = await client.get(url)
            assert refused.status_code == 403 and PDF not in refused.content
        await signed_in(client, world, "support")
        served = await client.get(url)
        assert served.status_code == 200 and served.content == PDF
        assert served.headers["content-type"] == "application/pdf"
        assert (
            served.headers["content-disposition"] == f'attachment; filename="claim-{claim.id}.pdf"'
        )
        assert served.headers["cache-control"] == "no-store"
        assert served.headers["x-content-type-options"] == "nosniff"
        assert "sandbox" in served.headers["content-security-policy"]
        page = await client.get(f"/support/claims/{claim.id}")
        assert page.status_code == 200 and "12 Harbour Lane, Bristol" in page.text
        assert "may object until" in page.text and "Approve" in page.text


async def test_releasing_needs_the_confirmation_and_the_owner(ctx: Context) -> None:
    world = await build_world(ctx)
    charger = world.chargers["wallbox"]
    async with client_for(ctx) as client:
        csrf = await signed_in(client, world, "invited")  # may use the charger, not give it up
        assert (await client.get(f"/ownership/release/{charger.id}")).status_code == 403
        assert (
            await client.post(
                f"/ownership/release/{charger.id}", data={"csrf": csrf, "confirm": "yes"}
            )
        ).status_code == 403
        csrf = await signed_in(client, world, "owner")
        page = await client.get(f"/ownership/release/{charger.id}")
        assert page.status_code == 200 and f"Release charger {charger.serial}?" in page.text
        unconfirmed = await client.post(f"/ownership/release/{charger.id}", data={"csrf": csrf})
        assert unconfirmed.status_code == 422 and "Tick the box" in unconfirmed.text
        assert charger.serial in (await client.get("/chargers")).text
        released = await client.post(
            f"/ownership/release/{charger.id}", data={"csrf": csrf, "confirm": "yes"}
        )
        assert released.status_code == 303
        assert charger.serial not in (await client.get("/chargers")).text
