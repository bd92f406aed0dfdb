"""Bulk registration as an operator does it: ``evaccess admin create-chargers`` writes the
password file that ``evaccess charger fleet`` reads, and the fleet authenticates and boots
against a running server."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pytest

from tests.conftest import Canaries
from tests.e2e.conftest import Cli, Server, leaked, one_line_error, succeeded

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

FACTS = ("--vendor", "evaccess", "--model", "fleet", "--firmware", "1.0.0")


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_created_chargers_boot_as_a_fleet(
    cli: Cli, server: Server, tmp_path: Path, canaries: Canaries
) -> None:
    org, by = server.organisation_id, ("--by", server.admin_email)
    out = tmp_path / "chargers.csv"
    created = cli.ok(
        "admin", "create-chargers", org, "--count", "50", "--prefix", "FL-", *FACTS, *by,
        "--out", str(out),
    )  # fmt: skip
    assert oct(out.stat().st_mode & 0o777) == "0o600"
    assert out.read_text().splitlines()[0] == "serial,password"
    rows = _rows(out)
    assert [r["serial"] for r in rows] == [f"FL-{n:04d}" for n in range(1, 51)]
    canaries.add(*(r["password"] for r in rows))
    assert "registered 50 chargers" in created.stdout

    ocpp = f"ws://127.0.0.1:{cli.env['EVACCESS_OCPP_PORT']}/ocpp"
    started = (
        cli.start("charger", "fleet", "--count", "50", "--server", ocpp, "--password-file", str(out)),
        # A serial taken by the first run: refused by name, nothing written.
        cli.start(
            "admin", "create-chargers", org, "--serials-from", str(_serials(tmp_path)), *FACTS,
            *by, "--out", str(tmp_path / "again.csv"),
        ),
        cli.start(
            "charger", "fleet", "--server", ocpp, "--password-file", str(tmp_path / "nope.csv")
        ),
    )  # fmt: skip
    # A firmware that is not a version is refused by name (the PIN policy reads it).
    bad_firmware = {
        firmware: cli.start(
            "admin", "create-charger", org, "--serial", "WB-BAD", "--vendor", "Wallbox",
            "--model", "Pulsar Max", "--firmware", firmware, *by,
        )
        for firmware in ("six.eleven", "6..11", "")
    }  # fmt: skip
    bulk_bad_firmware = cli.start(
        "admin", "create-chargers", org, "--count", "3", "--prefix", "BAD-", "--vendor",
        "Wallbox", "--model", "Pulsar Max", "--firmware", "6..11", *by,
        "--out", str(tmp_path / "bad.csv"),
    )  # fmt: skip
    fleet, duplicate, missing = (p.result() for p in started)
    for firmware, pending in bad_firmware.items():
        assert repr(firmware) in one_line_error(pending.result(), exit_code=2)
    assert "'6..11'" in one_line_error(bulk_bad_firmware.result(), exit_code=2)
    assert not (tmp_path / "bad.csv").exists()
    succeeded(fleet)
    table = re.search(r"│\s*50\s*│\s*50\s*│\s*50\s*│\s*0\s*│", fleet.stdout)
    assert table is not None, fleet.stdout  # chargers, connected, booted, failed

    assert "FL-0007" in one_line_error(duplicate, exit_code=6)
    assert not (tmp_path / "again.csv").exists()
    assert "nope.csv" in one_line_error(missing, exit_code=2)

    # A serial column works as well as one serial per line.
    named = tmp_path / "named.csv"
    named.write_text("serial,site\nNEW-1,north\nNEW-2,south\n")
    from_file = cli.ok(
        "admin", "create-chargers", org, "--serials-from", str(named), *FACTS, *by,
        "--out", str(tmp_path / "named-out.csv"),
    )  # fmt: skip
    assert [r["serial"] for r in _rows(tmp_path / "named-out.csv")] == ["NEW-1", "NEW-2"]
    canaries.add(*(r["password"] for r in _rows(tmp_path / "named-out.csv")))

    for result in (created, fleet, duplicate, missing, from_file):
        assert leaked(result.output, canaries) == [], result.args


def _serials(tmp_path: Path) -> Path:
    path = tmp_path / "serials.txt"
    path.write_text("NEW-7\nFL-0007\n")
    return path
