"""Commissioning as a manufacturer and a new owner do it, in separate processes: the maker
registers a Zaptec charger and prints its packaging label and sticker; the new owner scans
a photo of the sticker with the app and sees the PIN that is on the label; a Wallbox label
is refused in one line."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from PIL import Image, ImageFilter

from tests.conftest import Canaries
from tests.e2e.conftest import Cli, Server, one_line_error, succeeded

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

BUYER = "buyer@example.com"
BUYER_PASSWORD = "violet kettle 9 harbour"
ZAPTEC = ("--vendor", "Zaptec", "--model", "Go", "--firmware", "2.4.1")
WALLBOX = ("--vendor", "Wallbox", "--model", "Pulsar Max", "--firmware", "6.11.4")


def test_label_sticker_scan(cli: Cli, server: Server, tmp_path: Path, canaries: Canaries) -> None:
    canaries.add(BUYER_PASSWORD)
    org, by = server.organisation_id, ("--by", server.admin_email)
    started = (
        cli.start("admin", "create-user", BUYER, "--password-stdin", stdin=f"{BUYER_PASSWORD}\n"),
        cli.start("admin", "create-charger", org, "--serial", "ZAP-1", *ZAPTEC, *by, "--json"),
        cli.start("admin", "create-charger", org, "--serial", "WB-1", *WALLBOX, *by,
                  "--json", "--sticker", str(tmp_path / "wb.svg")),
    )  # fmt: skip
    _, zaptec, wallbox = (succeeded(p.result()) for p in started)
    for registered in (zaptec, wallbox):
        canaries.add(json.loads(registered.stdout)["ocpp_password"])
    assert "<svg" in (tmp_path / "wb.svg").read_text()

    label, sticker = tmp_path / "label.png", tmp_path / "sticker.png"
    assert "manufacturer staff role" in one_line_error(
        cli("admin", "label", "ZAP-1", *by, "--out", str(label))
    )
    succeeded(cli("admin", "set-staff-role", server.admin_email, "manufacturer"))
    started = (
        cli.start("admin", "label", "ZAP-1", *by, "--out", str(label), "--sticker", str(sticker)),
        cli.start("admin", "label", "WB-1", *by, "--out", str(tmp_path / "wb.pdf")),
        cli.start("app", "login", "--server", server.url, "--email", BUYER, "--password-stdin",
                  stdin=f"{BUYER_PASSWORD}\n"),
    )  # fmt: skip
    printed, refused, _ = (p.result() for p in started)
    succeeded(printed)
    assert "does not print the Bluetooth PIN" in one_line_error(refused)
    assert not (tmp_path / "wb.pdf").exists()

    photo = tmp_path / "photo.jpg"
    with Image.open(sticker) as image:
        turned = image.convert("L").rotate(8, expand=True, fillcolor=255)
        turned.filter(ImageFilter.GaussianBlur(1)).save(photo, format="JPEG", quality=80)
    scanned = succeeded(cli("app", "scan", str(photo)))
    found = re.search(r"Bluetooth PIN: (\d{6})", scanned.stdout)
    assert found is not None, scanned.stdout
    canaries.add(found.group(1))
    assert "ZAP-1 is yours now" in scanned.stdout
    # The label and the sticker carry one code: it is used now.
    assert "used" in one_line_error(cli("app", "scan", str(sticker)))
    # Once owned, the label is never printed again.
    assert "has had an owner" in one_line_error(
        cli("admin", "label", "ZAP-1", *by, "--out", str(tmp_path / "again.png"))
    )
