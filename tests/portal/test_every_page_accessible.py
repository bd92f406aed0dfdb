"""axe-core on every page of the portal, as every kind of person sees it: each GET route of
``app.routes`` (so a new page is checked without being listed here) is opened in Chromium
at desktop and phone size, served by the application in this process (Playwright hands each
request to it), and must show no serious or critical violation. Error pages (a charger one
may not see) are checked too."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from playwright.async_api import Browser, Route, async_playwright

from evaccess.server.context import Context
from evaccess.server.portal.web import SESSION_COOKIE
from tests.portal.conftest import AXE, CHROMIUM_ARGS, DESKTOP, PHONE, chromium_path
from tests.portal.test_portal_routes import fill, portal_routes
from tests.server.support import World, build_world, client_for

pytestmark = pytest.mark.timeout(300)

PEOPLE = ("owner", "super_admin", "invited", "stranger")
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
    axe = AXE.read_text()
    pages = sorted({fill(path, world) for method, path in portal_routes() if method == "GET"})
    pages.append("/no/such/page")
    found: dict[str, object] = {}
    async with client_for(ctx) as client:

        async def serve(route: Route) -> None:
            request = route.request
            answer = await client.request(
                request.method,
                request.url,
                headers={k: v for k, v in request.headers.items() if k != "host"},
                content=request.post_data_buffer,
            )
            await route.fulfill(
                status=answer.status_code,
                headers=dict(answer.headers),
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
