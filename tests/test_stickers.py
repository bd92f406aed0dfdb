"""Stickers drawn as PNG and SVG read back, and so do phone-like photos of them (noise,
rotation, blur, perspective-free JPEG), made with Pillow here."""

from __future__ import annotations

import random

import pytest
from PIL import Image, ImageFilter

from evaccess import stickers
from evaccess.domain.errors import InvalidInput

PAYLOAD = "EVA1:WB-PULSAR-000123:ABCDEFGHIJKLMNOPQRST"


@pytest.mark.parametrize("suffix", [".png", ".svg"])
def test_a_drawn_sticker_reads_back(tmp_path, suffix):
    out = tmp_path / f"sticker{suffix}"
    stickers.write_sticker(PAYLOAD, "WB-PULSAR-000123", out)
    assert stickers.read_qr(stickers.load_image(out)) == PAYLOAD


def test_the_svg_is_text_with_the_serial_under_the_code(tmp_path):
    out = tmp_path / "sticker.svg"
    stickers.write_sticker(PAYLOAD, "WB-PULSAR-000123", out)
    text = out.read_text()
    assert "<text" in text
    assert ">WB-PULSAR-000123</text>" in text


def _photo(
    sticker: Image.Image, *, angle: float, blur: float, noise: int, seed: int
) -> Image.Image:
    """The sticker on a grey table, turned, out of focus, with sensor noise."""
    rng = random.Random(seed)
    table = Image.new("L", (sticker.width * 2, sticker.height * 2), 140)
    table.paste(sticker, (sticker.width // 2, sticker.height // 3))
    photo = table.rotate(angle, resample=Image.Resampling.BICUBIC, fillcolor=140)
    photo = photo.filter(ImageFilter.GaussianBlur(blur))
    pixels = photo.load()
    for _ in range(photo.width * photo.height // 8):
        x, y = rng.randrange(photo.width), rng.randrange(photo.height)
        pixels[x, y] = max(0, min(255, pixels[x, y] + rng.randint(-noise, noise)))
    return photo.resize((photo.width * 3 // 4, photo.height * 3 // 4))


@pytest.mark.parametrize(
    ("angle", "blur", "noise"), [(0, 0, 60), (17, 1.5, 40), (-33, 2.5, 50), (90, 2.0, 80)]
)
def test_a_photo_of_the_sticker_reads(tmp_path, angle, blur, noise):
    sticker = stickers.sticker_image(PAYLOAD, "WB-PULSAR-000123")
    photo = _photo(sticker, angle=angle, blur=blur, noise=noise, seed=angle)
    path = tmp_path / "photo.jpg"
    photo.convert("RGB").save(path, format="JPEG", quality=70)
    assert stickers.read_qr(stickers.load_image(path)) == PAYLOAD


def test_a_picture_without_a_code_says_so(tmp_path):
    path = tmp_path / "blank.png"
    Image.new("L", (200, 200), 255).save(path)
    with pytest.raises(InvalidInput, match="no QR code found"):
        stickers.read_qr(stickers.load_image(path))


def test_not_a_picture_and_hostile_svg_are_refused(tmp_path):
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"not a picture")
    with pytest.raises(InvalidInput, match="not a picture"):
        stickers.load_image(junk)
    bomb = tmp_path / "bomb.svg"
    bomb.write_text('<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "a">]><svg/>')
    with pytest.raises(InvalidInput, match="entities"):
        stickers.load_image(bomb)


def test_label_formats(tmp_path):
    stickers.write_label(PAYLOAD, "WB-1", "482913", tmp_path / "label.pdf")
    assert (tmp_path / "label.pdf").read_bytes().startswith(b"%PDF")
    stickers.write_label(PAYLOAD, "WB-1", "482913", tmp_path / "label.png")
    assert stickers.read_qr(stickers.load_image(tmp_path / "label.png")) == PAYLOAD
    with pytest.raises(InvalidInput, match=".png or .pdf"):
        stickers.write_label(PAYLOAD, "WB-1", "482913", tmp_path / "label.gif")
