"""Boot a registered charger over real OCPP-J (a WebSocket to the endpoint on the database
backend, in this process) and collect what the server pushed to it."""

from __future__ import annotations

import asyncio
import base64
import json
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.client import connect

from evaccess.server.context import Context
from evaccess.server.ocpp.server import serve_ocpp
from evaccess.server.services.ocpp_backend import DbOcppBackend


@dataclass
class Booted:
    reply: list[Any]
    pushes: list[list[Any]] = field(default_factory=list)
    """The server's Calls after the boot (PIN settings), each answered Accepted."""


def _boot_frame(version: str, vendor: str, model: str, firmware: str | None) -> str:
    if version == "ocpp2.0.1":
        station: dict[str, Any] = {"vendorName": vendor, "model": model}
        if firmware is not None:
            station["firmwareVersion"] = firmware
        payload: dict[str, Any] = {"reason": "PowerUp", "chargingStation": station}
    else:
        payload = {"chargePointVendor": vendor, "chargePointModel": model}
        if firmware is not None:
            payload["firmwareVersion"] = firmware
    return json.dumps([2, "boot-1", "BootNotification", payload])


def _accepted(version: str, call: list[Any]) -> dict[str, Any]:
    if call[2] == "SetVariables":
        return {
            "setVariableResult": [
                {
                    "attributeStatus": "Accepted",
                    "component": i["component"],
                    "variable": i["variable"],
                }
                for i in call[3]["setVariableData"]
            ]
        }
    if call[2] == "GetLocalListVersion":
        return {"versionNumber" if version == "ocpp2.0.1" else "listVersion": 0}
    return {"status": "Accepted"}


async def boot_over_ocpp(
    ctx: Context,
    serial: str,
    password: str,
    *,
    vendor: str,
    model: str,
    firmware: str | None,
    version: str = "ocpp2.0.1",
) -> Booted:
    """Connect with Basic Auth, send BootNotification, answer the server's Calls (Accepted)
    until the Bluetooth PIN settings have come, disconnect."""
    push = "SetVariables" if version == "ocpp2.0.1" else "ChangeConfiguration"
    server = await serve_ocpp(DbOcppBackend(ctx), port=0, clock=ctx.clock)
    ctx.notifier.target = server.notifier
    token = base64.b64encode(f"{serial}:{password}".encode()).decode()
    try:
        async with connect(
            f"ws://127.0.0.1:{server.port}/ocpp/{serial}",
            subprotocols=[version],  # type: ignore[list-item]
            additional_headers={"Authorization": f"Basic {token}"},
            compression=None,
        ) as ws:
            await ws.send(_boot_frame(version, vendor, model, firmware))
            booted: Booted | None = None
            calls: list[list[Any]] = []
            async with asyncio.timeout(10):
                while booted is None or not any(c[2] == push for c in calls):
                    frame = json.loads(await ws.recv())
                    if frame[0] == 2:
                        calls.append(frame)
                        await ws.send(json.dumps([3, frame[1], _accepted(version, frame)]))
                    elif frame[1] == "boot-1":
                        booted = Booted(reply=frame)
            booted.pushes = calls
            return booted
    finally:
        ctx.notifier.target = None
        await server.close()
