"""``evaccess app cards``: add, list, block, delete, in-process against the real REST API
and database (see test_access_commands); the number never comes back unmasked."""

from __future__ import annotations

from typing import Any

from evaccess.app import cards as cards_cli
from evaccess.app import cli as app_cli
from evaccess.domain.tokens import Purpose
from evaccess.server.context import Context
from evaccess.server.services import tokens
from tests.app.test_access_commands import app_env, make_app  # noqa: F401 (a fixture)
from tests.conftest import Canaries
from tests.e2e.conftest import one_line_error
from tests.server.support import build_world

CARD = "04A2B3C4D5E680"
OTHER = "DE-8AA-CA2B3C4D5-L"


async def test_cards_commands(
    app_env: Any,  # noqa: F811
    ctx: Context,
    canaries: Canaries,
) -> None:
    canaries.add(CARD, CARD.lower(), OTHER, "DE8AACA2B3C4D5L")
    world = await build_world(ctx)
    app = await make_app(app_env, world)
    # the same in-process bridge to the API as the other app commands
    app.monkeypatch.setattr(cards_cli, "ApiClient", app_cli.ApiClient)
    wallbox = world.chargers["wallbox"].id
    await app.login("admin")

    added = await app.ok(
        "cards", "add", CARD.lower(), "--member", "owner@example.com", "--group", "staff"
    )
    assert "card …E680 added (ISO14443" in added.stdout
    answer = await tokens.resolve(ctx, wallbox, CARD, "ISO14443", Purpose.AUTHORIZE)
    assert answer is not None and answer.accepted and answer.group_id_token == "STAFF"
    from_stdin = await app.ok("cards", "add", "-", "--type", "emaid", stdin=f"{OTHER}\n")
    assert "card …4D5L added (eMAID" in from_stdin.stdout

    listed = await app.ok("cards", "list")
    assert "owner@example.com" in listed.stdout and "…E680" in listed.stdout
    cards = await app.json("cards", "list")
    assert {c["masked"] for c in cards} == {"…E680", "…4D5L"}

    assert "card …E680 blocked" in (await app.ok("cards", "block", "E680")).stdout
    answer = await tokens.resolve(ctx, wallbox, CARD, "ISO14443", Purpose.AUTHORIZE)
    assert answer is not None and answer.status == "Blocked"
    assert "accepted again" in (await app.ok("cards", "block", "…E680", "--unblock")).stdout
    assert "deleted" in (await app.ok("cards", "delete", "E680")).stdout
    assert await tokens.resolve(ctx, wallbox, CARD, "ISO14443", Purpose.AUTHORIZE) is None

    # errors: one line, exit code, never the number
    bad = await app("cards", "add", "04A2B3C4D5")
    assert "hexadecimal" in one_line_error(bad, 2) and "04A2B3C4D5" not in bad.output
    assert "no such card" in one_line_error(await app("cards", "delete", "FFFF"), 5)
    taken = await app("cards", "add", "-", "--type", "eMAID", stdin=f"{OTHER}\n")
    assert "already registered" in one_line_error(taken, 6) and OTHER not in taken.output
    await app.login("member")
    refused = await app("cards", "add", CARD, "--member", "admin@example.com")
    assert "not allowed" in one_line_error(refused, 4) and CARD not in refused.output
    mine = await app.ok("cards", "add", CARD)
    assert "…E680" in mine.stdout
    assert len(await app.json("cards", "list")) == 1  # a member sees their own
