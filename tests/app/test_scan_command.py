"""``evaccess app scan`` in-process against the real REST API: a sticker picture (PNG, SVG,
a JPEG photo) or its text commissions the charger and shows the PIN; what goes wrong is one
line."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from PIL import Image, ImageFilter

from evaccess import stickers
from evaccess.protocol import sticker
from evaccess.server.context import Context
from evaccess.server.services import registration
from tests.app import test_access_commands as access
from tests.conftest import Canaries, ManualClock
from tests.e2e.conftest import one_line_error
from tests.server.support import build_world

ZAPTEC_PIN = "518273"
app_env = access.app_env  # the fixture
make_app = access.make_app


async def _new_charger(ctx: Context, world: Any, serial: str, canaries: Canaries) -> str:
    reg = await registration.register(
        ctx, world.actor("super_admin"), organisation_id=world.org.id, serial=serial,
        vendor="Zaptec", model="Go", firmware="2.4.1", factory_pin=ZAPTEC_PIN,
    )  # fmt: skip
    assert reg.sticker is not None
    canaries.add(sticker.parse(reg.sticker.payload).code, ZAPTEC_PIN)
    return reg.sticker.payload


async def test_scan_a_photo_and_see_the_pin(
    app_env: Any, ctx: Context, canaries: Canaries, tmp_path
) -> None:
    world = await build_world(ctx)
    payload = await _new_charger(ctx, world, "ZAP-700001", canaries)
    photo = (
        stickers.sticker_image(payload, "ZAP-700001")
        .rotate(12, expand=True, fillcolor=255, resample=Image.Resampling.BICUBIC)
        .filter(ImageFilter.GaussianBlur(1.2))
    )
    picture = tmp_path / "photo.jpg"
    photo.convert("RGB").save(picture, format="JPEG", quality=75)
    app = await make_app(app_env, world)
    await app.login("stranger")
    shown = await app.ok("scan", str(picture))
    assert "charger ZAP-700001 is yours now" in shown.stdout
    assert f"Bluetooth PIN: {ZAPTEC_PIN}" in shown.stdout
    assert "evaccess app pair ZAP-700001" in shown.stdout
    assert "used" in one_line_error(await app("scan", str(picture)), 4)


async def test_scan_svg_and_text_and_errors(
    app_env: Any, ctx: Context, canaries: Canaries, tmp_path
) -> None:
    world = await build_world(ctx)
    payload = await _new_charger(ctx, world, "ZAP-700002", canaries)
    svg = tmp_path / "sticker.svg"
    stickers.write_sticker(payload, "ZAP-700002", svg)
    app = await make_app(app_env, world)
    await app.login("stranger")
    blank = tmp_path / "blank.png"
    Image.new("L", (100, 100), 255).save(blank)
    assert "no QR code found" in one_line_error(await app("scan", str(blank)), 2)
    assert "no such picture" in one_line_error(await app("scan", "hello"), 2)
    assert "not an evaccess" in one_line_error(await app("scan", "EVAX:1:2"), 2)
    parsed = sticker.parse(payload)
    wrong = sticker.StickerPayload(serial=parsed.serial, code="A" * 20).format()
    error = one_line_error(await app("scan", wrong), 4)
    assert "not valid" in error
    assert "A" * 20 not in error
    done = await app.json("scan", str(svg))
    assert done["bluetooth_pin"]["pin"] == ZAPTEC_PIN


async def test_an_installer_scans_for_a_customer_and_keeps_service_access(
    app_env: Any, ctx: Context, canaries: Canaries, clock: ManualClock
) -> None:
    """The installer path: the installer's scan commissions the charger and offers it to the
    customer; after the customer accepts, the installer has service access that ends after
    14 days (the customer may extend or end it)."""
    world = await build_world(ctx)
    payload = await _new_charger(ctx, world, "ZAP-700003", canaries)
    app = await make_app(app_env, world)
    await app.login("service")  # the installer
    assert "--for names the customer" in one_line_error(
        await app("scan", payload, "--for", "service@example.com"), 2
    )
    shown = await app.ok("scan", payload, "--for", "stranger@example.com")
    assert f"Bluetooth PIN: {ZAPTEC_PIN}" in shown.stdout
    assert "offered to stranger@example.com" in shown.stdout
    [offer] = await app.json("transfer", "list")
    assert offer["keep_service_access"] is True

    await app.login("stranger")
    await app.ok("transfer", "accept", offer["id"])
    [charger] = [c for c in await app.json("chargers") if c["serial"] == "ZAP-700003"]
    assert charger["access"] == ["owner"]
    grants_shown = await app.json("grants", "ZAP-700003")
    kept = [g for g in grants_shown if g["email"] == "service@example.com"]
    assert [g["kind"] for g in kept] == ["service"]
    assert kept[0]["expires_at"] is not None

    await app.login("service")
    assert "ZAP-700003" in (await app.ok("charger-info", "ZAP-700003")).stdout
    clock.advance(timedelta(days=14).total_seconds())
    await app.login("service")  # a fresh session: the old one expired with the access
    assert "no charger" in one_line_error(await app("charger-info", "ZAP-700003"), 5)
