"""Composition root of ``evaccess charger run``: state, firmware, OCPP link, keypad, Bluetooth.

``run_charger`` wires the parts and keeps the charger connected: BootNotification on every
connection (OCPP 2.0.1 B01; 1.6 §4.2), StatusNotification for the connector, Heartbeat at
the interval the server gave, queued messages delivered in order, and reconnection with
exponential back-off and jitter when the link drops.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import importlib
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
from websockets.typing import Subprotocol

from evaccess.charger.config import ChargerConfig
from evaccess.charger.firmware import Firmware, LinkDown
from evaccess.charger.ocpp_client import OcppConnection, client_tls_context
from evaccess.charger.ocpp_messages import MESSAGES
from evaccess.charger.ports import ServerLink
from evaccess.charger.state import StateStore
from evaccess.domain.clock import Clock, RandomSource
from evaccess.domain.errors import ConfigurationError, EvAccessError
from evaccess.protocol.ocpp_components import KEYCODE_TOKEN_TYPE

log = logging.getLogger(__name__)

Say = Callable[[str], None]
DRAIN_TIMEOUT_S = 30.0
BLE_MODULE = "evaccess.charger.ble.peripheral"


def basic_auth(username: str, password: str) -> str:
    """HTTP Basic credentials (OCPP 2.0.1 Part 2 A00, security profiles 1 and 2; 1.6J: the
    OCPP 1.6 Security Whitepaper, same profiles)."""
    token = base64.b64encode(f"{username}:{password}".encode()).decode("ascii")
    return f"Basic {token}"


def quiet_websocket_logger() -> logging.Logger:
    """websockets logs frame contents at DEBUG: keep its logger at INFO whatever the root says."""
    logger = logging.getLogger("evaccess.charger.websocket")
    logger.setLevel(logging.INFO)
    return logger


class RunningCharger:
    """A running charger: the firmware plus its connection loop."""

    def __init__(self, config: ChargerConfig, *, clock: Clock, rng: RandomSource, say: Say) -> None:
        self.config = config
        self.clock = clock
        self.rng = rng
        self.say = say
        self.firmware = Firmware(
            config=config,
            store=StateStore(config.state_dir),
            messages=MESSAGES[config.protocol],
            clock=clock,
            rng=rng,
        )
        self.booted = asyncio.Event()
        self.settled = asyncio.Event()
        """Set once the first connection attempt has either booted or failed."""

    async def stay_connected(self) -> None:
        """Connect, boot, serve; on any failure wait (back-off with jitter) and start over."""
        attempt = 0
        while True:
            try:
                await self._connect_once()
                attempt = 0  # a clean close (Reset) reconnects at once
                continue
            except InvalidStatus as exc:
                reason = f"HTTP {exc.response.status_code}"
            except (OSError, InvalidHandshake, ConnectionClosed, TimeoutError, LinkDown) as exc:
                reason = type(exc).__name__
            finally:
                self.firmware.link = None
                self.settled.set()
            draw = self.rng.randbelow(1_000_000) / 1_000_000
            delay = self.config.backoff.delay(attempt, draw)
            self.say(f"ocpp: offline ({reason}), retrying in {delay:.1f} s")
            attempt += 1
            await asyncio.sleep(delay)

    async def _connect_once(self) -> None:
        config = self.config
        async with connect(
            config.url,
            subprotocols=[Subprotocol(config.protocol.value)],
            # Profile 3 (a client certificate) needs no password; otherwise Basic Auth.
            additional_headers=(
                {"Authorization": basic_auth(config.serial, config.password)}
                if config.password
                else None
            ),
            ssl=client_tls_context(config),
            compression=None,
            proxy=None,
            open_timeout=10,
            logger=quiet_websocket_logger(),
        ) as websocket:
            if websocket.subprotocol != config.protocol.value:
                # OCPP-J: a server without our version completes the handshake without it.
                raise ConfigurationError(f"the server does not speak {config.protocol.value}")
            connection = OcppConnection(
                websocket=websocket,
                firmware=self.firmware,
                version=config.protocol,
                response_timeout_s=config.response_timeout_s,
            )
            await self._serve(connection)

    async def _serve(self, connection: OcppConnection) -> None:
        firmware = self.firmware
        reader = asyncio.create_task(connection.serve())
        tasks: set[asyncio.Task[Any]] = {reader}
        try:
            interval = await self._boot(connection)
            firmware.link = connection
            self.booted.set()
            self.settled.set()
            self.say(f"ocpp: boot accepted, heartbeat every {interval} s")
            await firmware.notify_status()
            tasks |= {
                asyncio.create_task(self._heartbeat(connection, interval)),
                asyncio.create_task(firmware.deliver_outbox(connection)),
                asyncio.create_task(connection.reboot_requested.wait()),
            }
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if task is reader or task.cancelled():
                    continue  # the reader ends when the socket closes: handled below
                if (error := task.exception()) is not None:
                    raise error
            if connection.reboot_requested.is_set():
                self.say("ocpp: reset requested by the server, rebooting")
                return
            raise LinkDown("connection closed")
        finally:
            firmware.link = None
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _boot(self, connection: OcppConnection) -> int:
        """BootNotification until Accepted; returns the heartbeat interval (B01, B02)."""
        while True:
            result = await connection.request(self.firmware.messages.boot(self.config))
            if result is None:
                raise LinkDown("BootNotification refused with a CallError")
            interval = int(result.get("interval") or self.config.default_heartbeat_s)
            if result["status"] == "Accepted":
                return interval or self.config.default_heartbeat_s
            self.say(f"ocpp: boot {result['status'].lower()}, retrying in {interval} s")
            await asyncio.sleep(interval or self.config.default_heartbeat_s)

    async def _heartbeat(self, connection: OcppConnection, interval: int) -> None:
        while True:
            await asyncio.sleep(interval)
            await connection.request(self.firmware.messages.heartbeat())

    async def run_keypad(self, codes: AsyncIterator[str], *, wait_for_session: bool) -> None:
        """Enter each code; print one decision line per code, never the code."""
        async for code in codes:
            if not code:
                continue
            decision = await self.firmware.enter_code(code, token_type=KEYCODE_TOKEN_TYPE)
            self.say(decision.line())
            if decision.transaction_id is not None:
                ended = self._say_when_ended(decision.transaction_id)
                if wait_for_session:
                    await ended
                else:
                    self.firmware.spawn(ended)

    async def _say_when_ended(self, transaction_id: str) -> None:
        await self.firmware.session_ended()
        self.say(f"charger: session ended (transaction {transaction_id})")


async def start_bluetooth(charger: RunningCharger) -> Any:
    """Build and start the Bluetooth peripheral (``charger/ble``, another engineer's part)."""
    try:
        module = importlib.import_module(BLE_MODULE)
    except ModuleNotFoundError as exc:
        if exc.name is None or not BLE_MODULE.startswith(exc.name):
            raise
        raise ConfigurationError(
            "Bluetooth is not available in this build (evaccess.charger.ble missing)"
        ) from None
    config = charger.config
    server: ServerLink = charger.firmware  # the firmware queues what the peripheral reports
    peripheral = module.BlePeripheral(
        transport=config.ble_transport,
        serial=config.serial,
        state_dir=config.state_dir,
        server=server,
        pin_settings=charger.firmware.bluetooth_state.settings(),
        clock=charger.clock,
        rng=charger.rng,
        pin_mode=config.pin_mode,
    )
    await peripheral.start()
    return peripheral


async def run_charger(
    config: ChargerConfig,
    *,
    clock: Clock,
    rng: RandomSource,
    keypad: AsyncIterator[str] | None = None,
    say: Say = print,
    started: Callable[[RunningCharger], None] | None = None,
) -> RunningCharger:
    """Run one charger until cancelled (or, with ``exit_when_done``, until its keypad script
    is done, its session ended and every queued message was answered)."""
    charger = RunningCharger(config, clock=clock, rng=rng, say=say)
    firmware = charger.firmware
    interrupted = firmware.recover_interrupted_session()
    if interrupted is not None:
        say(f"charger: session {interrupted} was interrupted by a restart; ending it")
    peripheral: Any = None
    if config.ble_transport:
        peripheral = await start_bluetooth(charger)
        firmware.bluetooth = peripheral
    if started is not None:
        started(charger)
    connection = asyncio.create_task(charger.stay_connected())
    try:
        if keypad is None:
            await connection
        else:
            # A keypad used during power-up waits for the first connection attempt to settle.
            await charger.settled.wait()
            await charger.run_keypad(keypad, wait_for_session=config.exit_when_done)
            if not config.exit_when_done:
                await connection
            await firmware.session_ended()
            try:
                await asyncio.wait_for(firmware.outbox.drained(), DRAIN_TIMEOUT_S)
            except TimeoutError:
                raise EvAccessError(
                    f"{len(firmware.outbox)} message(s) still queued after {DRAIN_TIMEOUT_S:.0f} s;"
                    " they stay in the state directory for the next start"
                ) from None
    finally:
        connection.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await connection
        await firmware.close()
        if peripheral is not None:
            await peripheral.stop()
    return charger
