"""What a charger reports at boot is applied as a ratchet (``policy.review_report``)."""

from __future__ import annotations

from datetime import date

import pytest

from evaccess.domain.policy import ChargerFacts, PinRequirement, Refusal, pin_policy, review_report

WALLBOX_611 = ChargerFacts(vendor="Wallbox", model="Pulsar Max", firmware="6.11.4")


def review(registered: ChargerFacts, **report: str | None):
    reported = {"vendor": registered.vendor, "model": registered.model, "firmware": None}
    return review_report(registered, **(reported | report))


@pytest.mark.parametrize(
    ("registered", "report", "reasons"),
    [
        (WALLBOX_611, {"firmware": "6.10.9"}, [Refusal.FIRMWARE_DOWNGRADE]),
        (WALLBOX_611, {"firmware": "6.11.2"}, [Refusal.FIRMWARE_DOWNGRADE]),  # same policy
        (WALLBOX_611, {"firmware": "garbage"}, [Refusal.FIRMWARE_UNREADABLE]),
        (WALLBOX_611, {"vendor": "evaccess", "model": "emulator"}, [Refusal.IDENTITY_CHANGED]),
        (
            ChargerFacts(
                vendor="Wallbox",
                model="Pulsar Max",
                firmware="6.8.2",
                production_date=date(2025, 9, 1),
            ),
            {"model": "Pulsar Plus"},
            [Refusal.IDENTITY_CHANGED],
        ),
        (
            WALLBOX_611,
            {"vendor": "evaccess", "model": "emulator", "firmware": "0.1.0"},
            [Refusal.IDENTITY_CHANGED, Refusal.FIRMWARE_DOWNGRADE],
        ),
    ],
)
def test_a_downgrade_is_refused_and_the_registered_facts_stay(registered, report, reasons):
    reviewed = review(registered, **report)
    assert reviewed.facts == registered
    assert [r.reason for r in reviewed.refused] == reasons
    assert pin_policy(reviewed.facts) == pin_policy(registered)


def test_an_upgrade_applies_and_may_make_the_pin_mandatory():
    optional = ChargerFacts(vendor="Wallbox", model="Pulsar Plus", firmware="6.8.2")
    reviewed = review(optional, firmware="6.11.0")
    assert reviewed.refused == ()
    assert reviewed.facts.firmware == "6.11.0"
    assert pin_policy(reviewed.facts).requirement is PinRequirement.MANDATORY


def test_nothing_reported_or_the_same_changes_nothing():
    assert review(WALLBOX_611).refused == ()
    assert (
        review(WALLBOX_611, firmware="6.11.4", vendor="WALLBOX", model="pulsar max").refused == ()
    )


def test_a_registered_firmware_that_is_not_a_version_may_be_corrected_upwards():
    legacy = ChargerFacts(vendor="Wallbox", model="Pulsar Max", firmware="six.eleven")
    reviewed = review(legacy, firmware="6.11.0")
    assert reviewed.facts.firmware == "6.11.0"
    assert pin_policy(reviewed.facts).requirement is PinRequirement.MANDATORY
