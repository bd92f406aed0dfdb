from datetime import date

import pytest

from evaccess.domain.access import Basis
from evaccess.domain.policy import ChargerFacts, PinRequirement, pin_policy
from evaccess.domain.versions import Version, version


def wallbox(
    firmware: str, model: str = "Pulsar Plus", produced: date | None = None
) -> ChargerFacts:
    return ChargerFacts(vendor="Wallbox", model=model, firmware=firmware, production_date=produced)


@pytest.mark.parametrize(
    ("firmware", "requirement", "changeable"),
    [
        ("6.7.16", PinRequirement.UNSUPPORTED, False),
        ("6.7.17", PinRequirement.OPTIONAL, False),
        ("6.10.99", PinRequirement.OPTIONAL, False),
        ("6.11", PinRequirement.MANDATORY, True),
        ("6.11.0", PinRequirement.MANDATORY, True),
        ("7.0.1-rc2", PinRequirement.MANDATORY, True),
        ("v6.9.3", PinRequirement.OPTIONAL, False),
        ("unknown", PinRequirement.UNSUPPORTED, False),
    ],
)
def test_wallbox_firmware_boundaries(firmware, requirement, changeable):
    policy = pin_policy(wallbox(firmware))
    assert policy.requirement is requirement
    assert policy.changeable is changeable


@pytest.mark.parametrize("model", ["Pulsar Max", "pulsar pro"])
@pytest.mark.parametrize(
    ("produced", "requirement"),
    [(date(2025, 7, 31), PinRequirement.OPTIONAL), (date(2025, 8, 1), PinRequirement.MANDATORY)],
)
def test_pulsar_production_date_boundary(model, produced, requirement):
    policy = pin_policy(wallbox("6.8.0", model=model, produced=produced))
    assert policy.requirement is requirement


def test_pulsar_plus_after_cutoff_stays_optional():
    policy = pin_policy(wallbox("6.8.0", model="Pulsar Plus", produced=date(2025, 9, 1)))
    assert policy.requirement is PinRequirement.OPTIONAL


def test_wallbox_pin_visible_to_everyone_with_access():
    assert pin_policy(wallbox("6.11")).visible_to == {Basis.OWNER, Basis.USER, Basis.SERVICE}


def test_zaptec_mandatory_fixed_owner_and_service_only():
    policy = pin_policy(ChargerFacts(vendor="Zaptec", model="Go", firmware="2.1"))
    assert policy.requirement is PinRequirement.MANDATORY
    assert policy.changeable is False
    assert policy.visible_to == {Basis.OWNER, Basis.SERVICE}


def test_no_bluetooth_radio_means_unsupported():
    facts = ChargerFacts(vendor="Wallbox", model="Commander 2", firmware="6.11", bluetooth=False)
    assert pin_policy(facts).requirement is PinRequirement.UNSUPPORTED


def test_versions_compare_numerically():
    assert version("6.10.2") < version("6.11")
    assert version("6.11") == version("6.11.0")
    assert Version.parse("abc") is None
