"""Browser tests of the portal: the real server (``tests/e2e/conftest.py``), Debian's
Chromium driven by Playwright, axe-core from npm injected into every page checked.

Chromium and axe-core are installed by ``make test`` (``make browser``); missing, these
tests fail with the command that installs them rather than skip."""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, sync_playwright

from tests.e2e.conftest import Cli, Server, cli, server, succeeded  # noqa: F401

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "portal"
AXE = ROOT / "node_modules" / "axe-core" / "axe.min.js"
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]


def chromium_path() -> str:
    found = os.environ.get("EVACCESS_CHROMIUM") or shutil.which("chromium")
    if not found:
        pytest.fail("Chromium is missing: `make browser` installs it (apt-get install chromium)")
    return found


@pytest.fixture
def playwright() -> Iterator[Playwright]:
    # Per test, not per session: Playwright's sync API runs an event loop of its own in this
    # thread while it is started, and every asyncio test after it would find a loop running.
    with sync_playwright() as p:
        yield p


@pytest.fixture
def browser(playwright: Playwright) -> Iterator[Browser]:
    browser = playwright.chromium.launch(
        executable_path=chromium_path(), headless=True, args=CHROMIUM_ARGS
    )
    yield browser
    browser.close()


@dataclass
class Portal:
    """The portal of one test's server, as people reach it: each ``person`` is a browser
    context of their own (cookies apart), logged in through the login page."""

    server: Server
    browser: Browser
    name: str
    contexts: list[BrowserContext] = field(default_factory=list)

    def new_page(self) -> Page:
        context = self.browser.new_context(viewport=DESKTOP, base_url=self.server.url)
        context.set_default_timeout(15_000)
        self.contexts.append(context)
        return context.new_page()

    def person(self, email: str, password: str) -> Page:
        page = self.new_page()
        page.goto("/login")
        page.get_by_label("Email").fill(email)
        page.get_by_label("Password").fill(password)
        page.get_by_role("button", name="Log in").click()
        page.wait_for_url(re.compile(r"/chargers$"))
        return page

    def check(self, page: Page, shot: str | None = None) -> None:
        """axe-core finds no serious or critical violation on the page (desktop and phone
        sizes); with ``shot``, both sizes are saved as screenshots."""
        for size, viewport in (("desktop", DESKTOP), ("phone", PHONE)):
            page.set_viewport_size(viewport)
            assert_accessible(page)
            if shot:
                ARTIFACTS.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=ARTIFACTS / f"{self.name}-{shot}-{size}.png", full_page=True)
        page.set_viewport_size(DESKTOP)

    def close(self) -> None:
        for context in self.contexts:
            context.close()


def assert_accessible(page: Page) -> None:
    if not AXE.exists():
        pytest.fail("axe-core is missing: `make browser` installs it (npm ci)")
    # Evaluated through the DevTools protocol, so the page's CSP (no inline or foreign
    # script) does not apply to it, and the page itself stays as strict as in production.
    page.evaluate(AXE.read_text())
    result = page.evaluate(
        "async () => (await axe.run(document, {resultTypes: ['violations']})).violations"
        ".map(v => ({id: v.id, impact: v.impact, help: v.help,"
        " nodes: v.nodes.map(n => n.target.join(' ')).slice(0, 5)}))"
    )
    serious = [v for v in result if v["impact"] in ("serious", "critical")]
    assert not serious, f"{page.url}: " + json.dumps(serious, indent=1)


@pytest.fixture
def portal(
    server: Server,  # noqa: F811
    browser: Browser,
    request: pytest.FixtureRequest,
) -> Iterator[Portal]:
    portal = Portal(server=server, browser=browser, name=request.node.name.removeprefix("test_"))
    yield portal
    portal.close()


def make_user(cli: Cli, email: str, password: str) -> None:  # noqa: F811
    succeeded(cli("admin", "create-user", email, "--password-stdin", stdin=f"{password}\n"))
