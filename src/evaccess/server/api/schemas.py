"""Request and response bodies (wire names). Secrets only ever appear in the bodies named
for them: ``RevealedPinOut``, ``GeneratedKeypadPinOut``, ``RegistrationOut``, ``TokenOut``."""

from __future__ import annotations

import json
import re
from datetime import UTC, date, datetime
from typing import Annotated

from pydantic import (
    AfterValidator,
    AliasChoices,
    AliasPath,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    field_validator,
)

from evaccess.domain.access import GrantKind, MemberAccess, Role, StaffRole
from evaccess.domain.bluetooth_pin import PinStatus
from evaccess.domain.policy import PinRequirement

MAX_INT = 2**63 - 1
"""The largest integer a parameter may carry: SQLite's and PostgreSQL's BIGINT (beyond it
both databases raise instead of answering)."""
MIN_INT = -(2**63)

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def _printable(value: str) -> str:
    # PostgreSQL cannot store NUL; no name, id, email or password needs a control character.
    # The message does not quote the value: it may be a password.
    if _CONTROL.search(value):
        raise ValueError("control characters are not allowed")
    return value


Text = Annotated[str, AfterValidator(_printable)]
"""Every string the API takes (path, query, body): no control characters (NUL included)."""
Int = Annotated[int, Field(ge=MIN_INT, le=MAX_INT)]
"""Every integer the API takes: a 64-bit signed integer."""


def _representable(value: datetime) -> datetime:
    # Compared with UTC instants and stored in UTC: it must have one there.
    try:
        value.astimezone(UTC)
    except OverflowError:
        raise ValueError("out of range (years 1 to 9999 in UTC)") from None
    return value


Instant = Annotated[AwareDatetime, AfterValidator(_representable)]
"""Every date and time the API takes: with an offset (``Z`` or ``+02:00``), within range."""
Flag = StrictBool
"""Booleans in bodies are JSON ``true``/``false`` only (``0`` is not ``false``)."""


class In(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Out(BaseModel):
    """A response body, read from the service's objects by attribute name
    (``Out.model_validate(obj)``); a field named otherwise on the object says where it is
    with ``read_attr``."""

    model_config = ConfigDict(from_attributes=True)


def read_attr(name: str, *path: str) -> AliasChoices:
    """Field ``name`` read from ``path`` on the object (``view.charger.id``), or by its own
    name (FastAPI validates the response body again, by field names)."""
    first, *rest = path
    return AliasChoices(name, AliasPath(first, *rest) if rest else first)


class LoginIn(In):
    email: Text = Field(max_length=320)
    password: Text = Field(max_length=256)


class TokenOut(Out):
    token: str
    expires_at: datetime


class SignupIn(In):
    email: Text = Field(max_length=320)
    password: Text = Field(max_length=256)


class PasswordChangeIn(In):
    current_password: Text = Field(max_length=256)
    new_password: Text = Field(max_length=256)


class UserOut(Out):
    id: str
    email: str


class SignupOut(Out):
    """One answer for a new and a registered address alike (sign-up tells no more than
    login does)."""

    status: str = "accepted"
    detail: str = (
        "If this address had no account, it has one now with this password: log in. "
        "If it had one, nothing changed."
    )


class MembershipOut(Out):
    organisation_id: str
    name: str
    parent_id: str | None
    role: Role


class MeOut(UserOut):
    is_system_admin: bool
    staff_role: StaffRole | None = Field(
        description="support or manufacturer: the operator's own staff (else null)."
    )
    organisations: list[MembershipOut]


class OrganisationIn(In):
    name: Text = Field(min_length=1, max_length=200)


class OrganisationOut(Out):
    id: str
    name: str
    parent_id: str | None
    root_id: str
    keypad_pin_digits: int
    offline_keypad: bool
    member_access: MemberAccess
    role: Role | None = None


class SettingsIn(In):
    keypad_pin_digits: Int | None = Field(default=None, ge=4, le=8)
    offline_keypad: Flag | None = None


class MemberAccessIn(In):
    member_access: MemberAccess


class MemberIn(In):
    email: Text = Field(max_length=320)
    role: Role = Role.USER


class RoleIn(In):
    role: Role


class MemberOut(Out):
    user_id: str
    email: str
    role: Role
    has_keypad_pin: bool


class KeypadPinIn(In):
    pin: Text = Field(min_length=1, max_length=16)


class KeypadPinOut(Out):
    user_id: str
    digits: int


class GeneratedKeypadPinOut(KeypadPinOut):
    pin: str = Field(validation_alias=read_attr("pin", "generated_pin"))


class CrowdingOut(Out):
    members_with_pin: int
    digits: int
    space: int
    ratio: float
    warning: bool
    message: str | None


class ChargerIn(In):
    serial: Text = Field(min_length=1, max_length=64)
    vendor: Text = Field(min_length=1, max_length=100)
    model: Text = Field(min_length=1, max_length=100)
    firmware: Text = Field(min_length=1, max_length=64)
    production_date: date | None = None
    bluetooth: Flag = True
    keypad: Flag = False
    owner_email: Text | None = Field(default=None, max_length=320)
    factory_pin: Text | None = Field(default=None, min_length=6, max_length=6)


class ConnectorOut(Out):
    evse_id: int
    connector_id: int
    status: str
    updated_at: datetime


class SecurityEventOut(Out):
    event_type: str
    at: datetime
    tech_info: str | None
    received_at: datetime


class ChargerOut(Out):
    # Read from a ChargerView: the charger's row, the caller's access, the PIN policy.

    id: str = Field(validation_alias=read_attr("id", "charger", "id"))
    serial: str = Field(validation_alias=read_attr("serial", "charger", "serial"))
    organisation_id: str = Field(
        validation_alias=read_attr("organisation_id", "charger", "organisation_id")
    )
    vendor: str = Field(validation_alias=read_attr("vendor", "charger", "vendor"))
    model: str = Field(validation_alias=read_attr("model", "charger", "model"))
    firmware: str = Field(validation_alias=read_attr("firmware", "charger", "firmware"))
    production_date: date | None = Field(
        validation_alias=read_attr("production_date", "charger", "production_date")
    )
    bluetooth: bool = Field(validation_alias=read_attr("bluetooth", "charger", "has_bluetooth"))
    keypad: bool = Field(validation_alias=read_attr("keypad", "charger", "has_keypad"))
    access: list[str] = Field(validation_alias=read_attr("access", "bases"))
    bluetooth_pin_requirement: PinRequirement = Field(
        validation_alias=read_attr("bluetooth_pin_requirement", "policy", "requirement")
    )
    bluetooth_pin_changeable: bool = Field(
        validation_alias=read_attr("bluetooth_pin_changeable", "policy", "changeable")
    )
    online: bool = Field(validation_alias=read_attr("online", "charger", "online"))
    ocpp_protocol: str | None = Field(
        validation_alias=read_attr("ocpp_protocol", "charger", "ocpp_protocol")
    )
    last_seen_at: datetime | None = Field(
        validation_alias=read_attr("last_seen_at", "charger", "last_seen_at")
    )
    connectors: list[ConnectorOut] = []
    reported_settings: dict[str, str] = Field(
        default={}, validation_alias=read_attr("reported_settings", "settings")
    )
    """Non-secret settings the charger reported (e.g. after a phone changed them)."""
    recent_security_events: list[SecurityEventOut] | None = None
    """The newest few security events (newest first) for those who may see them (owner,
    service, organisation admins); ``null`` for others. All of them: .../security-events."""

    @field_validator("access", mode="before")
    @classmethod
    def _sorted_bases(cls, value: object) -> object:
        if isinstance(value, set | frozenset):  # the bases of the caller's access
            return sorted(str(getattr(b, "value", b)) for b in value)
        return value

    @field_validator("reported_settings", mode="before")
    @classmethod
    def _settings_by_key(cls, value: object) -> object:
        if isinstance(value, list | tuple):  # the charger's reported setting rows
            return {row.key: row.value for row in value}
        return value


class RegistrationOut(Out):
    charger: ChargerOut
    ocpp_password: str
    ocpp_note: str = "Shown once: configure it on the charger (OCPP Basic Auth password)."


class AssignIn(In):
    user_id: Text = Field(max_length=36)


class GrantOut(Out):
    # Read from a GrantView (the grant and its holder's email).

    id: str = Field(validation_alias=read_attr("id", "grant", "id"))
    user_id: str = Field(validation_alias=read_attr("user_id", "grant", "user_id"))
    email: str
    kind: GrantKind = Field(validation_alias=read_attr("kind", "grant", "kind"))
    created_at: datetime = Field(validation_alias=read_attr("created_at", "grant", "created_at"))
    expires_at: datetime | None = Field(
        validation_alias=read_attr("expires_at", "grant", "expires_at")
    )


class InvitationIn(In):
    email: Text = Field(max_length=320)
    kind: GrantKind = GrantKind.USER
    service_expires_at: Instant | None = None


class InvitationOut(Out):
    id: str
    email: str
    kind: GrantKind
    expires_at: datetime
    service_expires_at: datetime | None


class IssuedInvitationOut(InvitationOut):
    # Read from an IssuedInvitation (the invitation and its one-time token).

    id: str = Field(validation_alias=read_attr("id", "invitation", "id"))
    email: str = Field(validation_alias=read_attr("email", "invitation", "email"))
    kind: GrantKind = Field(validation_alias=read_attr("kind", "invitation", "kind"))
    expires_at: datetime = Field(
        validation_alias=read_attr("expires_at", "invitation", "expires_at")
    )
    service_expires_at: datetime | None = Field(
        validation_alias=read_attr("service_expires_at", "invitation", "service_expires_at")
    )
    token: str
    note: str = "Shown once: send it to the invitee, who accepts it while logged in."


class AcceptIn(In):
    token: Text = Field(min_length=10, max_length=100)


class PinStateOut(Out):
    requirement: PinRequirement
    changeable: bool
    required: bool
    status: PinStatus
    can_reveal: bool
    can_enable: bool
    can_change: bool
    rule: str
    pending_since: datetime | None
    charger_online: bool
    """The charger is connected now: a pending PIN reaches it at once (else on its next
    connect)."""


class CommandOut(Out):
    """A command to a charger, accepted: on its way now, or waiting in the outbox for the
    charger's next connect (``charger_online`` false)."""

    command_id: str
    kind: str
    charger_online: bool
    detail: str


class PinChangeIn(In):
    pin: Text | None = Field(default=None, min_length=1, max_length=16)


class RevokePhonesIn(In):
    phone_id: Text | None = Field(default=None, min_length=1, max_length=64)
    """One phone's id; absent: every phone."""


class RevealedPinOut(Out):
    pin: str
    status: PinStatus
    basis: str


class RevealEventOut(Out):
    at: datetime
    actor_email: str | None
    basis: str | None
    request_id: str | None


class TransactionOut(Out):
    """A charging session. The token that started it appears by type only."""

    id: str
    transaction_id: str
    charger_serial: str
    user_email: str | None
    started_at: datetime
    stopped_at: datetime | None
    energy_wh: float | None
    meter_wh: float | None
    token_type: str | None
    stop_reason: str | None
    offline: bool


class AuditRecordOut(Out):
    seq: int
    at: datetime
    action: str
    actor_id: str | None
    organisation_id: str | None
    charger_id: str | None
    subject_id: str | None
    basis: str | None
    request_id: str | None
    details: dict[str, object]

    @field_validator("details", mode="before")
    @classmethod
    def _parsed(cls, value: object) -> object:
        return json.loads(value) if isinstance(value, str) else value  # stored as JSON text


class FieldError(BaseModel):
    loc: list[str]
    msg: str


class Problem(BaseModel):
    """An error (RFC 9457, ``application/problem+json``). ``code`` is stable: branch on it,
    not on ``detail``, which is for people."""

    type: str = Field(examples=["urn:evaccess:problem:not_found"])
    title: str
    status: int
    detail: str
    code: str = Field(examples=["not_found"])
    request_id: str | None = Field(description="Also in the X-Request-ID header; quote it.")
    errors: list[FieldError] | None = Field(
        default=None, description="invalid_input only: which fields, and why (never the value)."
    )
