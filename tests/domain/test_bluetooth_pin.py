"""The Bluetooth PIN lifecycle as values: pending until the charger confirms, a change waits
beside the active PIN, and the policy decides what may happen. PINs are plain labels here."""

from datetime import UTC, datetime, timedelta

import pytest

from evaccess.domain.access import Basis
from evaccess.domain.bluetooth_pin import PinSlots, PinStatus
from evaccess.domain.errors import PolicyViolation
from evaccess.domain.policy import PinPolicy, PinRequirement

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def policy(requirement: PinRequirement, *, changeable: bool = True) -> PinPolicy:
    return PinPolicy(
        requirement=requirement,
        changeable=changeable,
        visible_to=frozenset({Basis.OWNER}),
        rule="test rule",
    )


MANDATORY = policy(PinRequirement.MANDATORY)
OPTIONAL = policy(PinRequirement.OPTIONAL, changeable=False)
UNSUPPORTED = policy(PinRequirement.UNSUPPORTED, changeable=False)


def test_a_new_pin_is_pending_until_the_charger_confirms_it():
    none: PinSlots[str] = PinSlots()
    assert none.status is PinStatus.NONE and none.needs_pin(MANDATORY)
    pending = none.with_pending("first", T0)
    assert (pending.status, pending.enforced, pending.to_push) == (
        PinStatus.PENDING,
        "first",
        "first",
    )
    assert not pending.needs_pin(MANDATORY)
    active = pending.confirmed()
    assert (active.status, active.active, active.pending, active.pending_since) == (
        PinStatus.ACTIVE,
        "first",
        None,
        None,
    )


def test_a_change_waits_beside_the_active_pin():
    active: PinSlots[str] = PinSlots(active="old")
    made: list[str] = []
    changing = active.change(MANDATORY, lambda: made.append("new") or "new", T0)
    assert made == ["new"]
    assert changing.status is PinStatus.CHANGING
    assert changing.enforced == "old"  # phones still need the old PIN
    assert changing.to_push == "new"  # the charger is sent the new one
    assert changing.pending_since == T0
    later = changing.change(MANDATORY, lambda: "newer", T0 + timedelta(minutes=1))
    assert (later.active, later.pending) == ("old", "newer")  # the newest change wins
    assert later.confirmed() == PinSlots(active="newer")


@pytest.mark.parametrize(
    ("slots", "rules", "message"),
    [
        (PinSlots(active="old"), OPTIONAL, "cannot be changed"),
        (PinSlots(), MANDATORY, "enable it first"),
    ],
)
def test_a_refused_change_makes_no_pin(slots, rules, message):
    def never() -> str:
        raise AssertionError("no PIN is made for a refused change")

    with pytest.raises(PolicyViolation, match=message):
        slots.change(rules, never, T0)


def test_confirming_without_a_pending_pin_changes_nothing():
    active: PinSlots[str] = PinSlots(active="only")
    assert active.confirmed() is active


def test_an_optional_pin_is_required_once_enabled():
    off: PinSlots[str] = PinSlots()
    assert not off.required(OPTIONAL) and not off.needs_pin(OPTIONAL)
    on = off.enable(OPTIONAL)
    assert on.enabled and on.required(OPTIONAL) and on.needs_pin(OPTIONAL)
    assert on.enable(OPTIONAL) is on


def test_enabling_is_a_no_op_where_mandatory_and_refused_where_unsupported():
    slots: PinSlots[str] = PinSlots(active="p")
    assert slots.enable(MANDATORY) is slots
    assert slots.required(MANDATORY) and not slots.required(UNSUPPORTED)
    with pytest.raises(PolicyViolation, match="has no Bluetooth PIN"):
        slots.enable(UNSUPPORTED)


def test_a_factory_pin_is_active_at_once():
    none: PinSlots[str] = PinSlots()
    assert none.with_factory_pin("printed").status is PinStatus.ACTIVE


def test_a_pin_changed_on_the_charger_replaces_both_slots():
    changing: PinSlots[str] = PinSlots(active="old", pending="new", pending_since=T0)
    assert changing.changed_on_charger("phone") == PinSlots(active="phone")
