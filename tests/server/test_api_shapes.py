"""Response bodies are read from the service's objects declaratively (``from_attributes``
and validation aliases): the wire shape, key order included, is pinned here."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from types import SimpleNamespace

from evaccess.domain.access import Basis
from evaccess.domain.policy import PinRequirement
from evaccess.server.api import schemas as s

AT = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


def _view(**overrides: object) -> SimpleNamespace:
    charger = SimpleNamespace(
        id="c1",
        serial="WB-1",
        organisation_id="o1",
        vendor="Wallbox",
        model="Pulsar Max",
        firmware="6.11.4",
        production_date=date(2024, 5, 1),
        has_bluetooth=True,
        has_keypad=False,
        online=True,
        ocpp_protocol="ocpp2.0.1",
        last_seen_at=AT,
    )
    view = SimpleNamespace(
        charger=charger,
        bases=frozenset({Basis.USER, Basis.OWNER}),
        policy=SimpleNamespace(requirement=PinRequirement.MANDATORY, changeable=False),
        connectors=(SimpleNamespace(evse_id=1, connector_id=1, status="Available", updated_at=AT),),
        settings=(SimpleNamespace(key="LedBrightness", value="40"),),
        recent_security_events=(
            SimpleNamespace(event_type="FirmwareUpdated", at=AT, tech_info=None, received_at=AT),
        ),
    )
    vars(view).update(overrides)
    return view


def test_a_charger_view_maps_to_the_charger_body() -> None:
    body = json.loads(s.ChargerOut.model_validate(_view()).model_dump_json())
    assert body == {
        "id": "c1",
        "serial": "WB-1",
        "organisation_id": "o1",
        "vendor": "Wallbox",
        "model": "Pulsar Max",
        "firmware": "6.11.4",
        "production_date": "2024-05-01",
        "bluetooth": True,
        "keypad": False,
        "access": ["owner", "user"],
        "bluetooth_pin_requirement": "mandatory",
        "bluetooth_pin_changeable": False,
        "online": True,
        "ocpp_protocol": "ocpp2.0.1",
        "last_seen_at": "2026-03-01T09:00:00Z",
        "connectors": [
            {
                "evse_id": 1,
                "connector_id": 1,
                "status": "Available",
                "updated_at": "2026-03-01T09:00:00Z",
            }
        ],
        "reported_settings": {"LedBrightness": "40"},
        "recent_security_events": [
            {
                "event_type": "FirmwareUpdated",
                "at": "2026-03-01T09:00:00Z",
                "tech_info": None,
                "received_at": "2026-03-01T09:00:00Z",
            }
        ],
    }
    assert list(body) == list(s.ChargerOut.model_fields)  # the key order is the schema's
    hidden = s.ChargerOut.model_validate(_view(recent_security_events=None))
    assert hidden.recent_security_events is None


def test_a_validated_body_validates_again_by_field_names() -> None:
    # FastAPI checks a returned model again from its dump: the aliases accept field names.
    out = s.ChargerOut.model_validate(_view())
    assert s.ChargerOut.model_validate(out.model_dump()) == out
    grant = s.GrantOut.model_validate(
        SimpleNamespace(
            grant=SimpleNamespace(
                id="g1", user_id="u1", kind="service", created_at=AT, expires_at=None
            ),
            email="a@example.com",
        )
    )
    assert list(grant.model_dump()) == [
        "id",
        "user_id",
        "email",
        "kind",
        "created_at",
        "expires_at",
    ]
    assert s.GrantOut.model_validate(grant.model_dump()) == grant


def test_audit_details_stored_as_text_come_out_as_an_object() -> None:
    record = SimpleNamespace(
        seq=7,
        at=AT,
        action="pin.reveal",
        actor_id="u1",
        organisation_id="o1",
        charger_id="c1",
        subject_id=None,
        basis="owner",
        request_id="r1",
        details='{"status": "active"}',
    )
    assert s.AuditRecordOut.model_validate(record).details == {"status": "active"}
