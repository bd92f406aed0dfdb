"""Charger -> server requests: one thin handler per (version, action), in one table.

Each handler reads a payload already validated against the OCA schema, calls one
``OcppBackend`` method, and returns the CALLRESULT payload as a plain dict. Handlers never
send a server-initiated CALL (the ``ocpp`` library deadlocks that way, docs/ocpp.md): when
the outbox may have grown (BootNotification re-evaluates the PIN policy) they ask the
session to flush it after the reply is sent, and BootNotification tells the session the
registration status it answered (server Calls wait for Accepted).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from evaccess.domain.clock import Clock
from evaccess.protocol.ocpp_components import (
    KEYCODE_TOKEN_TYPE,
    VENDOR_ID,
    DataTransferMessage,
)
from evaccess.protocol.ocpp_frames import OcppVersion
from evaccess.server.ocpp.backend import (
    AuthorizeResult,
    BootInfo,
    OcppBackend,
    TransactionEvent,
    TransactionEventType,
)
from evaccess.server.ocpp.commands import Registration

HEARTBEAT_INTERVAL_S: Final = 300
"""BootNotificationResponse ``interval`` (2.0.1 B01; 1.6 §4.2): seconds between Heartbeats."""

V16_STOP_SEQ_NO: Final = 2**31 - 1
"""1.6J has no seqNo: Start is 0, MeterValues use their epoch second, Stop this maximum."""


@dataclass(frozen=True, kw_only=True, slots=True)
class HandlerContext:
    charger_id: str
    version: OcppVersion
    backend: OcppBackend
    clock: Clock


@dataclass(frozen=True, kw_only=True, slots=True)
class Reply:
    payload: dict[str, Any]
    flush_outbox: bool = False
    """Fetch ``pending_commands`` after this reply is sent."""
    registration: Registration | None = None
    """A BootNotification's answered status: what the server may send from now on
    (``commands.SERVER_CALLS``)."""


Handler = Callable[[HandlerContext, dict[str, Any]], Awaitable[Reply]]


def _timestamp(value: Any, clock: Clock) -> datetime:
    """A schema-checked date-time, or now when a charger sent none."""
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            pass
    return clock.now()


def _now(clock: Clock) -> str:
    return clock.now().isoformat().replace("+00:00", "Z")


def id_token_status(result: AuthorizeResult | None, token_type: str) -> str:
    """AuthorizationStatusEnumType (2.0.1) / AuthorizationStatus (1.6) for a token."""
    if result is not None and result.accepted:
        return "Accepted"
    if result is not None and result.locked:
        return "Blocked"  # the keypad is locked (2.0.1 C04.FR.06 back-off)
    if result is not None and result.status is not None:
        return result.status  # a card: Blocked, Expired, Invalid, Unknown as stored
    if token_type != KEYCODE_TOKEN_TYPE:
        return "Unknown"
    return "Invalid"


def _wire_time(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def id_token_info(
    result: AuthorizeResult | None, token_type: str, version: OcppVersion
) -> dict[str, Any]:
    """IdTokenInfoType (2.0.1 §2.47) / IdTagInfo (1.6 §7.24): status, the token's group
    (``groupIdToken`` / ``parentIdTag``) and how long the charger may cache the answer
    (``cacheExpiryDateTime`` / ``expiryDate``)."""
    status = id_token_status(result, token_type)
    if version is OcppVersion.V16:
        info: dict[str, Any] = {"status": "Invalid" if status == "Unknown" else status}
        if result is not None and result.group_id_token is not None:
            info["parentIdTag"] = result.group_id_token
        if result is not None and result.cache_expiry is not None:
            info["expiryDate"] = _wire_time(result.cache_expiry)
        return info
    info = {"status": status}
    if result is not None and result.group_id_token is not None:
        info["groupIdToken"] = {"idToken": result.group_id_token, "type": "Central"}
    if result is not None and result.cache_expiry is not None:
        info["cacheExpiryDateTime"] = _wire_time(result.cache_expiry)
    return info


# --- shared by both versions -------------------------------------------------------------


async def heartbeat(ctx: HandlerContext, payload: dict[str, Any]) -> Reply:
    """Heartbeat (2.0.1 G02; 1.6 §4.6)."""
    await ctx.backend.heartbeat(ctx.charger_id, ctx.clock.now())
    return Reply(payload={"currentTime": _now(ctx.clock)})


async def security_event(ctx: HandlerContext, payload: dict[str, Any]) -> Reply:
    """SecurityEventNotification (2.0.1 A04; 1.6 security whitepaper)."""
    await ctx.backend.security_event(
        ctx.charger_id,
        event_type=payload["type"],
        at=_timestamp(payload.get("timestamp"), ctx.clock),
        tech_info=payload.get("techInfo"),
    )
    return Reply(payload={})


async def accept_empty(ctx: HandlerContext, payload: dict[str, Any]) -> Reply:
    """Accepted and not stored (NotifyEvent, MeterValues outside a transaction)."""
    return Reply(payload={})


def _data_object(data: Any) -> dict[str, Any] | None:
    """DataTransfer data: an object (2.0.1 ``anyType``) or a JSON string (1.6 ``string``)."""
    if isinstance(data, str):
        try:
            data = json.loads(data)
        except ValueError:
            return None
    return data if isinstance(data, dict) else None


async def data_transfer(ctx: HandlerContext, payload: dict[str, Any]) -> Reply:
    """DataTransfer (2.0.1 P01; 1.6 §4.3) carrying evaccess messages (docs/ocpp.md)."""
    if payload["vendorId"] != VENDOR_ID:
        return Reply(payload={"status": "UnknownVendorId"})
    try:
        message = DataTransferMessage(payload.get("messageId", ""))
    except ValueError:
        return Reply(payload={"status": "UnknownMessageId"})
    data = _data_object(payload.get("data"))
    if data is None:
        return Reply(payload={"status": "Rejected"})
    accepted = await _DATA_TRANSFER_HANDLERS[message](ctx, data)
    return Reply(payload={"status": "Accepted" if accepted else "Rejected"})


async def _pin_changed(ctx: HandlerContext, data: dict[str, Any]) -> bool:
    pin = data.get("pin")
    if not isinstance(pin, str) or not pin.isdigit():
        return False
    return await ctx.backend.pin_changed_by_charger(ctx.charger_id, pin)


async def _configuration_changed(ctx: HandlerContext, data: dict[str, Any]) -> bool:
    changes = {str(key): str(value) for key, value in data.items()}
    await ctx.backend.configuration_reported(ctx.charger_id, changes)
    return True


async def _security_event_transfer(ctx: HandlerContext, data: dict[str, Any]) -> bool:
    event_type = data.get("type")
    if not isinstance(event_type, str) or not event_type:
        return False
    tech_info = data.get("techInfo")
    await ctx.backend.security_event(
        ctx.charger_id,
        event_type=event_type,
        at=_timestamp(data.get("timestamp"), ctx.clock),
        tech_info=tech_info if isinstance(tech_info, str) else None,
    )
    return True


_DATA_TRANSFER_HANDLERS: Final[
    dict[DataTransferMessage, Callable[[HandlerContext, dict[str, Any]], Awaitable[bool]]]
] = {
    DataTransferMessage.BLUETOOTH_PIN_CHANGED: _pin_changed,
    DataTransferMessage.CONFIGURATION_CHANGED: _configuration_changed,
    DataTransferMessage.SECURITY_EVENT: _security_event_transfer,
}


async def _boot(ctx: HandlerContext, info: BootInfo) -> Reply:
    """Record the boot, accept it, then flush the outbox (boot may queue a PIN)."""
    await ctx.backend.boot(ctx.charger_id, info)
    registration = Registration.ACCEPTED
    return Reply(
        payload={
            "currentTime": _now(ctx.clock),
            "interval": HEARTBEAT_INTERVAL_S,
            "status": registration.value,
        },
        flush_outbox=True,
        registration=registration,
    )


# --- OCPP 2.0.1 ----------------------------------------------------------------------------


async def boot_notification_v201(ctx: HandlerContext, payload: dict[str, Any]) -> Reply:
    """BootNotification (2.0.1 B01): recorded, always Accepted."""
    station = payload["chargingStation"]
    info = BootInfo(
        vendor=station["vendorName"],
        model=station["model"],
        firmware=station.get("firmwareVersion"),
        serial=station.get("serialNumber"),
    )
    return await _boot(ctx, info)


async def status_notification_v201(ctx: HandlerContext, payload: dict[str, Any]) -> Reply:
    """StatusNotification (2.0.1 G01)."""
    await ctx.backend.status(
        ctx.charger_id,
        evse_id=payload["evseId"],
        connector_id=payload["connectorId"],
        status=payload["connectorStatus"],
        at=_timestamp(payload["timestamp"], ctx.clock),
    )
    return Reply(payload={})


async def authorize_v201(ctx: HandlerContext, payload: dict[str, Any]) -> Reply:
    """Authorize (2.0.1 C01 cards and other tokens, C04 KeyCode)."""
    token = payload["idToken"]
    result = await ctx.backend.authorize_token(ctx.charger_id, token["idToken"], token["type"])
    return Reply(payload={"idTokenInfo": id_token_info(result, token["type"], V201)})


def _energy_wh(meter_values: list[dict[str, Any]]) -> float | None:
    """The last Energy.Active.Import.Register reading (the default measurand)."""
    reading = None
    for meter_value in meter_values:
        for sampled in meter_value.get("sampledValue", []):
            if sampled.get("measurand", "Energy.Active.Import.Register") == (
                "Energy.Active.Import.Register"
            ):
                multiplier = sampled.get("unitOfMeasure", {}).get("multiplier", 0)
                reading = float(sampled["value"]) * 10**multiplier
    return reading


async def transaction_event_v201(ctx: HandlerContext, payload: dict[str, Any]) -> Reply:
    """TransactionEvent (2.0.1 E01-E15); the backend stores it once per (id, seqNo)."""
    token = payload.get("idToken")
    info = payload["transactionInfo"]
    event_type = TransactionEventType(payload["eventType"])
    event = TransactionEvent(
        transaction_id=info["transactionId"],
        event_type=event_type,
        seq_no=payload["seqNo"],
        timestamp=_timestamp(payload["timestamp"], ctx.clock),
        trigger_reason=payload["triggerReason"],
        id_token=token["idToken"] if token else None,
        id_token_type=token["type"] if token else None,
        evse_id=payload.get("evse", {}).get("id"),
        meter_wh=_energy_wh(payload.get("meterValue", [])),
        offline=payload.get("offline", False),
        # E06: stoppedReason may only be left out when it is Local.
        stopped_reason=info.get("stoppedReason")
        or ("Local" if event_type is TransactionEventType.ENDED else None),
    )
    result = await ctx.backend.transaction_event(ctx.charger_id, event)
    if token is None:
        return Reply(payload={})
    # E05: idTokenInfo answers the token the event carries.
    return Reply(payload={"idTokenInfo": id_token_info(result, token["type"], V201)})


# --- OCPP 1.6J -----------------------------------------------------------------------------


async def boot_notification_v16(ctx: HandlerContext, payload: dict[str, Any]) -> Reply:
    """BootNotification (1.6 §4.2)."""
    info = BootInfo(
        vendor=payload["chargePointVendor"],
        model=payload["chargePointModel"],
        firmware=payload.get("firmwareVersion"),
        serial=payload.get("chargePointSerialNumber"),
    )
    return await _boot(ctx, info)


async def status_notification_v16(ctx: HandlerContext, payload: dict[str, Any]) -> Reply:
    """StatusNotification (1.6 §4.9): connectorId stands for both EVSE and connector."""
    connector = payload["connectorId"]
    await ctx.backend.status(
        ctx.charger_id,
        evse_id=connector,
        connector_id=connector,
        status=payload["status"],
        at=_timestamp(payload.get("timestamp"), ctx.clock),
    )
    return Reply(payload={})


async def authorize_v16(ctx: HandlerContext, payload: dict[str, Any]) -> Reply:
    """Authorize (1.6 §4.1): 1.6 has no token type: an idTag is a card or a keypad code."""
    result = await ctx.backend.authorize_token(ctx.charger_id, payload["idTag"], None)
    return Reply(payload={"idTagInfo": id_token_info(result, KEYCODE_TOKEN_TYPE, V16)})


def v16_transaction_id(charger_id: str, payload: dict[str, Any]) -> int:
    """A transactionId derived from the start itself, so a repeated StartTransaction (the
    charger retrying after a lost reply, 1.6 §4.8) gets the same id: idempotent."""
    key = f"{charger_id}|{payload['connectorId']}|{payload['timestamp']}|{payload['meterStart']}"
    digest = hashlib.blake2b(key.encode(), digest_size=4).digest()
    return int.from_bytes(digest, "big") & 0x7FFFFFFF or 1


async def start_transaction_v16(ctx: HandlerContext, payload: dict[str, Any]) -> Reply:
    """StartTransaction (1.6 §4.8) -> a Started TransactionEvent."""
    transaction_id = v16_transaction_id(ctx.charger_id, payload)
    event = TransactionEvent(
        transaction_id=str(transaction_id),
        event_type=TransactionEventType.STARTED,
        seq_no=0,
        timestamp=_timestamp(payload["timestamp"], ctx.clock),
        trigger_reason="Authorized",
        id_token=payload["idTag"],
        id_token_type=None,  # untyped: a card or a keypad code
        evse_id=payload["connectorId"],
        meter_wh=float(payload["meterStart"]),
    )
    result = await ctx.backend.transaction_event(ctx.charger_id, event)
    return Reply(
        payload={
            "transactionId": transaction_id,
            "idTagInfo": id_token_info(result, KEYCODE_TOKEN_TYPE, V16),
        }
    )


async def stop_transaction_v16(ctx: HandlerContext, payload: dict[str, Any]) -> Reply:
    """StopTransaction (1.6 §4.10) -> an Ended TransactionEvent."""
    id_tag = payload.get("idTag")
    event = TransactionEvent(
        transaction_id=str(payload["transactionId"]),
        event_type=TransactionEventType.ENDED,
        seq_no=V16_STOP_SEQ_NO,
        timestamp=_timestamp(payload["timestamp"], ctx.clock),
        trigger_reason=payload.get("reason", "Local"),
        id_token=id_tag,
        id_token_type=None,  # untyped: a card or a keypad code
        meter_wh=float(payload["meterStop"]),
        stopped_reason=payload.get("reason", "Local"),
    )
    result = await ctx.backend.transaction_event(ctx.charger_id, event)
    if id_tag is None:
        return Reply(payload={})
    return Reply(payload={"idTagInfo": id_token_info(result, KEYCODE_TOKEN_TYPE, V16)})


async def meter_values_v16(ctx: HandlerContext, payload: dict[str, Any]) -> Reply:
    """MeterValues (1.6 §4.7): within a transaction, an Updated TransactionEvent."""
    transaction_id = payload.get("transactionId")
    if transaction_id is None:
        return Reply(payload={})
    timestamp = _timestamp(payload["meterValue"][-1]["timestamp"], ctx.clock)
    event = TransactionEvent(
        transaction_id=str(transaction_id),
        event_type=TransactionEventType.UPDATED,
        seq_no=int(timestamp.timestamp()),
        timestamp=timestamp,
        trigger_reason="MeterValuePeriodic",
        evse_id=payload["connectorId"],
        meter_wh=_energy_wh(payload["meterValue"]),
    )
    await ctx.backend.transaction_event(ctx.charger_id, event)
    return Reply(payload={})


V201: Final = OcppVersion.V201
V16: Final = OcppVersion.V16

HANDLERS: Final[dict[tuple[OcppVersion, str], Handler]] = {
    (V201, "BootNotification"): boot_notification_v201,
    (V201, "Heartbeat"): heartbeat,
    (V201, "StatusNotification"): status_notification_v201,
    (V201, "Authorize"): authorize_v201,
    (V201, "TransactionEvent"): transaction_event_v201,
    (V201, "SecurityEventNotification"): security_event,
    (V201, "DataTransfer"): data_transfer,
    (V201, "NotifyEvent"): accept_empty,
    (V201, "MeterValues"): accept_empty,
    (V16, "BootNotification"): boot_notification_v16,
    (V16, "Heartbeat"): heartbeat,
    (V16, "StatusNotification"): status_notification_v16,
    (V16, "Authorize"): authorize_v16,
    (V16, "StartTransaction"): start_transaction_v16,
    (V16, "StopTransaction"): stop_transaction_v16,
    (V16, "MeterValues"): meter_values_v16,
    (V16, "SecurityEventNotification"): security_event,
    (V16, "DataTransfer"): data_transfer,
}
"""Every request evaccess answers; another known action gets NotSupported, an unknown one
NotImplemented (2.0.1 Part 4 §4.2.3)."""
