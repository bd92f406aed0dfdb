"""axe-core on every page of the portal, as every kind of person sees it: each GET route of
``app.routes`` (so a new page is checked without being listed here) is opened in Chromium
at desktop and phone size, served by the application in this process (Playwright hands each
request to it), and must show no serious or critical violation. Error pages (a charger one
may not see) are checked too. An open transfer and a claim are on the ownership pages, and a
support agent walks them as well (the claim's document is a download, not a page: only its
error page is walked)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from urllib.parse import urljoin

import pytest
from playwright.async_api import Browser, Route, async_playwright

from evaccess.domain.access import StaffRole
from evaccess.server.context import Context
from evaccess.server.portal.web import SESSION_COOKIE
from evaccess.server.services import accounts, claims, transfers
from tests.portal.conftest import AXE, CHROMIUM_ARGS, DESKTOP, PHONE, chromium_path
from tests.portal.test_portal_routes import fill, portal_routes
from tests.server.support import PASSWORD, World, build_world, client_for

pytestmark = pytest.mark.timeout(300)

PEOPLE = ("owner", "super_admin", "invited", "stranger", "support")
PDF = b"%PDF-1.7\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF\n"


async def ownership_ids(ctx: Context, world: World) -> dict[str, str]:
    """A support agent; the owner offers a charger to the invited person; the stranger
    claims another one: ``transfer_id`` and ``claim_id`` for ``fill``."""
    agent = await accounts.create_user(ctx, "support@example.com", PASSWORD)
    world.users["support"] = await accounts.set_staff_role(ctx, agent.email, StaffRole.SUPPORT)
    offered = await transfers.start_transfer(
        ctx, world.actor("owner"), world.chargers["zaptec"].id, world.users["invited"].email
    )
    claimed = await claims.file_claim(
        ctx,
        world.actor("stranger"),
        world.chargers["wallbox"].serial,
        installation_address="12 Harbour Lane, Bristol",
        installer_name="Sparks & Sons",
        document=PDF,
    )
    return {"transfer_id": offered.id, "claim_id": claimed.id}


AXE_RUN = (
    "async () => (await axe.run(document, {resultTypes: ['violations']})).violations"
    ".filter(v => v.impact === 'serious' || v.impact === 'critical')"
    ".map(v => ({id: v.id, help: v.help, nodes: v.nodes.map(n => n.target.join(' '))}))"
)


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as p:
        browser = await p.chromium.launch(
            executable_path=chromium_path(), headless=True, args=CHROMIUM_ARGS
        )
        yield browser
        await browser.close()


async def test_every_page_has_no_serious_accessibility_violation(
    ctx: Context, browser: Browser
) -> None:
    world: World = await build_world(ctx)
    ids = await ownership_ids(ctx, world)
    axe = AXE.read_text()
    pages = sorted(
        {
            fill(path, world) if path.endswith("/document") else fill(path, world, **ids)
            for method, path in portal_routes()
            if method == "GET"
        }
    )
    pages.append("/no/such/page")
    found: dict[str, object] = {}
    async with client_for(ctx) as client:

        async def serve(route: Route) -> None:
            # Chromium does not route the target of a fulfilled redirect (it would go to
            # the network): redirects are followed here, with the browser's cookies.
            request = route.request
            method, url, content = request.method, request.url, request.post_data_buffer
            headers = {k: v for k, v in request.headers.items() if k != "host"}
            for _ in range(5):
                answer = await client.request(method, url, headers=headers, content=content)
                if not answer.is_redirect:
                    break
                method, url, content = "GET", urljoin(url, answer.headers["location"]), None
            await route.fulfill(
                status=answer.status_code,
                headers={k: v for k, v in answer.headers.items() if k != "location"},
                body=answer.content,
            )

        for person in (None, *PEOPLE):
            context = await browser.new_context(viewport=DESKTOP)
            await context.route("http://testserver/**", serve)
            if person is not None:
                token = await world.token(person)
                await context.add_cookies(
                    [{"name": SESSION_COOKIE, "value": token, "url": "http://testserver"}]
                )
            page = await context.new_page()
            for path in pages if person else ["/login", "/no/such/page"]:
                await page.goto(f"http://testserver{path}")
                for viewport in (DESKTOP, PHONE):
                    await page.set_viewport_size(viewport)
                    await page.evaluate(axe)
                    violations = await page.evaluate(AXE_RUN)
                    if violations:
                        found[f"{person} {path} {viewport['width']}"] = violations
            await context.close()
    assert not found, found
