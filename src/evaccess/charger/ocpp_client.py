"""The charger's OCPP-J client, built on the ``ocpp`` library's ``ChargePoint`` (v201, v16).

Server-initiated Calls are routed through one declarative table per version (action ->
handler); each handler translates the wire payload to a ``Firmware`` method and back. The
library's frame logging is redacted: at INFO it prints every frame, keypad codes and
Bluetooth PINs included, in clear text.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

from ocpp import v16, v201
from ocpp.exceptions import OCPPError, ValidationError
from websockets.exceptions import ConnectionClosed

from evaccess.charger.config import ChargerConfig
from evaccess.charger.firmware import (
    UNTYPED,
    Firmware,
    LinkDown,
    LocalListUpdate,
    ReadStatus,
)
from evaccess.charger.ocpp_messages import Request, parse_time
from evaccess.domain.errors import ConfigurationError
from evaccess.protocol.ocpp_components import (
    AUTH_CTRLR_COMPONENT,
    BLUETOOTH_COMPONENT,
    MASTER_PASS_GROUP_VARIABLE,
    V16_CONFIGURATION_KEYS,
    BluetoothVariable,
)
from evaccess.protocol.ocpp_frames import OcppVersion

Handler = Callable[..., Awaitable[Any]]
log = logging.getLogger(__name__)


def _expiry(value: Any) -> datetime | None:
    """A local-list entry's expiry; one that is there but cannot be read counts as past
    (the entry answers Expired rather than working for ever)."""
    if value is None:
        return None
    return parse_time(value) or datetime.min.replace(tzinfo=UTC)


def client_tls_context(config: ChargerConfig) -> ssl.SSLContext | None:
    """TLS for a ``wss://`` server (OCPP 2.0.1 Part 2 A00, profiles 2 and 3): the server's
    certificate verified against ``ca_file`` (or the system's CAs), TLS 1.2 or newer, and
    with ``client_cert`` the charger's own certificate (profile 3)."""
    if not config.url.startswith("wss://"):
        return None
    try:
        context = ssl.create_default_context(cafile=config.ca_file)
    except (OSError, ssl.SSLError):
        raise ConfigurationError(f"--ca-file {config.ca_file}: not a readable PEM file") from None
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if config.client_cert is not None:
        try:
            context.load_cert_chain(config.client_cert, config.client_key)
        except (OSError, ssl.SSLError):
            raise ConfigurationError(
                f"--client-cert {config.client_cert}: cannot load it with its key"
            ) from None
    return context


class RedactFrames(logging.Filter):
    """Keep the ``ocpp`` library's records but drop their arguments: they hold raw frames."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = f"ocpp library: {record.funcName} (frame redacted)"
        record.args = ()
        record.exc_info = None
        record.exc_text = None
        return True


def frame_logger() -> logging.Logger:
    logger = logging.getLogger("evaccess.charger.ocpp_frames")
    if not any(isinstance(f, RedactFrames) for f in logger.filters):
        logger.addFilter(RedactFrames())
    return logger


_VARIABLES = {variable.value: variable for variable in BluetoothVariable}
_V16_KEYS = {key: variable for variable, key in V16_CONFIGURATION_KEYS.items()}


# -- OCPP 2.0.1 -----------------------------------------------------------------------------
def v201_handlers(firmware: Firmware) -> dict[str, Handler]:
    """Actions a CSMS may send to this charging station (OCPP 2.0.1 Part 2)."""

    async def set_variables(*, set_variable_data: list[dict[str, Any]], **_: Any) -> Any:
        # B05: one result per SetVariableData, in order.
        results = []
        for item in set_variable_data:
            status = await _set_one(item)
            results.append(
                {
                    "attribute_status": status,
                    "component": item["component"],
                    "variable": item["variable"],
                    "attribute_type": item.get("attribute_type", "Actual"),
                }
            )
        return v201.call_result.SetVariables(set_variable_result=results)

    async def _set_one(item: dict[str, Any]) -> str:
        if item["component"]["name"] == AUTH_CTRLR_COMPONENT:
            if item["variable"]["name"] != MASTER_PASS_GROUP_VARIABLE:
                return "UnknownVariable"
            if item.get("attribute_type", "Actual") != "Actual":
                return "NotSupportedAttributeType"
            return firmware.set_master_pass_group(item["attribute_value"].strip()).value
        if item["component"]["name"] != BLUETOOTH_COMPONENT:
            return "UnknownComponent"
        variable = _VARIABLES.get(item["variable"]["name"])
        if variable is None:
            return "UnknownVariable"
        if item.get("attribute_type", "Actual") != "Actual":
            return "NotSupportedAttributeType"
        return (await firmware.set_bluetooth_variable(variable, item["attribute_value"])).value

    async def get_variables(*, get_variable_data: list[dict[str, Any]], **_: Any) -> Any:
        results = []
        for item in get_variable_data:
            result: dict[str, Any] = {
                "component": item["component"],
                "variable": item["variable"],
                "attribute_type": item.get("attribute_type", "Actual"),
            }
            variable = _VARIABLES.get(item["variable"]["name"])
            if item["component"]["name"] != BLUETOOTH_COMPONENT:
                result["attribute_status"] = "UnknownComponent"
            elif variable is None:
                result["attribute_status"] = "UnknownVariable"
            elif item.get("attribute_type", "Actual") != "Actual":
                result["attribute_status"] = "NotSupportedAttributeType"
            else:
                status, value = firmware.get_bluetooth_variable(variable)
                result["attribute_status"] = status.value
                if status is ReadStatus.ACCEPTED:
                    result["attribute_value"] = value
                else:
                    # GetVariableStatusEnumType (Part 2, B06) has no WriteOnly value: a
                    # WriteOnly variable is answered Rejected, with reasonCode WriteOnly.
                    result["attribute_status_info"] = {"reason_code": "WriteOnly"}
            results.append(result)
        return v201.call_result.GetVariables(get_variable_result=results)

    async def send_local_list(
        *,
        version_number: int,
        update_type: str,
        local_authorization_list: list[dict[str, Any]] | None = None,
        **_: Any,
    ) -> Any:
        entries = [
            LocalListUpdate(
                id_token=entry["id_token"]["id_token"],
                token_type=entry["id_token"]["type"],
                status=(entry.get("id_token_info") or {}).get("status"),
                group_id_token=((entry.get("id_token_info") or {}).get("group_id_token") or {}).get(
                    "id_token"
                ),
                expires_at=_expiry(
                    (entry.get("id_token_info") or {}).get("cache_expiry_date_time")
                ),
            )
            for entry in local_authorization_list or []
        ]
        status = firmware.apply_local_list(
            version=version_number, full=update_type == "Full", entries=entries
        )
        return v201.call_result.SendLocalList(status=status.value)

    async def get_local_list_version(**_: Any) -> Any:
        return v201.call_result.GetLocalListVersion(version_number=firmware.local_list.version)

    async def change_availability(*, operational_status: str, **_: Any) -> Any:
        status = firmware.change_availability(operative=operational_status == "Operative")
        return v201.call_result.ChangeAvailability(status=status)

    async def reset(*, type: str, **_: Any) -> Any:
        return v201.call_result.Reset(status="Accepted")

    async def clear_cache(**_: Any) -> Any:
        return v201.call_result.ClearCache(status=firmware.clear_cache())

    async def data_transfer(*, vendor_id: str, **_: Any) -> Any:
        return v201.call_result.DataTransfer(status="UnknownVendorId")

    return {
        "SetVariables": set_variables,
        "GetVariables": get_variables,
        "SendLocalList": send_local_list,
        "GetLocalListVersion": get_local_list_version,
        "ChangeAvailability": change_availability,
        "Reset": reset,
        "ClearCache": clear_cache,
        "DataTransfer": data_transfer,
    }


# -- OCPP 1.6J ------------------------------------------------------------------------------
def v16_handlers(firmware: Firmware) -> dict[str, Handler]:
    """Actions a Central System may send to this charge point (OCPP 1.6 §5)."""

    async def change_configuration(*, key: str, value: str, **_: Any) -> Any:
        variable = _V16_KEYS.get(key)
        if variable is None:
            return v16.call_result.ChangeConfiguration(status="NotSupported")
        status = await firmware.set_bluetooth_variable(variable, value)
        return v16.call_result.ChangeConfiguration(status=status.value)

    async def get_configuration(*, key: list[str] | None = None, **_: Any) -> Any:
        wanted = key if key else list(_V16_KEYS)
        known, unknown = [], []
        for name in wanted:
            variable = _V16_KEYS.get(name)
            if variable is None:
                unknown.append(name)
                continue
            status, value = firmware.get_bluetooth_variable(variable)
            entry: dict[str, Any] = {"key": name, "readonly": False}
            if status is ReadStatus.ACCEPTED:
                entry["value"] = value  # write-only keys are listed without a value
            known.append(entry)
        return v16.call_result.GetConfiguration(
            configuration_key=known, unknown_key=unknown or None
        )

    async def send_local_list(
        *,
        list_version: int,
        update_type: str,
        local_authorization_list: list[dict[str, Any]] | None = None,
        **_: Any,
    ) -> Any:
        # 1.6 idTags have no type: an entry answers for a keypad code and a card alike.
        entries = [
            LocalListUpdate(
                id_token=entry["id_tag"],
                token_type=UNTYPED,
                status=(entry.get("id_tag_info") or {}).get("status"),
                group_id_token=(entry.get("id_tag_info") or {}).get("parent_id_tag"),
                expires_at=_expiry((entry.get("id_tag_info") or {}).get("expiry_date")),
            )
            for entry in local_authorization_list or []
        ]
        status = firmware.apply_local_list(
            version=list_version, full=update_type == "Full", entries=entries
        )
        return v16.call_result.SendLocalList(status=status.value)

    async def get_local_list_version(**_: Any) -> Any:
        return v16.call_result.GetLocalListVersion(list_version=firmware.local_list.version)

    async def change_availability(*, type: str, **_: Any) -> Any:
        status = firmware.change_availability(operative=type == "Operative")
        return v16.call_result.ChangeAvailability(status=status)

    async def reset(*, type: str, **_: Any) -> Any:
        return v16.call_result.Reset(status="Accepted")

    async def clear_cache(**_: Any) -> Any:
        return v16.call_result.ClearCache(status=firmware.clear_cache())

    async def data_transfer(*, vendor_id: str, **_: Any) -> Any:
        return v16.call_result.DataTransfer(status="UnknownVendorId")

    return {
        "ChangeConfiguration": change_configuration,
        "GetConfiguration": get_configuration,
        "SendLocalList": send_local_list,
        "GetLocalListVersion": get_local_list_version,
        "ChangeAvailability": change_availability,
        "Reset": reset,
        "ClearCache": clear_cache,
        "DataTransfer": data_transfer,
    }


_LIBRARY: dict[OcppVersion, tuple[Any, Callable[[Firmware], dict[str, Handler]]]] = {
    OcppVersion.V201: (v201, v201_handlers),
    OcppVersion.V16: (v16, v16_handlers),
}


class OcppConnection:
    """One WebSocket to the server, driven by the library's ``ChargePoint``; a ``CsmsLink``."""

    def __init__(
        self,
        *,
        websocket: Any,
        firmware: Firmware,
        version: OcppVersion,
        response_timeout_s: float,
    ) -> None:
        module, handlers = _LIBRARY[version]
        self._call_module = module.call
        self._timeout = response_timeout_s
        self.charge_point = module.ChargePoint(
            firmware.config.serial,
            websocket,
            response_timeout=response_timeout_s,
            logger=frame_logger(),
        )
        routes: dict[str, dict[str, Any]] = {
            action: {"_on_action": handler, "_skip_schema_validation": False}
            for action, handler in handlers(firmware).items()
        }
        # Reset: reply first, then reboot (B11/B12; 1.6 §5.14): after-hook of the library.
        routes["Reset"]["_after_action"] = self._after_reset
        self.charge_point.route_map = routes
        self.closed = asyncio.Event()
        self.reboot_requested = asyncio.Event()

    def _after_reset(self, **_: Any) -> None:
        self.reboot_requested.set()

    async def serve(self) -> None:
        """Read frames until the connection closes."""
        try:
            await self.charge_point.start()
        finally:
            self.closed.set()

    async def request(self, request: Request) -> dict[str, Any] | None:
        payload = getattr(self._call_module, request.action)(**request.payload)
        call = asyncio.ensure_future(self.charge_point.call(payload, suppress=False))
        closed = asyncio.ensure_future(self.closed.wait())
        try:
            done, _ = await asyncio.wait(
                {call, closed}, timeout=self._timeout, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            closed.cancel()
        if call not in done:
            call.cancel()
            # The library's own timeout message quotes the request: never surface it.
            raise LinkDown(f"{request.action}: no reply")
        try:
            result = call.result()
        except OCPPError:
            return None
        except ValidationError:
            # Our own request failed the OCA schema: retrying cannot help (a bug, not a secret).
            log.error("%s failed schema validation before sending; dropped", request.action)
            return None
        except (ConnectionClosed, OSError, TimeoutError):
            raise LinkDown(f"{request.action}: connection lost") from None
        return asdict(result)
