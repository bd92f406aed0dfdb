"""Every page of the portal, in process (both databases): anonymous visitors are sent to
the login page and back; a POST without this session's CSRF value changes nothing and gets
a readable page; every answer carries the strict headers; a charger another organisation
owns looks exactly like one that does not exist; unknown paths get a page, the API's a
problem document. New pages are covered by walking ``app.routes``: nothing to list here."""

from __future__ import annotations

import re
from collections.abc import Iterator
from urllib.parse import quote

import httpx
from starlette.routing import BaseRoute

from evaccess.server.api.app import create_app
from evaccess.server.context import Context
from evaccess.server.portal.web import CSP, SESSION_COOKIE, PortalRoute, csrf_for
from evaccess.server.settings import Settings
from tests.conftest import Canaries
from tests.server.support import World, build_world, client_for

PUBLIC = {("GET", "/login"), ("POST", "/login"), ("GET", "/")}
MISSING_ID = "00000000-0000-0000-0000-000000000000"


def _flat(routes: list[BaseRoute]) -> Iterator[tuple[BaseRoute, str]]:
    """Every route with its full path. FastAPI 0.165 keeps an included router as one
    ``_IncludedRouter`` entry of ``app.routes``: its routes are its route contexts."""
    for route in routes:
        contexts = getattr(route, "effective_route_contexts", None)
        if contexts is None:
            yield route, getattr(route, "path", "")
            continue
        for context in contexts():
            yield context.original_route, context.path or context.original_route.path


def portal_routes(routes: list[BaseRoute] | None = None) -> Iterator[tuple[str, str]]:
    for route, path in _flat(routes if routes is not None else create_app(Settings()).routes):
        if isinstance(route, PortalRoute):
            for method in sorted(route.methods - {"HEAD"}):
                yield method, path


def test_the_walk_finds_the_portal_pages() -> None:
    """The tests below walk these: an empty walk would pass them all."""
    found = set(portal_routes())
    for expected in (
        ("GET", "/login"),
        ("GET", "/chargers/{charger_id}"),
        ("POST", "/chargers/{charger_id}/reveal"),
        ("GET", "/ownership"),
        ("POST", "/ownership/transfers/{transfer_id}/accept"),
        ("POST", "/ownership/claims"),
        ("GET", "/support/claims/{claim_id}"),
        ("GET", "/support/claims/{claim_id}/document"),
        ("POST", "/support/claims/{claim_id}/approve"),
    ):
        assert expected in found, expected
    assert not any(path.startswith("/api/") for _, path in found)


def fill(path: str, world: World, **ids: str) -> str:
    """``path`` with the world's ids; ``ids`` (a ``transfer_id``, a ``claim_id``) where a
    test made them, else the id of nothing."""
    charger = world.chargers["wallbox"].id
    assert world.org is not None
    values = {
        "charger_id": charger,
        "org_id": world.org.id,
        "organisation_id": world.org.id,
        "user_id": world.users["member"].id,
        # Ids of rows (grants, invitations, transfers, claims): a missing one is enough for
        # the walk, since each route checks the session, the CSRF value and the charger first.
        **ids,
    }
    return re.sub(r"\{(\w+)\}", lambda m: values.get(m.group(1), MISSING_ID), path)


async def signed_in(client: httpx.AsyncClient, world: World, name: str) -> str:
    token = await world.token(name)
    client.cookies.set(SESSION_COOKIE, token)
    return csrf_for(token)


async def test_anonymous_visitors_are_sent_to_the_login_page(ctx: Context) -> None:
    world = await build_world(ctx)
    async with client_for(ctx) as client:
        for method, path in portal_routes():
            if (method, path) in PUBLIC or path == "/logout":
                continue
            url = fill(path, world)
            answer = await client.request(method, url, data={"csrf": "x"})
            assert answer.status_code == 303, (method, path, answer.text[:200])
            expected = "/login?next=" + (quote(url) if method == "GET" else "/")
            assert answer.headers["location"] == expected, (method, path)


async def test_a_post_without_the_csrf_value_changes_nothing(
    ctx: Context, canaries: Canaries
) -> None:
    world = await build_world(ctx)
    async with client_for(ctx) as client:
        await signed_in(client, world, "owner")
        canaries.add(client.cookies[SESSION_COOKIE])
        for method, path in portal_routes():
            if method != "POST" or (method, path) in PUBLIC:
                continue
            for data in ({}, {"csrf": "0" * 64}):
                answer = await client.post(fill(path, world), data=data)
                assert answer.status_code == 403, (path, answer.status_code, answer.text[:300])
                assert "text/html" in answer.headers["content-type"]
                assert "came from another site" in answer.text, path
        # The owner's session still works: a refused form logged nobody out.
        assert (await client.get("/chargers")).status_code == 200


async def test_a_cross_site_post_is_refused_even_with_the_csrf_value(ctx: Context) -> None:
    world = await build_world(ctx)
    async with client_for(ctx) as client:
        csrf = await signed_in(client, world, "owner")
        url = fill("/chargers/{charger_id}/bluetooth/reenable-pairing", world)
        for headers in ({"Origin": "https://evil.example"}, {"Sec-Fetch-Site": "cross-site"}):
            answer = await client.post(url, data={"csrf": csrf}, headers=headers)
            assert answer.status_code == 403, headers
        ok = await client.post(url, data={"csrf": csrf}, headers={"Origin": "http://testserver"})
        assert ok.status_code == 303


async def test_every_page_has_the_strict_headers(ctx: Context) -> None:
    world = await build_world(ctx)
    async with client_for(ctx) as client:
        await signed_in(client, world, "owner")
        for method, path in portal_routes():
            if method != "GET":
                continue
            answer = await client.get(fill(path, world))
            assert answer.status_code in (200, 303, 403, 404), (path, answer.status_code)
            assert answer.headers["content-security-policy"] == CSP, path
            assert "frame-ancestors 'none'" in CSP and "unsafe-inline" not in CSP
            assert answer.headers["cache-control"] == "no-store", path
            assert answer.headers["x-frame-options"] == "DENY", path
            if answer.status_code == 200:
                assert "<script>" not in answer.text and " style=" not in answer.text, path


async def test_a_charger_of_another_organisation_looks_missing(ctx: Context) -> None:
    world = await build_world(ctx)
    async with client_for(ctx) as client:
        await signed_in(client, world, "stranger")
        for method, path in portal_routes():
            if method != "GET" or "{charger_id}" not in path:
                continue
            hidden = await client.get(fill(path, world))
            missing = await client.get(path.replace("{charger_id}", MISSING_ID))
            assert hidden.status_code == missing.status_code == 404, path
            assert hidden.text == missing.text, path


async def test_unknown_paths_get_a_page_and_the_api_a_problem(ctx: Context) -> None:
    async with client_for(ctx) as client:
        page = await client.get("/no/such/page")
        assert page.status_code == 404 and "text/html" in page.headers["content-type"]
        assert "There is no such page" in page.text
        problem = await client.get("/api/no/such/route")
        assert problem.status_code == 404
        assert problem.headers["content-type"] == "application/problem+json"
        home = await client.get("/")
        assert home.status_code == 303 and home.headers["location"] == "/login"
