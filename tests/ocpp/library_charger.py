"""A charger built on the third-party ``ocpp`` library, run as a separate process by
test_library_e2e.py. It plays a fixed scenario against the evaccess endpoint and prints one
JSON object per line (what it sent and what it got); server pushes are printed as they
arrive. It exits when its standard input closes.

    python library_charger.py URL CHARGER_ID PASSWORD VERSION CODE WRONG_CODE LIST_VERSION
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

from ocpp.routing import on
from ocpp.v16 import ChargePoint as ChargePoint16
from ocpp.v16 import call as call16
from ocpp.v16 import call_result as result16
from ocpp.v201 import ChargePoint as ChargePoint201
from ocpp.v201 import call as call201
from ocpp.v201 import call_result as result201
from websockets.asyncio.client import connect

# The library logs every frame at INFO, keypad codes included (docs/ocpp.md): keep it quiet.
logging.getLogger("ocpp").setLevel(logging.WARNING)


def emit(**fields: Any) -> None:
    print(json.dumps(fields), flush=True)


def now() -> str:
    # Whole seconds: six random digits of microseconds could spell a test secret by chance.
    return datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


class Charger201(ChargePoint201):
    list_version = 0

    @on("GetLocalListVersion")
    def on_get_local_list_version(self, **kwargs: Any) -> Any:
        emit(push="GetLocalListVersion")
        return result201.GetLocalListVersion(version_number=self.list_version)

    @on("SendLocalList")
    def on_send_local_list(self, version_number: int, update_type: str, **kwargs: Any) -> Any:
        entries = kwargs.get("local_authorization_list") or []
        emit(
            push="SendLocalList",
            version=version_number,
            update_type=update_type,
            added=[e["id_token"]["id_token"] for e in entries if e.get("id_token_info")],
            removed=[e["id_token"]["id_token"] for e in entries if not e.get("id_token_info")],
        )
        self.list_version = version_number
        return result201.SendLocalList(status="Accepted")

    @on("SetVariables")
    def on_set_variables(self, set_variable_data: list[dict[str, Any]], **kwargs: Any) -> Any:
        emit(
            push="SetVariables",
            variables={d["variable"]["name"]: d["attribute_value"] for d in set_variable_data},
            components=sorted({d["component"]["name"] for d in set_variable_data}),
        )
        return result201.SetVariables(
            set_variable_result=[
                {
                    "attribute_status": "Accepted",
                    "component": d["component"],
                    "variable": d["variable"],
                }
                for d in set_variable_data
            ]
        )


class Charger16(ChargePoint16):
    list_version = 0

    @on("GetLocalListVersion")
    def on_get_local_list_version(self, **kwargs: Any) -> Any:
        emit(push="GetLocalListVersion")
        return result16.GetLocalListVersion(list_version=self.list_version)

    @on("SendLocalList")
    def on_send_local_list(self, list_version: int, update_type: str, **kwargs: Any) -> Any:
        entries = kwargs.get("local_authorization_list") or []
        emit(
            push="SendLocalList",
            version=list_version,
            update_type=update_type,
            added=[e["id_tag"] for e in entries if e.get("id_tag_info")],
            removed=[e["id_tag"] for e in entries if not e.get("id_tag_info")],
        )
        self.list_version = list_version
        return result16.SendLocalList(status="Accepted")

    @on("ChangeConfiguration")
    def on_change_configuration(self, key: str, value: str, **kwargs: Any) -> Any:
        emit(push="ChangeConfiguration", key=key, value=value)
        return result16.ChangeConfiguration(status="Accepted")


def keycode(code: str) -> dict[str, str]:
    return {"id_token": code, "type": "KeyCode"}


async def scenario_201(cp: Charger201, code: str, wrong: str) -> None:
    boot = await cp.call(
        call201.BootNotification(
            charging_station={"model": "Pulsar", "vendor_name": "Wallbox"}, reason="PowerUp"
        )
    )
    emit(step="boot", status=boot.status, interval=boot.interval)
    valid = await cp.call(call201.Authorize(id_token=keycode(code)))
    emit(step="authorize_valid", status=valid.id_token_info["status"])
    started = call201.TransactionEvent(
        event_type="Started",
        timestamp=now(),
        trigger_reason="Authorized",
        seq_no=0,
        transaction_info={"transaction_id": "lib-tx-1"},
        id_token=keycode(code),
        evse={"id": 1},
    )
    first = await cp.call(started)
    again = await cp.call(started)
    emit(
        step="transaction_started",
        status=first.id_token_info["status"],
        repeat_status=again.id_token_info["status"],
    )
    ended = await cp.call(
        call201.TransactionEvent(
            event_type="Ended",
            timestamp=now(),
            trigger_reason="StopAuthorized",
            seq_no=1,
            transaction_info={"transaction_id": "lib-tx-1", "stopped_reason": "Local"},
        )
    )
    emit(step="transaction_ended", id_token_info=ended.id_token_info)
    await cp.call(
        call201.SecurityEventNotification(
            type="evaccess.BluetoothPinLockout", timestamp=now(), tech_info="level 1"
        )
    )
    emit(step="security_event")
    statuses = [
        (await cp.call(call201.Authorize(id_token=keycode(wrong)))).id_token_info["status"]
        for _ in range(5)
    ]
    emit(step="authorize_invalid", statuses=statuses)
    locked = await cp.call(call201.Authorize(id_token=keycode(code)))
    emit(step="authorize_locked", status=locked.id_token_info["status"])


async def scenario_16(cp: Charger16, code: str, wrong: str) -> None:
    boot = await cp.call(
        call16.BootNotification(charge_point_vendor="Wallbox", charge_point_model="Pulsar")
    )
    emit(step="boot", status=boot.status, interval=boot.interval)
    valid = await cp.call(call16.Authorize(id_tag=code))
    emit(step="authorize_valid", status=valid.id_tag_info["status"])
    start = call16.StartTransaction(connector_id=1, id_tag=code, meter_start=0, timestamp=now())
    first = await cp.call(start)
    again = await cp.call(start)
    emit(
        step="transaction_started",
        status=first.id_tag_info["status"],
        repeat_status=again.id_tag_info["status"],
        same_id=first.transaction_id == again.transaction_id,
    )
    await cp.call(
        call16.StopTransaction(
            meter_stop=1200, timestamp=now(), transaction_id=first.transaction_id
        )
    )
    emit(step="transaction_ended", transaction_id=first.transaction_id)
    event = {"type": "evaccess.BluetoothPinLockout", "timestamp": now(), "techInfo": "level 1"}
    transfer = await cp.call(
        call16.DataTransfer(
            vendor_id="org.evaccess", message_id="SecurityEvent", data=json.dumps(event)
        )
    )
    emit(step="security_event", status=transfer.status)
    statuses = [
        (await cp.call(call16.Authorize(id_tag=wrong))).id_tag_info["status"] for _ in range(5)
    ]
    emit(step="authorize_invalid", statuses=statuses)
    locked = await cp.call(call16.Authorize(id_tag=code))
    emit(step="authorize_locked", status=locked.id_tag_info["status"])


async def main() -> None:
    url, charger_id, password, version, code, wrong, list_version = sys.argv[1:8]
    token = base64.b64encode(f"{charger_id}:{password}".encode()).decode()
    async with connect(
        f"{url}/{charger_id}",
        subprotocols=[version],  # type: ignore[list-item]
        additional_headers={"Authorization": f"Basic {token}"},
        compression=None,
    ) as ws:
        cp: Charger201 | Charger16
        cp = Charger201(charger_id, ws) if version == "ocpp2.0.1" else Charger16(charger_id, ws)
        cp.list_version = int(list_version)
        # Counter message ids instead of uuid4 (hex digits could spell a test secret).
        ids = itertools.count(1)
        cp._unique_id_generator = lambda: f"lib{next(ids)}"
        runner = asyncio.create_task(cp.start())
        if isinstance(cp, Charger201):
            await scenario_201(cp, code, wrong)
        else:
            await scenario_16(cp, code, wrong)
        emit(step="ready")
        # Server pushes are answered by the handlers above until the test closes stdin.
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
        runner.cancel()
    emit(step="closed")


if __name__ == "__main__":
    asyncio.run(main())
