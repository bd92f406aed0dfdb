"""Claims through support in separate processes, as people meet them: the operator names
two support agents; someone who moved in files a claim with the purchase agreement; both
agents approve, the owner objects within the window and keeps the charger; the owner then
moves out (release), the new occupant claims again, and the second approval hands the
charger over at once (nobody owned it to object)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import Canaries
from tests.e2e.conftest import Cli, Server, leaked, one_line_error, succeeded

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

SERIAL = "WB-707070"
MODEL = ("--vendor", "Wallbox", "--model", "Pulsar Max", "--firmware", "6.11.4")
PEOPLE = {
    "owner@example.com": "amber kettle 4 meadow",
    "newcomer@example.com": "cobalt lantern 8 river",
    "sue@support.example": "violet harbour 2 crane",
    "tom@support.example": "copper orchard 7 finch",
}
PDF = b"%PDF-1.7\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF\n"


def test_two_agents_an_objection_then_a_claim_after_moving_out(
    cli: Cli, server: Server, tmp_path: Path, canaries: Canaries
) -> None:
    canaries.add(*PEOPLE.values())
    homes = {email: tmp_path / email.split("@")[0] for email in PEOPLE}
    started = [
        cli.start("admin", "create-user", email, "--password-stdin", stdin=f"{password}\n")
        for email, password in PEOPLE.items()
    ]
    for pending in started:
        succeeded(pending.result())
    registered = succeeded(
        cli("admin", "create-charger", server.organisation_id, "--serial", SERIAL, *MODEL,
            "--by", server.admin_email, "--owner", "owner@example.com", "--json")
    )  # fmt: skip
    canaries.add(json.loads(registered.stdout)["ocpp_password"])
    for agent in ("sue@support.example", "tom@support.example"):
        assert (
            "staff role support"
            in succeeded(cli("admin", "set-staff-role", agent, "support")).stdout
        )
    started = [
        cli.start("app", "login", "--server", server.url, "--email", email, "--password-stdin",
                  stdin=f"{password}\n", home=homes[email])
        for email, password in PEOPLE.items()
    ]  # fmt: skip
    for pending in started:
        succeeded(pending.result())

    def app(who: str, *args: str) -> str:
        return succeeded(cli("app", *args, home=homes[who])).stdout

    def refused(who: str, *args: str) -> str:
        return one_line_error(cli("app", *args, home=homes[who]))

    agreement = tmp_path / "agreement.pdf"
    agreement.write_bytes(PDF)
    claim = ("claim", "file", SERIAL, "--address", "12 Harbour Lane, Bristol",
             "--installer", "Sparks & Sons", "--document", str(agreement), "--json")  # fmt: skip
    first = json.loads(app("newcomer@example.com", *claim))
    assert first["state"] == "filed" and first["objection_until"] is not None
    assert "only support agents" in refused("newcomer@example.com", "support", "queue")
    assert "claim object" in app("owner@example.com", "claim", "list")

    saved = tmp_path / "saved.pdf"
    shown = app("sue@support.example", "support", "show", first["id"], "--document-out", str(saved))
    assert "12 Harbour Lane, Bristol" in shown and saved.read_bytes() == PDF
    assert "a second, different" in app("sue@support.example", "support", "approve", first["id"])
    assert "second, different support agent" in refused(
        "sue@support.example", "support", "approve", first["id"]
    )
    assert "window closes" in app("tom@support.example", "support", "approve", first["id"])
    assert "you keep the charger" in app("owner@example.com", "claim", "object", first["id"])
    [after] = json.loads(app("newcomer@example.com", "claim", "list", "--json"))
    assert after["state"] == "objected"
    assert SERIAL in app("owner@example.com", "charger-info", SERIAL)

    # The owner moves out without a buyer; the newcomer claims again and nobody may object.
    assert "has no owner now" in app("owner@example.com", "release", SERIAL, "--yes")
    second = json.loads(app("newcomer@example.com", *claim))
    assert second["objection_until"] is None
    app("tom@support.example", "support", "approve", second["id"])
    handed = app("sue@support.example", "support", "approve", second["id"])
    assert f"{SERIAL} handed over to newcomer@example.com" in handed
    mine = json.loads(app("newcomer@example.com", "chargers", "--json"))
    assert [(c["serial"], c["access"]) for c in mine] == [(SERIAL, ["owner"])]
    assert "no charger" in refused("owner@example.com", "charger-info", SERIAL)
    assert "no charger" in refused("sue@support.example", "charger-info", SERIAL)

    log = server.output()
    assert leaked(log, canaries, server.admin_password) == []  # printed once at first start
    assert PDF.decode() not in log
