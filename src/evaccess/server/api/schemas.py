"""Request and response bodies (wire names). Secrets only ever appear in the bodies named
for them: ``RevealedPinOut``, ``GeneratedKeypadPinOut``, ``RegistrationOut``, ``TokenOut``."""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictBool

from evaccess.domain.access import GrantKind, MemberAccess, Role
from evaccess.domain.policy import PinRequirement
from evaccess.server.services.bluetooth_pins import PinStatus

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
Flag = StrictBool
"""Booleans in bodies are JSON ``true``/``false`` only (``0`` is not ``false``)."""


class In(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LoginIn(In):
    email: Text = Field(max_length=320)
    password: Text = Field(max_length=256)


class TokenOut(BaseModel):
    token: str
    expires_at: datetime


class SignupIn(In):
    email: Text = Field(max_length=320)
    password: Text = Field(max_length=256)


class PasswordChangeIn(In):
    current_password: Text = Field(max_length=256)
    new_password: Text = Field(max_length=256)


class UserOut(BaseModel):
    id: str
    email: str


class SignupOut(BaseModel):
    """One answer for a new and a registered address alike (sign-up tells no more than
    login does)."""

    status: str = "accepted"
    detail: str = (
        "If this address had no account, it has one now with this password: log in. "
        "If it had one, nothing changed."
    )


class MembershipOut(BaseModel):
    organisation_id: str
    name: str
    parent_id: str | None
    role: Role


class MeOut(UserOut):
    is_system_admin: bool
    organisations: list[MembershipOut]


class OrganisationIn(In):
    name: Text = Field(min_length=1, max_length=200)


class OrganisationOut(BaseModel):
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


class MemberOut(BaseModel):
    user_id: str
    email: str
    role: Role
    has_keypad_pin: bool


class KeypadPinIn(In):
    pin: Text = Field(min_length=1, max_length=16)


class KeypadPinOut(BaseModel):
    user_id: str
    digits: int


class GeneratedKeypadPinOut(KeypadPinOut):
    pin: str


class CrowdingOut(BaseModel):
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


class ConnectorOut(BaseModel):
    evse_id: int
    connector_id: int
    status: str
    updated_at: datetime


class SecurityEventOut(BaseModel):
    event_type: str
    at: datetime
    tech_info: str | None
    received_at: datetime


class ChargerOut(BaseModel):
    id: str
    serial: str
    organisation_id: str
    vendor: str
    model: str
    firmware: str
    production_date: date | None
    bluetooth: bool
    keypad: bool
    access: list[str]
    bluetooth_pin_requirement: PinRequirement
    bluetooth_pin_changeable: bool
    online: bool
    ocpp_protocol: str | None
    last_seen_at: datetime | None
    connectors: list[ConnectorOut] = []
    reported_settings: dict[str, str] = {}
    """Non-secret settings the charger reported (e.g. after a phone changed them)."""
    recent_security_events: list[SecurityEventOut] | None = None
    """The newest few security events (newest first) for those who may see them (owner,
    service, organisation admins); ``null`` for others. All of them: .../security-events."""


class RegistrationOut(BaseModel):
    charger: ChargerOut
    ocpp_password: str
    ocpp_note: str = "Shown once: configure it on the charger (OCPP Basic Auth password)."


class AssignIn(In):
    user_id: Text = Field(max_length=36)


class GrantOut(BaseModel):
    id: str
    user_id: str
    email: str
    kind: GrantKind
    created_at: datetime
    expires_at: datetime | None


class InvitationIn(In):
    email: Text = Field(max_length=320)
    kind: GrantKind = GrantKind.USER
    service_expires_at: datetime | None = None


class InvitationOut(BaseModel):
    id: str
    email: str
    kind: GrantKind
    expires_at: datetime
    service_expires_at: datetime | None


class IssuedInvitationOut(InvitationOut):
    token: str
    note: str = "Shown once: send it to the invitee, who accepts it while logged in."


class AcceptIn(In):
    token: Text = Field(min_length=10, max_length=100)


class PinStateOut(BaseModel):
    requirement: PinRequirement
    changeable: bool
    required: bool
    status: PinStatus
    can_reveal: bool
    can_enable: bool
    can_change: bool
    rule: str
    pending_since: datetime | None


class PinChangeIn(In):
    pin: Text | None = Field(default=None, min_length=1, max_length=16)


class RevokePhonesIn(In):
    phone_id: Text | None = Field(default=None, min_length=1, max_length=64)
    """One phone's id; absent: every phone."""


class RevealedPinOut(BaseModel):
    pin: str
    status: PinStatus
    basis: str


class RevealEventOut(BaseModel):
    at: datetime
    actor_email: str | None
    basis: str | None
    request_id: str | None


class TransactionOut(BaseModel):
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


class AuditRecordOut(BaseModel):
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
