"""The Bluetooth PIN policy: one declarative table decides, per charger, whether a PIN is
unsupported, optional or mandatory, whether it can be changed and who may see it.

Sources: the Wallbox help-centre articles on the Bluetooth passcode (2025-01: optional from
firmware 6.7.17; 2025-10: mandatory and changeable from 6.11 and on Pulsar Max / Pulsar
Pro produced after 2025-08-01) and Zaptec's "charger PIN" article (a unique PIN per
charger that cannot be changed). The first matching rule wins; rules are data, not code.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import date
from enum import StrEnum

from evaccess.domain.access import Basis
from evaccess.domain.errors import InvalidInput
from evaccess.domain.versions import Version, firmware_version, version


class PinRequirement(StrEnum):
    UNSUPPORTED = "unsupported"
    OPTIONAL = "optional"
    MANDATORY = "mandatory"


@dataclass(frozen=True, kw_only=True, slots=True)
class ChargerFacts:
    """What the policy looks at. ``vendor`` and ``model`` compare case-insensitively."""

    vendor: str
    model: str
    firmware: str
    production_date: date | None = None
    bluetooth: bool = True


@dataclass(frozen=True, kw_only=True, slots=True)
class PinPolicy:
    requirement: PinRequirement
    changeable: bool
    visible_to: frozenset[Basis]
    rule: str
    """Which rule decided, in words: shown to users and support staff."""
    prints_pin: bool = False
    """The vendor puts the PIN on paper (packaging label, manual) at manufacturing."""


EVERYONE_WITH_ACCESS = frozenset({Basis.OWNER, Basis.USER, Basis.SERVICE})
OWNER_AND_SERVICE = frozenset({Basis.OWNER, Basis.SERVICE})


@dataclass(frozen=True, kw_only=True, slots=True)
class Rule:
    """Matches when every condition given holds. Firmware bounds are inclusive-exclusive."""

    name: str
    requirement: PinRequirement
    changeable: bool = False
    visible_to: frozenset[Basis] = EVERYONE_WITH_ACCESS
    vendor: str | None = None
    models: frozenset[str] = field(default_factory=frozenset)
    firmware_at_least: Version | None = None
    firmware_below: Version | None = None
    produced_on_or_after: date | None = None
    bluetooth: bool = True
    """The rule applies to chargers with (True) or without (False) a Bluetooth radio."""
    prints_pin: bool = False
    """The vendor prints the PIN on the packaging label and in the manual (Zaptec: "On the
    user manual that comes with the charging station. On the product packaging.")."""

    def matches(self, facts: ChargerFacts, firmware: Version | None) -> bool:
        checks: tuple[Callable[[], bool], ...] = (
            lambda: facts.bluetooth == self.bluetooth,
            lambda: self.vendor is None or facts.vendor.casefold() == self.vendor,
            lambda: not self.models or facts.model.casefold() in self.models,
            lambda: (
                self.firmware_at_least is None
                or (firmware is not None and firmware >= self.firmware_at_least)
            ),
            # An unreadable firmware version counts as "too old": never push a PIN to a
            # firmware that may not understand it.
            lambda: (
                self.firmware_below is None or firmware is None or firmware < self.firmware_below
            ),
            lambda: (
                self.produced_on_or_after is None
                or (
                    facts.production_date is not None
                    and facts.production_date >= self.produced_on_or_after
                )
            ),
        )
        return all(check() for check in checks)


PULSAR_MAX_AND_PRO = frozenset({"pulsar max", "pulsar pro"})

RULES: tuple[Rule, ...] = (
    Rule(
        name="no Bluetooth radio",
        requirement=PinRequirement.UNSUPPORTED,
        bluetooth=False,
        visible_to=frozenset(),
    ),
    Rule(
        name="Wallbox firmware before 6.7.17 has no Bluetooth PIN",
        vendor="wallbox",
        firmware_below=version("6.7.17"),
        requirement=PinRequirement.UNSUPPORTED,
        visible_to=frozenset(),
    ),
    Rule(
        name="Wallbox firmware 6.11 or later: PIN on by default and changeable",
        vendor="wallbox",
        firmware_at_least=version("6.11"),
        requirement=PinRequirement.MANDATORY,
        changeable=True,
    ),
    Rule(
        name="Wallbox Pulsar Max / Pulsar Pro produced on or after 2025-08-01: PIN on by default",
        vendor="wallbox",
        models=PULSAR_MAX_AND_PRO,
        produced_on_or_after=date(2025, 8, 1),
        requirement=PinRequirement.MANDATORY,
        changeable=True,
    ),
    Rule(
        name="Wallbox firmware 6.7.17 or later: PIN optional, fixed once set",
        vendor="wallbox",
        firmware_at_least=version("6.7.17"),
        requirement=PinRequirement.OPTIONAL,
    ),
    Rule(
        name="Zaptec: every charger has a unique PIN that cannot be changed",
        vendor="zaptec",
        requirement=PinRequirement.MANDATORY,
        changeable=False,
        visible_to=OWNER_AND_SERVICE,
        prints_pin=True,
    ),
    Rule(
        name="other vendors: PIN optional and changeable",
        requirement=PinRequirement.OPTIONAL,
        changeable=True,
    ),
)


def pin_policy(facts: ChargerFacts, rules: tuple[Rule, ...] = RULES) -> PinPolicy:
    """The policy of the first rule that matches ``facts``."""
    firmware = Version.parse(facts.firmware)
    for rule in rules:
        if rule.matches(facts, firmware):
            return _policy(rule)
    raise LookupError("the rule table has no catch-all rule")


def _policy(rule: Rule) -> PinPolicy:
    return PinPolicy(
        requirement=rule.requirement,
        changeable=rule.changeable,
        visible_to=rule.visible_to,
        rule=rule.name,
        prints_pin=rule.prints_pin,
    )


# --- what a charger reports at boot ---------------------------------------------------------

_PROTECTION = {
    PinRequirement.UNSUPPORTED: 0,
    PinRequirement.OPTIONAL: 1,
    PinRequirement.MANDATORY: 2,
}


class Refusal(StrEnum):
    """Why part of a charger's report was not applied to its facts."""

    IDENTITY_CHANGED = "identity_changed"
    """Vendor or model differ from the registration (emulator defaults, a swapped board)."""
    FIRMWARE_DOWNGRADE = "firmware_downgrade"
    """Older firmware than the charger had, or a version that would lower the PIN."""
    FIRMWARE_UNREADABLE = "firmware_unreadable"
    """The reported firmware is not a version."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Refused:
    reason: Refusal
    detail: str


@dataclass(frozen=True, kw_only=True, slots=True)
class ReportReview:
    facts: ChargerFacts
    """The facts to keep: the registered ones, with a reported firmware only if it may apply."""
    refused: tuple[Refused, ...] = ()


def review_report(
    registered: ChargerFacts, *, vendor: str, model: str, firmware: str | None
) -> ReportReview:
    """Apply a BootNotification's vendor, model and firmware to a charger's facts as a
    ratchet: a report may raise the PIN protection (a firmware upgrade that makes it
    mandatory), never lower it. The registration is what an administrator asserted about the
    charger; a charger cannot rename itself, so a different vendor or model is refused and
    so is older firmware, or any firmware under which the rule table would give a weaker
    requirement. Whoever owns the charger lowers protection explicitly, never the charger."""
    refused: list[Refused] = []
    if (vendor.strip().casefold(), model.strip().casefold()) != (
        registered.vendor.casefold(),
        registered.model.casefold(),
    ):
        refused.append(
            Refused(
                reason=Refusal.IDENTITY_CHANGED,
                detail=f"reported {vendor[:40]!r} {model[:40]!r}, registered "
                f"{registered.vendor!r} {registered.model!r}; the registration is kept",
            )
        )
    if firmware is None or firmware == registered.firmware:
        return ReportReview(facts=registered, refused=tuple(refused))
    try:
        reported = firmware_version(firmware)
    except InvalidInput:
        refused.append(
            Refused(
                reason=Refusal.FIRMWARE_UNREADABLE,
                detail=f"reported firmware {firmware[:64]!r} is not a version; "
                f"{registered.firmware} kept",
            )
        )
        return ReportReview(facts=registered, refused=tuple(refused))
    candidate = replace(registered, firmware=firmware)
    before = Version.parse(registered.firmware)
    if (before is not None and reported < before) or _PROTECTION[
        pin_policy(candidate).requirement
    ] < _PROTECTION[pin_policy(registered).requirement]:
        refused.append(
            Refused(
                reason=Refusal.FIRMWARE_DOWNGRADE,
                detail=f"reported firmware {firmware} after {registered.firmware}; "
                f"{registered.firmware} kept for the PIN policy",
            )
        )
        return ReportReview(facts=registered, refused=tuple(refused))
    return ReportReview(facts=candidate, refused=tuple(refused))
