"""Server -> charger calls: each outbox command as OCPP 2.0.1 and 1.6J requests.

A command becomes one or more *steps* (one CALL each; 1.6J ChangeConfiguration carries one
key per call, OCPP 1.6 §5.3) and counts as accepted only when every step is. Values the
charger must keep secret (the Bluetooth PIN) travel only in the request payload: the
endpoint's logs mask them (``protocol.ocpp_frames.redact``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final

from evaccess.protocol.ocpp_components import (
    AUTH_CTRLR_COMPONENT,
    BLUETOOTH_COMPONENT,
    KEYCODE_TOKEN_TYPE,
    MASTER_PASS_GROUP_VARIABLE,
    V16_CONFIGURATION_KEYS,
    BluetoothVariable,
)
from evaccess.protocol.ocpp_frames import OcppVersion
from evaccess.server.ocpp.backend import (
    ChargerCommand,
    ClearCache,
    LocalListEntry,
    ReenablePinPairing,
    RevokeCredentials,
    SendLocalList,
    SetBluetoothPin,
    SetMasterPassGroup,
)

ALL_PHONES: Final = "*"

# SetVariableStatusEnumType (2.0.1) / ConfigurationStatus (1.6) values that mean "applied".
_APPLIED: Final = frozenset({"Accepted", "RebootRequired"})


@dataclass(frozen=True, kw_only=True, slots=True)
class Step:
    """One CALL and how to read its CALLRESULT."""

    action: str
    payload: dict[str, Any]
    accepted: Callable[[dict[str, Any]], bool]


def _bool(value: bool) -> str:
    return "true" if value else "false"


def _settings(command: ChargerCommand) -> list[tuple[BluetoothVariable, str]]:
    """The Bluetooth component variables a command writes, in order."""
    if isinstance(command, SetBluetoothPin):
        settings = [
            (BluetoothVariable.PIN_REQUIRED, _bool(command.required)),
            (BluetoothVariable.PIN_CHANGEABLE, _bool(command.changeable)),
        ]
        if command.pin is not None:
            settings.insert(0, (BluetoothVariable.PIN, command.pin))
        return settings
    if isinstance(command, RevokeCredentials):
        return [(BluetoothVariable.REVOKE_CREDENTIALS, command.phone_id or ALL_PHONES)]
    if isinstance(command, ReenablePinPairing):
        return [(BluetoothVariable.PIN_PAIRING_ENABLED, "true")]
    raise TypeError(type(command).__name__)


def _all_variables_applied(payload: dict[str, Any]) -> bool:
    results = payload.get("setVariableResult", [])
    return bool(results) and all(r.get("attributeStatus") in _APPLIED for r in results)


def _configuration_applied(payload: dict[str, Any]) -> bool:
    return payload.get("status") in _APPLIED


def _list_accepted(payload: dict[str, Any]) -> bool:
    return payload.get("status") == "Accepted"


@dataclass(frozen=True, kw_only=True, slots=True)
class _LocalListWire:
    """Where 2.0.1 and 1.6J differ in local list messages: only the names."""

    version_key: str
    info_key: str
    token: Callable[[str], dict[str, Any]]
    typed: Callable[[str, str], dict[str, Any]]
    expiry_key: str
    group: Callable[[str], dict[str, Any]]


_LOCAL_LIST_WIRE: Final[dict[OcppVersion, _LocalListWire]] = {
    # SendLocalListRequest / GetLocalListVersionResponse (2.0.1 D01, D02).
    OcppVersion.V201: _LocalListWire(
        version_key="versionNumber",
        info_key="idTokenInfo",
        token=lambda code: {"idToken": {"idToken": code, "type": KEYCODE_TOKEN_TYPE}},
        typed=lambda value, kind: {"idToken": {"idToken": value, "type": kind}},
        expiry_key="cacheExpiryDateTime",
        group=lambda group: {"groupIdToken": {"idToken": group, "type": "Central"}},
    ),
    # SendLocalList.req / GetLocalListVersion.conf (1.6 §6.40, §6.26).
    OcppVersion.V16: _LocalListWire(
        version_key="listVersion",
        info_key="idTagInfo",
        token=lambda code: {"idTag": code},
        typed=lambda value, kind: {"idTag": value},
        expiry_key="expiryDate",
        group=lambda group: {"parentIdTag": group},
    ),
}


def _info(entry: LocalListEntry, wire: _LocalListWire) -> dict[str, Any]:
    info: dict[str, Any] = {"status": "Accepted"}
    if entry.group_id_token is not None:
        info |= wire.group(entry.group_id_token)
    if entry.expires_at is not None:
        info[wire.expiry_key] = entry.expires_at.isoformat().replace("+00:00", "Z")
    return info


def _send_local_list(command: SendLocalList, version: OcppVersion) -> dict[str, Any]:
    """Full or Differential; an entry without token info is a removal (2.0.1 D01, 1.6 §5.15)."""
    wire = _LOCAL_LIST_WIRE[version]
    entries = [
        {**wire.typed(entry.id_token, entry.token_type), wire.info_key: _info(entry, wire)}
        for entry in command.entries
    ]
    entries += [wire.token(code) for code in command.removed]
    entries += [wire.typed(value, kind) for value, kind in command.removed_tokens]
    payload: dict[str, Any] = {
        wire.version_key: command.version,
        "updateType": "Full" if command.full else "Differential",
    }
    if entries:
        payload["localAuthorizationList"] = entries  # minItems 1: absent when empty
    return payload


def command_steps(command: ChargerCommand, version: OcppVersion) -> tuple[Step, ...]:
    """The CALLs that carry ``command`` to a charger speaking ``version`` (none: the
    version has no way to carry it; the session completes it without a Call)."""
    if isinstance(command, SendLocalList):
        payload = _send_local_list(command, version)
        return (Step(action="SendLocalList", payload=payload, accepted=_list_accepted),)
    if isinstance(command, ClearCache):
        # ClearCache (2.0.1 C11; 1.6 §5.4): the same in both versions. Rejected means the
        # charger keeps no cache, which is as good.
        return (Step(action="ClearCache", payload={}, accepted=lambda _payload: True),)
    if isinstance(command, SetMasterPassGroup):
        if version is not OcppVersion.V201:
            return ()  # 1.6J has no such key: nothing to send (docs/ocpp.md)
        # SetVariables on the standard AuthCtrlr component (2.0.1 B05, C16); empty clears.
        data = [
            {
                "attributeValue": command.group or "",
                "component": {"name": AUTH_CTRLR_COMPONENT},
                "variable": {"name": MASTER_PASS_GROUP_VARIABLE},
            }
        ]
        return (
            Step(
                action="SetVariables",
                payload={"setVariableData": data},
                accepted=_all_variables_applied,
            ),
        )
    settings = _settings(command)
    if version is OcppVersion.V201:
        # SetVariables on the custom component (2.0.1 B05); all variables in one request.
        data = [
            {
                "attributeValue": value,
                "component": {"name": BLUETOOTH_COMPONENT},
                "variable": {"name": variable.value},
            }
            for variable, value in settings
        ]
        return (
            Step(
                action="SetVariables",
                payload={"setVariableData": data},
                accepted=_all_variables_applied,
            ),
        )
    return tuple(
        Step(
            action="ChangeConfiguration",
            payload={"key": V16_CONFIGURATION_KEYS[variable], "value": value},
            accepted=_configuration_applied,
        )
        for variable, value in settings
    )


def local_list_version_step(version: OcppVersion) -> Step:
    """GetLocalListVersion (2.0.1 D02; 1.6 §5.10): asked on every connect."""
    return Step(action="GetLocalListVersion", payload={}, accepted=lambda _payload: True)


def reported_list_version(payload: dict[str, Any], version: OcppVersion) -> int:
    value = payload.get(_LOCAL_LIST_WIRE[version].version_key, 0)
    return value if isinstance(value, int) else 0


class Registration(StrEnum):
    """Where a connection stands with its BootNotification (2.0.1 B01-B03; 1.6 §4.2)."""

    CONNECTED = "Connected"
    """No request yet: a charger that (re)booted sends BootNotification first."""
    BOOTING = "Booting"
    """A BootNotification arrived and is not answered Accepted or Pending (yet)."""
    ACCEPTED = "Accepted"
    """Answered Accepted, or the charger's first request was another one: it reconnected
    without rebooting and holds the registration it was accepted with (a charger not
    accepted sends nothing but BootNotification, 2.0.1 B02/B03, 1.6 §4.2)."""
    PENDING = "Pending"
    REJECTED = "Rejected"


EVERY_ACTION: Final = None

SERVER_CALLS: Final[dict[tuple[OcppVersion, Registration], frozenset[str] | None]] = {
    # Nothing until the BootNotification is answered: a Call ahead of its CALLRESULT reaches
    # a charger that may not take requests yet (and B01 orders the boot first).
    (OcppVersion.V201, Registration.CONNECTED): frozenset(),
    (OcppVersion.V201, Registration.BOOTING): frozenset(),
    (OcppVersion.V201, Registration.ACCEPTED): EVERY_ACTION,
    # B02: while Pending the CSMS may read and change the station's configuration.
    (OcppVersion.V201, Registration.PENDING): frozenset(
        {"GetVariables", "SetVariables", "GetBaseReport", "GetReport"}
    ),
    (OcppVersion.V201, Registration.REJECTED): frozenset(),  # B03: nothing
    (OcppVersion.V16, Registration.CONNECTED): frozenset(),
    (OcppVersion.V16, Registration.BOOTING): frozenset(),
    (OcppVersion.V16, Registration.ACCEPTED): EVERY_ACTION,
    # §4.2: while Pending, "retrieve information from the Charge Point or change its
    # configuration".
    (OcppVersion.V16, Registration.PENDING): frozenset({"GetConfiguration", "ChangeConfiguration"}),
    (OcppVersion.V16, Registration.REJECTED): frozenset(),
}
"""Which server Calls a connection may carry in each registration state (None: any)."""


def may_send(version: OcppVersion, registration: Registration, action: str) -> bool:
    allowed = SERVER_CALLS[(version, registration)]
    return allowed is EVERY_ACTION or action in allowed
