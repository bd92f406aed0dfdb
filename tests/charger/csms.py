"""A small test CSMS on the `ocpp` library's server-side ChargePoint (v201 and v16).

It checks Basic Auth, records what chargers send, accepts a set of keypad codes, and lets a
test send commands to a connected charger. It stores every TransactionEvent as received
(no dedupe) so a test can prove the charger never duplicates nor drops one.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any

from ocpp import v16, v201
from ocpp.routing import on
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.http11 import Request, Response

from tests.support import eventually as eventually  # tests/ble imports it from here

# The library logs every frame (PINs included) at INFO: keep the test CSMS's own records
# out of the root logger so caplog scans see only what the charger logs.
FRAMES = logging.getLogger("tests.csms.frames")
FRAMES.propagate = False
WS_LOG = logging.getLogger("tests.csms.websockets")
WS_LOG.propagate = False


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


@dataclass
class Recorded:
    boots: list[dict[str, Any]] = field(default_factory=list)
    heartbeats: int = 0
    statuses: list[str] = field(default_factory=list)
    authorizations: int = 0
    transactions: list[dict[str, Any]] = field(default_factory=list)
    security_events: list[dict[str, Any]] = field(default_factory=list)
    data_transfers: list[dict[str, Any]] = field(default_factory=list)


class Csms201(v201.ChargePoint):
    def __init__(self, id: str, connection: Any, csms: TestCsms) -> None:
        super().__init__(id, connection, response_timeout=10, logger=FRAMES)
        self.csms = csms
        self.rec = csms.records[id]

    @on("BootNotification")
    async def boot(self, charging_station: dict[str, Any], reason: str, **_: Any) -> Any:
        self.rec.boots.append(charging_station)
        return v201.call_result.BootNotification(
            current_time=now(), interval=self.csms.heartbeat_s, status="Accepted"
        )

    @on("Heartbeat")
    async def heartbeat(self, **_: Any) -> Any:
        self.rec.heartbeats += 1
        return v201.call_result.Heartbeat(current_time=now())

    @on("StatusNotification")
    async def status(self, connector_status: str, **_: Any) -> Any:
        self.rec.statuses.append(connector_status)
        return v201.call_result.StatusNotification()

    @on("Authorize")
    async def authorize(self, id_token: dict[str, Any], **_: Any) -> Any:
        self.rec.authorizations += 1
        ok = id_token["type"] == "KeyCode" and id_token["id_token"] in self.csms.accepted_codes
        return v201.call_result.Authorize(id_token_info={"status": "Accepted" if ok else "Invalid"})

    @on("TransactionEvent")
    async def transaction_event(self, **payload: Any) -> Any:
        self.rec.transactions.append(payload)
        return v201.call_result.TransactionEvent()

    @on("SecurityEventNotification")
    async def security_event(self, **payload: Any) -> Any:
        self.rec.security_events.append(payload)
        return v201.call_result.SecurityEventNotification()

    @on("DataTransfer")
    async def data_transfer(self, **payload: Any) -> Any:
        self.rec.data_transfers.append(payload)
        return v201.call_result.DataTransfer(status="Accepted")


class Csms16(v16.ChargePoint):
    def __init__(self, id: str, connection: Any, csms: TestCsms) -> None:
        super().__init__(id, connection, response_timeout=10, logger=FRAMES)
        self.csms = csms
        self.rec = csms.records[id]

    @on("BootNotification")
    async def boot(self, **payload: Any) -> Any:
        self.rec.boots.append(payload)
        return v16.call_result.BootNotification(
            current_time=now(), interval=self.csms.heartbeat_s, status="Accepted"
        )

    @on("Heartbeat")
    async def heartbeat(self, **_: Any) -> Any:
        self.rec.heartbeats += 1
        return v16.call_result.Heartbeat(current_time=now())

    @on("StatusNotification")
    async def status(self, status: str, **_: Any) -> Any:
        self.rec.statuses.append(status)
        return v16.call_result.StatusNotification()

    @on("Authorize")
    async def authorize(self, id_tag: str, **_: Any) -> Any:
        self.rec.authorizations += 1
        ok = id_tag in self.csms.accepted_codes
        return v16.call_result.Authorize(id_tag_info={"status": "Accepted" if ok else "Invalid"})

    @on("StartTransaction")
    async def start_transaction(self, **payload: Any) -> Any:
        self.csms.next_transaction += 1
        payload["transaction_id"] = self.csms.next_transaction
        payload["action"] = "StartTransaction"
        self.rec.transactions.append(payload)
        return v16.call_result.StartTransaction(
            transaction_id=self.csms.next_transaction, id_tag_info={"status": "Accepted"}
        )

    @on("StopTransaction")
    async def stop_transaction(self, **payload: Any) -> Any:
        payload["action"] = "StopTransaction"
        self.rec.transactions.append(payload)
        return v16.call_result.StopTransaction()

    @on("DataTransfer")
    async def data_transfer(self, **payload: Any) -> Any:
        self.rec.data_transfers.append(payload)
        return v16.call_result.DataTransfer(status="Accepted")


class TestCsms:
    """Serve OCPP 2.0.1 and 1.6J on 127.0.0.1 (port 0 first, the same port on restart)."""

    __test__ = False

    def __init__(
        self,
        *,
        passwords: dict[str, str],
        accepted_codes: set[str] | None = None,
        heartbeat_s: int = 300,
    ) -> None:
        self.passwords = passwords
        self.accepted_codes = accepted_codes or set()
        self.heartbeat_s = heartbeat_s
        self.records: defaultdict[str, Recorded] = defaultdict(Recorded)
        self.charge_points: dict[str, Any] = {}
        self.connected: dict[str, asyncio.Event] = defaultdict(asyncio.Event)
        self.auth_failures = 0
        self.errors: list[str] = []
        self.next_transaction = 100
        self.port = 0
        self._server: Server | None = None

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ocpp"

    def _check_auth(self, connection: ServerConnection, request: Request) -> Response | None:
        serial = request.path.rsplit("/", 1)[-1]
        expected = self.passwords.get(serial)
        header = request.headers.get("Authorization", "")
        wanted = "Basic " + base64.b64encode(f"{serial}:{expected}".encode()).decode()
        if expected is None or header != wanted:
            self.auth_failures += 1
            return connection.respond(HTTPStatus.UNAUTHORIZED, "unauthorized\n")
        return None

    async def _handler(self, connection: ServerConnection) -> None:
        assert connection.request is not None
        serial = connection.request.path.rsplit("/", 1)[-1]
        cls = Csms201 if connection.subprotocol == "ocpp2.0.1" else Csms16
        charge_point = cls(serial, connection, self)
        self.charge_points[serial] = charge_point
        self.connected[serial].set()
        try:
            await charge_point.start()
        except Exception as exc:  # the connection ended (closed, or the charger went away)
            self.errors.append(repr(exc))
        finally:
            self.connected[serial].clear()

    async def start(self) -> None:
        self._server = await serve(
            self._handler,
            "127.0.0.1",
            self.port,
            subprotocols=["ocpp2.0.1", "ocpp1.6"],
            process_request=self._check_auth,
            compression=None,
            logger=WS_LOG,
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()
        self._server = None
