"""``evaccess app transfer ...``, ``app release`` and ``app grant-extend`` against the real
REST API in-process, and the API's problem codes for them."""

from __future__ import annotations

from typing import Any

from evaccess.server.context import Context
from evaccess.server.services import grants
from tests.app.test_access_commands import WALLBOX, app_env, make_app

__all__ = ["app_env"]  # the fixture, shared
from tests.e2e.conftest import one_line_error
from tests.server.support import build_world, client_for

ZAPTEC = "ZAP-200002"


async def test_transfer_start_list_accept_and_cancel(app_env: Any, ctx: Context) -> None:
    world = await build_world(ctx)
    app = await make_app(app_env, world)
    await app.login("owner")

    shown = await app.ok("transfer", "start", WALLBOX, "stranger@example.com")
    assert "stranger@example.com" in shown.stdout and "open" in shown.stdout
    [transfer] = await app.json("transfer", "list")
    assert "evaccess app transfer accept " + transfer["id"] in shown.stdout
    assert "has an open transfer" in one_line_error(
        await app("transfer", "start", WALLBOX, "x@example.com"), 6
    )
    assert "own this charger already" in one_line_error(
        await app("transfer", "start", WALLBOX, "owner@example.com"), 2
    )
    # --role owner is not among the CLI's choices (the API's answer is checked below).
    assert "'owner' is not one of" in one_line_error(
        await app("invite", WALLBOX, "--email", "x@example.com", "--role", "owner"), 2
    )

    await app.login("stranger")
    accepted = await app.ok("transfer", "accept", transfer["id"])
    assert f"you own {WALLBOX} now" in accepted.stdout
    assert "new Bluetooth PIN" in accepted.stdout
    assert [c["access"] for c in await app.json("chargers")] == [["owner"]]
    assert "transfer is accepted" in one_line_error(
        await app("transfer", "accept", transfer["id"]), 6
    )

    await app.login("owner")
    assert WALLBOX not in [c["serial"] for c in await app.json("chargers")]
    zaptec = await app.json("transfer", "start", ZAPTEC, "stranger@example.com")
    cancelled = await app.ok("transfer", "cancel", zaptec["id"])
    assert f"transfer of {ZAPTEC} cancelled" in cancelled.stdout
    again = await app.json("transfer", "start", ZAPTEC, "stranger@example.com")
    await app.login("stranger")
    warned = await app.ok("transfer", "accept", again["id"])
    assert "warning: this charger's Bluetooth PIN cannot be changed" in warned.stdout
    assert "no such transfer" in one_line_error(await app("transfer", "cancel", "nope"), 5)


async def test_release_and_grant_extend(app_env: Any, ctx: Context) -> None:
    world = await build_world(ctx)
    app = await make_app(app_env, world)
    await app.login("owner")
    views = await grants.list_grants(ctx, world.actor("owner"), world.chargers["wallbox"].id)
    service = next(v.grant for v in views if v.grant.kind == "service")
    user = next(v.grant for v in views if v.grant.kind == "user")

    extended = await app.json("grant-extend", WALLBOX, service.id, "--days", "30")
    assert extended["expires_at"].startswith("2026-03-31")
    assert "only service access" in one_line_error(await app("grant-extend", WALLBOX, user.id), 6)
    assert "add --yes" in one_line_error(await app("release", WALLBOX), 2)
    released = await app.ok("release", WALLBOX, "--yes")
    assert f"{WALLBOX} released" in released.stdout
    assert "3 grants" in released.stdout
    assert "no charger with serial" in one_line_error(await app("release", WALLBOX, "--yes"), 5)


async def test_the_api_answers_with_stable_problem_codes(ctx: Context) -> None:
    world = await build_world(ctx)
    wallbox = world.chargers["wallbox"].id
    async with client_for(ctx) as http:
        owner, stranger, invited = (
            await world.headers("owner"),
            await world.headers("stranger"),
            await world.headers("invited"),
        )
        invited_owner = await http.post(
            f"/api/chargers/{wallbox}/invitations",
            json={"email": "x@example.com", "kind": "owner"},
            headers=owner,
        )
        assert invited_owner.json()["code"] == "ownership_not_invited"
        denied = await http.post(
            f"/api/chargers/{wallbox}/transfers", json={"email": "x@example.com"}, headers=invited
        )
        assert (denied.status_code, denied.json()["code"]) == (403, "permission_denied")
        started = await http.post(
            f"/api/chargers/{wallbox}/transfers",
            json={"email": "stranger@example.com"},
            headers=owner,
        )
        assert started.status_code == 201, started.text
        tid = started.json()["id"]
        pending = await http.post(
            f"/api/chargers/{wallbox}/transfers", json={"email": "y@example.com"}, headers=owner
        )
        assert (pending.status_code, pending.json()["code"]) == (409, "transfer_pending")
        wrong = await http.post(f"/api/transfers/{tid}/accept", headers=owner)
        assert (wrong.status_code, wrong.json()["code"]) == (403, "permission_denied")
        ok = await http.post(f"/api/transfers/{tid}/accept", headers=stranger)
        assert ok.status_code == 200, ok.text
        body = ok.json()
        assert body["transfer"]["state"] == "accepted" and body["bluetooth_pin"] == "rotated"
        assert body["revoked"]["grants"] == 3
        twice = await http.post(f"/api/transfers/{tid}/cancel", headers=owner)
        assert (twice.status_code, twice.json()["code"]) == (409, "transfer_accepted")
        gone = await http.post(f"/api/chargers/{wallbox}/release", headers=owner)
        assert (gone.status_code, gone.json()["code"]) == (404, "not_found")
