"""What the charger sends, in each OCPP dialect: one builder per version, same methods.

The firmware (``charger/firmware.py``) thinks in charger terms (boot, keypad code, session
started); these builders turn that into the request of the negotiated version, as a
``Request`` (action + snake_case payload) that can be queued on disk and sent later by the
``ocpp`` library's ``ChargePoint.call``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol

from evaccess.charger.config import ChargerConfig
from evaccess.protocol.ocpp_components import KEYCODE_TOKEN_TYPE, VENDOR_ID, DataTransferMessage
from evaccess.protocol.ocpp_frames import OcppVersion

EVSE_ID = 1
CONNECTOR_ID = 1


class StopReason(StrEnum):
    """Why a session ended; the values are common to 2.0.1 ReasonEnumType and 1.6 Reason."""

    EV_DISCONNECTED = "EVDisconnected"
    POWER_LOSS = "PowerLoss"
    MASTER_PASS = "MasterPass"
    """2.0.1 only (C16); 1.6 Reason has no such value: ``Local``."""


# 2.0.1 TriggerReasonEnumType for each way a session ends here (E06).
_V201_TRIGGER = {
    StopReason.EV_DISCONNECTED: "EVDeparted",
    StopReason.POWER_LOSS: "AbnormalCondition",
    StopReason.MASTER_PASS: "StopAuthorized",
}
_V16_REASON = {StopReason.MASTER_PASS: "Local"}


@dataclass(frozen=True, kw_only=True, slots=True)
class TokenInfo:
    """What an answer says of a token (2.0.1 IdTokenInfo, 1.6 IdTagInfo)."""

    status: str
    group_id_token: str | None = None
    cache_expiry: datetime | None = None
    """``cacheExpiryDateTime`` / ``expiryDate``: how long the charger may cache the answer."""


def parse_time(value: Any) -> datetime | None:
    """An OCPP date-time with its offset, or ``None`` (absent, malformed or naive)."""
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


class ConnectorState(StrEnum):
    """The connector states this emulator reports (2.0.1 ConnectorStatusEnumType)."""

    AVAILABLE = "Available"
    OCCUPIED = "Occupied"
    UNAVAILABLE = "Unavailable"


# 1.6J ChargePointStatus for the same states (OCPP 1.6 §7.7).
_V16_STATUS = {
    ConnectorState.AVAILABLE: "Available",
    ConnectorState.OCCUPIED: "Charging",
    ConnectorState.UNAVAILABLE: "Unavailable",
}


@dataclass(frozen=True, kw_only=True, slots=True)
class Request:
    """One Call: the action name and its payload in snake_case (the library's dataclass fields)."""

    action: str
    payload: dict[str, Any]


def timestamp(now: datetime) -> str:
    """OCPP dateTime: RFC 3339 in UTC with a ``Z`` and millisecond precision."""
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


class Messages(Protocol):
    """Builds every request the charger sends; one implementation per OCPP version."""

    version: OcppVersion

    def boot(self, config: ChargerConfig) -> Request: ...

    def heartbeat(self) -> Request: ...

    def status(self, status: ConnectorState, now: datetime) -> Request: ...

    def authorize(self, code: str, token_type: str) -> Request: ...

    def token_info(self, result: dict[str, Any]) -> TokenInfo | None:
        """The token answer of an Authorize or transaction reply, if it carries one."""

    def transaction_started(
        self,
        *,
        transaction_id: str,
        code: str,
        token_type: str,
        now: datetime,
        seq_no: int,
        offline: bool,
    ) -> Request: ...

    def transaction_ended(
        self,
        *,
        transaction_id: str,
        now: datetime,
        seq_no: int,
        offline: bool,
        reason: StopReason,
    ) -> Request: ...

    def security_event(self, event_type: str, now: datetime, tech_info: str | None) -> Request: ...

    def data_transfer(self, message_id: DataTransferMessage, data: dict[str, Any]) -> Request: ...


class V201Messages:
    """OCPP 2.0.1 requests (Part 2: B01 boot, G01 status, C04 KeyCode, E01-E07 transactions)."""

    version = OcppVersion.V201

    def boot(self, config: ChargerConfig) -> Request:
        station = {
            "model": config.model,
            "vendor_name": config.vendor,
            "serial_number": config.serial,
            "firmware_version": config.firmware,
        }
        return Request(
            action="BootNotification", payload={"charging_station": station, "reason": "PowerUp"}
        )

    def heartbeat(self) -> Request:
        return Request(action="Heartbeat", payload={})

    def status(self, status: ConnectorState, now: datetime) -> Request:
        return Request(
            action="StatusNotification",
            payload={
                "timestamp": timestamp(now),
                "connector_status": status.value,
                "evse_id": EVSE_ID,
                "connector_id": CONNECTOR_ID,
            },
        )

    def authorize(self, code: str, token_type: str = KEYCODE_TOKEN_TYPE) -> Request:
        # C04: a PIN typed on the keypad travels as an IdToken of type KeyCode; a card as
        # its own type (C01).
        return Request(
            action="Authorize", payload={"id_token": {"id_token": code, "type": token_type}}
        )

    def token_info(self, result: dict[str, Any]) -> TokenInfo | None:
        info = result.get("id_token_info")
        if not isinstance(info, dict):
            return None
        group = info.get("group_id_token")
        return TokenInfo(
            status=str(info["status"]),
            group_id_token=group.get("id_token") if isinstance(group, dict) else None,
            cache_expiry=parse_time(info.get("cache_expiry_date_time")),
        )

    def transaction_started(
        self,
        *,
        transaction_id: str,
        code: str,
        token_type: str = KEYCODE_TOKEN_TYPE,
        now: datetime,
        seq_no: int,
        offline: bool,
    ) -> Request:
        payload: dict[str, Any] = {
            "event_type": "Started",
            "timestamp": timestamp(now),
            "trigger_reason": "Authorized",
            "seq_no": seq_no,
            "transaction_info": {"transaction_id": transaction_id},
            "id_token": {"id_token": code, "type": token_type},
            "evse": {"id": EVSE_ID, "connector_id": CONNECTOR_ID},
        }
        if offline:
            payload["offline"] = True  # E04: events made while offline carry offline=true
        return Request(action="TransactionEvent", payload=payload)

    def transaction_ended(
        self,
        *,
        transaction_id: str,
        now: datetime,
        seq_no: int,
        offline: bool,
        reason: StopReason,
    ) -> Request:
        payload: dict[str, Any] = {
            "event_type": "Ended",
            "timestamp": timestamp(now),
            "trigger_reason": _V201_TRIGGER[reason],
            "seq_no": seq_no,
            "transaction_info": {"transaction_id": transaction_id, "stopped_reason": reason.value},
            "evse": {"id": EVSE_ID, "connector_id": CONNECTOR_ID},
        }
        if offline:
            payload["offline"] = True
        return Request(action="TransactionEvent", payload=payload)

    def security_event(self, event_type: str, now: datetime, tech_info: str | None) -> Request:
        payload: dict[str, Any] = {"type": event_type, "timestamp": timestamp(now)}
        if tech_info is not None:
            payload["tech_info"] = tech_info
        return Request(action="SecurityEventNotification", payload=payload)

    def data_transfer(self, message_id: DataTransferMessage, data: dict[str, Any]) -> Request:
        return Request(
            action="DataTransfer",
            payload={"vendor_id": VENDOR_ID, "message_id": message_id.value, "data": data},
        )


class V16Messages:
    """OCPP 1.6J requests (§4: BootNotification, StatusNotification, Authorize, Start/Stop)."""

    version = OcppVersion.V16

    def boot(self, config: ChargerConfig) -> Request:
        return Request(
            action="BootNotification",
            payload={
                "charge_point_vendor": config.vendor,
                "charge_point_model": config.model,
                "charge_point_serial_number": config.serial,
                "firmware_version": config.firmware,
            },
        )

    def heartbeat(self) -> Request:
        return Request(action="Heartbeat", payload={})

    def status(self, status: ConnectorState, now: datetime) -> Request:
        return Request(
            action="StatusNotification",
            payload={
                "connector_id": CONNECTOR_ID,
                "error_code": "NoError",
                "status": _V16_STATUS[status],
                "timestamp": timestamp(now),
            },
        )

    def authorize(self, code: str, token_type: str = KEYCODE_TOKEN_TYPE) -> Request:
        return Request(action="Authorize", payload={"id_tag": code})  # 1.6: untyped

    def token_info(self, result: dict[str, Any]) -> TokenInfo | None:
        info = result.get("id_tag_info")
        if not isinstance(info, dict):
            return None
        parent = info.get("parent_id_tag")
        return TokenInfo(
            status=str(info["status"]),
            group_id_token=parent if isinstance(parent, str) else None,
            cache_expiry=parse_time(info.get("expiry_date")),
        )

    def transaction_started(
        self,
        *,
        transaction_id: str,
        code: str,
        token_type: str = KEYCODE_TOKEN_TYPE,
        now: datetime,
        seq_no: int,
        offline: bool,
    ) -> Request:
        # 1.6J has no charger-side transaction id: the server assigns one in the reply.
        return Request(
            action="StartTransaction",
            payload={
                "connector_id": CONNECTOR_ID,
                "id_tag": code,
                "meter_start": 0,
                "timestamp": timestamp(now),
            },
        )

    def transaction_ended(
        self,
        *,
        transaction_id: str,
        now: datetime,
        seq_no: int,
        offline: bool,
        reason: StopReason,
    ) -> Request:
        # transaction_id is filled in at send time from the StartTransaction reply.
        return Request(
            action="StopTransaction",
            payload={
                "meter_stop": 0,
                "timestamp": timestamp(now),
                "reason": _V16_REASON.get(reason, reason.value),
            },
        )

    def security_event(self, event_type: str, now: datetime, tech_info: str | None) -> Request:
        data: dict[str, Any] = {"type": event_type, "timestamp": timestamp(now)}
        if tech_info is not None:
            data["techInfo"] = tech_info
        return self.data_transfer(DataTransferMessage.SECURITY_EVENT, data)

    def data_transfer(self, message_id: DataTransferMessage, data: dict[str, Any]) -> Request:
        # 1.6J DataTransfer.data is a string: the JSON document travels serialized.
        return Request(
            action="DataTransfer",
            payload={
                "vendor_id": VENDOR_ID,
                "message_id": message_id.value,
                "data": json.dumps(data, separators=(",", ":")),
            },
        )


MESSAGES: dict[OcppVersion, Messages] = {
    OcppVersion.V201: V201Messages(),
    OcppVersion.V16: V16Messages(),
}
