"""Issue 8: one definition per concept. A class name defined twice in ``src`` means two
concepts share a name (or one concept is defined twice): either way a reader, and an
import, can pick the wrong one."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "evaccess"


def _classes() -> dict[str, list[str]]:
    found: dict[str, list[str]] = defaultdict(list)
    for path in sorted(SRC.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in tree.body:
            if isinstance(node, ast.ClassDef):
                found[node.name].append(str(path.relative_to(SRC)))
    return found


# The OCPP endpoint's and the charger's names (issue 8); other layers' twins are their own.
OCPP_NAMES = ("OcppVersion", "MessageType", "Direction", "ConnectorStatus", "Charger")


def test_ocpp_and_charger_names_are_defined_once_in_src() -> None:
    classes = _classes()
    twice = {name: classes[name] for name in OCPP_NAMES if len(classes[name]) > 1}
    assert twice == {}


def test_the_endpoint_port_has_no_unused_charger_identity() -> None:
    assert "server/ocpp/backend.py" not in _classes()["ChargerIdentity"]


def test_the_ocpp_version_lives_in_the_protocol_layer() -> None:
    assert _classes()["OcppVersion"] == ["protocol/ocpp_frames.py"]
