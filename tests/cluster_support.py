"""What the cluster tests share: a redis-server of a test's own (stopped and started again
at will), and an OCPP 2.0.1 charger played by the test over a real WebSocket, which answers
every Call Accepted and keeps what it received."""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
import socket
import subprocess
from itertools import count
from typing import Any

import redis
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from evaccess.protocol.ocpp_components import BluetoothVariable
from tests.server.ocpp_boot import _accepted, _boot_frame
from tests.support import eventually


def reachable(url: str) -> str | None:
    """``None`` when a Redis answers at ``url``, else why not."""
    try:
        redis.Redis.from_url(url, socket_connect_timeout=1).ping()
    except (redis.RedisError, OSError) as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class OwnRedis:
    """A redis-server of the test's own, stopped and started again at will (same port)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.url = f"redis://127.0.0.1:{port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    async def start(self) -> None:
        binary = shutil.which("redis-server")
        assert binary is not None
        self.process = subprocess.Popen(
            [binary, "--port", str(self.port), "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        process = self.process
        await eventually(
            lambda: reachable(self.url) is None,
            "redis-server to answer",
            unless=lambda: process.poll() is not None and f"exited with {process.returncode}",
        )

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None


class FakeCharger:
    """A charger on one node's OCPP endpoint: boots, answers every Call Accepted and keeps
    the Calls it received; ``call`` sends one of its own and returns the answer."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.calls: list[list[Any]] = []
        self._answers: dict[str, asyncio.Future[Any]] = {}
        self._ids = count(1)
        self.task = asyncio.get_running_loop().create_task(self._run())

    @classmethod
    async def connect(cls, port: int, serial: str, password: str) -> FakeCharger:
        token = base64.b64encode(f"{serial}:{password}".encode()).decode()
        ws = await connect(
            f"ws://127.0.0.1:{port}/ocpp/{serial}",
            subprotocols=["ocpp2.0.1"],  # type: ignore[list-item]
            additional_headers={"Authorization": f"Basic {token}"},
            compression=None,
        )
        charger = cls(ws)
        boot = json.loads(_boot_frame("ocpp2.0.1", "Easee", "Home", "1.0"))
        await charger.call(boot[2], boot[3])
        return charger

    async def call(self, action: str, payload: dict[str, Any]) -> Any:
        message_id = f"c{next(self._ids)}"
        answer = self._answers[message_id] = asyncio.get_running_loop().create_future()
        await self.ws.send(json.dumps([2, message_id, action, payload]))
        return await asyncio.wait_for(answer, timeout=10)

    async def authorize_keycode(self, code: str) -> str:
        """The status the server answers for a code typed on the keypad."""
        answer = await self.call("Authorize", {"idToken": {"idToken": code, "type": "KeyCode"}})
        return str(answer["idTokenInfo"]["status"])

    async def _run(self) -> None:
        try:
            async for text in self.ws:
                frame = json.loads(text)
                if frame[0] == 2:
                    self.calls.append(frame)
                    await self.ws.send(json.dumps([3, frame[1], _accepted("ocpp2.0.1", frame)]))
                elif frame[1] in self._answers:
                    future = self._answers.pop(frame[1])
                    if frame[0] == 3:
                        future.set_result(frame[2])
                    else:
                        future.set_exception(AssertionError(f"CallError {frame[2:]}"))
        except ConnectionClosed:
            pass

    @property
    def actions(self) -> list[str]:
        return [call[2] for call in self.calls]

    @property
    def revoked(self) -> list[str]:
        """The phone ids of every RevokeCredentials it received, in order, repeats kept."""
        return [
            item["attributeValue"]
            for call in self.calls
            if call[2] == "SetVariables"
            for item in call[3]["setVariableData"]
            if item["variable"]["name"] == BluetoothVariable.REVOKE_CREDENTIALS.value
        ]

    @property
    def closed(self) -> bool:
        return self.task.done()

    async def close(self) -> None:
        await self.ws.close()
        await self.task
