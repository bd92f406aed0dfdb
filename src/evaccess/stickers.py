"""Drawing and reading commissioning stickers (segno draws the QR, zxing-cpp reads it).

Shared by the server's manufacturing commands (which draw) and the phone app (which reads),
so it lives beside ``console`` rather than in one of the three programs.

Reading SVG: a general SVG renderer (cairosvg) needs the Cairo C library, which CI does not
have. A sticker's SVG is simple, so it is rasterised here with Pillow: the ``<rect>``
elements and the stroked ``<path>`` that segno writes (``M``/``m``/``h``/``H``/``v``/``V``
moves, each ``h`` a run of dark modules). Anything else in an SVG is ignored, and an SVG
that draws no code reads as "no QR code found".
"""

from __future__ import annotations

import io
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import segno
import zxingcpp
from PIL import Image, ImageDraw, ImageFont, ImageOps

from evaccess.domain.errors import InvalidInput

SCALE = 10
"""Pixels per QR module in PNG stickers."""
QUIET = 4
"""Modules of white margin around the code (ISO/IEC 18004)."""
_SVG_NS = "{http://www.w3.org/2000/svg}"
_FORMATS = ("png", "svg")
_LABEL_FORMATS = ("png", "pdf")


def _kind(path: Path, allowed: tuple[str, ...]) -> str:
    kind = path.suffix.lower().lstrip(".")
    if kind not in allowed:
        raise InvalidInput(f"{path.name}: write {' or '.join('.' + k for k in allowed)}")
    return kind


def _qr(payload: str) -> segno.QRCode:
    return segno.make_qr(payload, error="m")


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def sticker_image(payload: str, caption: str, *, extra: tuple[str, ...] = ()) -> Image.Image:
    """The QR code with ``caption`` (the serial) and ``extra`` lines under it, black on white."""
    matrix = _qr(payload).matrix
    n = len(matrix)
    side = (n + 2 * QUIET) * SCALE
    lines = (caption, *extra)
    line_h = 3 * SCALE
    image = Image.new("L", (side, side + line_h * len(lines) + SCALE), 255)
    draw = ImageDraw.Draw(image)
    for y, row in enumerate(matrix):
        for x, dark in enumerate(row):
            if dark:
                left, top = (x + QUIET) * SCALE, (y + QUIET) * SCALE
                draw.rectangle((left, top, left + SCALE - 1, top + SCALE - 1), fill=0)
    font = _font(2 * SCALE)
    for i, line in enumerate(lines):
        draw.text((side // 2, side + i * line_h), line, fill=0, font=font, anchor="ma")
    return image


def sticker_svg(payload: str, caption: str) -> str:
    """The sticker as SVG in module units: one ``<rect>`` per run of dark modules."""
    matrix = _qr(payload).matrix
    n = len(matrix)
    side = n + 2 * QUIET
    height = side + 4
    rects: list[str] = []
    for y, row in enumerate(matrix):
        x = 0
        while x < n:
            if row[x]:
                start = x
                while x < n and row[x]:
                    x += 1
                rects.append(
                    f'<rect x="{start + QUIET}" y="{y + QUIET}" width="{x - start}" height="1"/>'
                )
            else:
                x += 1
    caption = caption.replace("&", "&amp;").replace("<", "&lt;")
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n'
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {side} {height}" '
        f'width="{side * SCALE}" height="{height * SCALE}">'
        f'<rect x="0" y="0" width="{side}" height="{height}" fill="#fff"/>'
        f'<g fill="#000" shape-rendering="crispEdges">{"".join(rects)}</g>'
        f'<text x="{side / 2}" y="{side + 2}" font-family="monospace" font-size="2" '
        f'text-anchor="middle" fill="#000">{caption}</text></svg>\n'
    )


def write_sticker(payload: str, caption: str, out: Path) -> None:
    """Write the sticker to ``out`` (.png or .svg)."""
    kind = _kind(out, _FORMATS)
    if kind == "svg":
        out.write_text(sticker_svg(payload, caption))
    else:
        sticker_image(payload, caption).save(out, format="PNG")


def write_label(payload: str, serial: str, pin: str, out: Path) -> None:
    """The packaging label: serial, QR and the Bluetooth PIN (.png or .pdf)."""
    kind = _kind(out, _LABEL_FORMATS)
    image = sticker_image(payload, serial, extra=(f"Bluetooth PIN {pin}",))
    if kind == "pdf":
        image.convert("RGB").save(out, format="PDF", resolution=300.0)
    else:
        image.save(out, format="PNG")


# --- reading ----------------------------------------------------------------------------------

_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_PATH_TOKEN = re.compile(rf"[MmHhVvLlZz]|{_NUMBER}")


def _svg_length(value: str | None) -> float | None:
    if value is None:
        return None
    match = re.match(_NUMBER, value.strip())
    return float(match.group(0)) if match else None


def rasterise_svg(data: bytes, *, pixels_per_unit: float = 8.0) -> Image.Image:
    """A Pillow image of the rects and segno-style stroked paths in an SVG."""
    if b"<!ENTITY" in data or b"<!DOCTYPE" in data:
        raise InvalidInput("this SVG declares entities; not read")
    try:
        root = ET.fromstring(data)  # noqa: S314  (no entities, see above)
    except ET.ParseError:
        raise InvalidInput("this SVG file is not well-formed XML") from None
    view = root.get("viewBox")
    if view:
        _, _, width, height = (float(v) for v in view.replace(",", " ").split())
    else:
        width = _svg_length(root.get("width")) or 0.0
        height = _svg_length(root.get("height")) or 0.0
    if not 0 < width <= 10_000 or not 0 < height <= 10_000:
        raise InvalidInput("this SVG has no usable size")
    k = pixels_per_unit
    image = Image.new("L", (round(width * k), round(height * k)), 255)
    draw = ImageDraw.Draw(image)
    for element in root.iter():
        tag = element.tag.removeprefix(_SVG_NS)
        fill = element.get("fill")
        if tag == "rect" and fill not in ("#fff", "#ffffff", "white", "none"):
            x, y = float(element.get("x", 0)), float(element.get("y", 0))
            w, h = float(element.get("width", 0)), float(element.get("height", 0))
            draw.rectangle((x * k, y * k, (x + w) * k - 1, (y + h) * k - 1), fill=0)
        elif tag == "path" and element.get("stroke") not in (None, "none", "#fff", "white"):
            stroke = float(element.get("stroke-width", 1))
            _draw_path(draw, element.get("d", ""), stroke, k)
    return image


def _draw_path(draw: ImageDraw.ImageDraw, d: str, stroke: float, k: float) -> None:
    tokens = _PATH_TOKEN.findall(d)
    x = y = 0.0
    command = ""
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if token.isalpha():
            command = token
            i += 1
            continue
        if command in "Mm":
            dx, dy = float(tokens[i]), float(tokens[i + 1])
            x, y = (x + dx, y + dy) if command == "m" else (dx, dy)
            i += 2
        elif command in "Hh":
            to = float(token) + (x if command == "h" else 0.0)
            left, right = sorted((x, to))
            draw.rectangle(
                (left * k, (y - stroke / 2) * k, right * k - 1, (y + stroke / 2) * k - 1), fill=0
            )
            x = to
            i += 1
        elif command in "Vv":
            to = float(token) + (y if command == "v" else 0.0)
            top, bottom = sorted((y, to))
            draw.rectangle(
                ((x - stroke / 2) * k, top * k, (x + stroke / 2) * k - 1, bottom * k - 1), fill=0
            )
            y = to
            i += 1
        else:  # L and other commands: not in a sticker
            i += 1


def load_image(path: Path) -> Image.Image:
    """The picture in ``path`` (PNG, JPEG, SVG, or anything else Pillow reads)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InvalidInput(f"cannot read {path}: {exc.strerror}") from None
    if path.suffix.lower() == ".svg" or data.lstrip()[:5] in (b"<?xml", b"<svg ", b"<svg\n"):
        return rasterise_svg(data)
    try:
        with Image.open(io.BytesIO(data)) as image:
            return ImageOps.exif_transpose(image).convert("L")
    except (OSError, Image.DecompressionBombError, SyntaxError):
        raise InvalidInput(
            f"{path.name} is not a picture this app reads (PNG, JPEG, SVG)"
        ) from None


def read_qr(image: Image.Image) -> str:
    """The text of the QR code in ``image`` (a photo will do), or ``InvalidInput``."""
    qr_only = zxingcpp.BarcodeFormats(zxingcpp.BarcodeFormat.QRCode)
    found = zxingcpp.read_barcodes(image, formats=qr_only)
    if not found:
        # A blurred or noisy photo: try once more on a contrast-stretched copy.
        found = zxingcpp.read_barcodes(ImageOps.autocontrast(image.convert("L")), formats=qr_only)
    if not found:
        raise InvalidInput("no QR code found in the picture (hold the sticker flat and in focus)")
    return str(found[0].text)
