"""``evaccess ble-link``: virtual Bluetooth LE controllers on one link, each served to one
program over TCP (Bumble's ``apps.controllers`` on free ports), so a charger and a phone
app run in separate terminals or processes with no radio.

A program attaches with ``--ble-transport tcp-client:127.0.0.1:PORT``; on hardware the same
programs take ``usb:0``, ``hci-socket:0`` or ``serial:/dev/...`` instead.
"""

from __future__ import annotations

import asyncio
import functools
import socket
from dataclasses import dataclass, field
from types import TracebackType
from typing import Annotated, Any, Self

import typer
from bumble import hci
from bumble.controller import Controller
from bumble.link import LocalLink
from bumble.transport.common import StreamPacketSource

from evaccess.console import command, out

ble_link_app = typer.Typer(
    help="Host virtual Bluetooth LE controllers on one link (no radio needed).",
    no_args_is_help=False,
    invoke_without_command=True,
)


class VirtualController(Controller):
    """Bumble's virtual controller, with two things as the spec has them:

    - LE Create Connection Cancel (Core Vol 4 Part E 7.8.13: Command Complete, then LE
      Connection Complete with status Unknown Connection Identifier). Bumble 0.0.236 answers
      success but keeps the connection pending forever, so a phone whose direct connect to a
      known charger timed out could never connect again on that controller.
    - Scan responses: Bumble 0.0.236 reports the advertising data again as the SCAN_RSP, so
      a scanner never sees what the advertiser set as its scan response (the charger's
      service UUID, docs/ble-protocol.md section 2); here a SCAN_RSP report carries the
      advertiser's scan response data.

    And, with ``prompt_advertising`` (the test suite's links; off for ``ble-link`` and the
    bench, whose timings stay those of the advertising interval), one shortcut: on air a
    scanner or initiator hears an advertiser's next PDU at some point within its advertising
    interval; here, when a controller starts scanning or connecting, every advertiser on the
    link sends its next PDU at once (the earliest such point), so tests do not wait on the
    interval in real time. Only enabled advertisers send; the interval between PDUs is
    unchanged."""

    prompt_advertising = False

    def on_hci_le_set_scan_enable_command(self, command: Any) -> Any:
        if command.le_scan_enable:
            self._advertisers_now()
        return super().on_hci_le_set_scan_enable_command(command)

    def on_hci_le_set_extended_scan_enable_command(self, command: Any) -> Any:
        if command.enable:
            self._advertisers_now()
        return super().on_hci_le_set_extended_scan_enable_command(command)

    def on_hci_le_create_connection_command(self, command: Any) -> Any:
        self._advertisers_now()
        return super().on_hci_le_create_connection_command(command)

    def on_hci_le_extended_create_connection_command(self, command: Any) -> Any:
        self._advertisers_now()
        return super().on_hci_le_extended_create_connection_command(command)

    def _advertisers_now(self) -> None:
        """Bring each enabled advertiser's next PDU forward to now (after this command's
        own reply). Only an advertiser waiting out its interval (a ``TimerHandle``) is
        rescheduled, so each keeps a single timer chain."""
        if not self.prompt_advertising:
            return
        loop = asyncio.get_running_loop()
        for controller in self.link.controllers:
            if controller is self:
                continue
            legacy = controller.le_legacy_advertiser
            if legacy.enabled and isinstance(legacy.timer_handle, asyncio.TimerHandle):
                legacy.timer_handle.cancel()
                legacy.timer_handle = loop.call_soon(legacy._on_timer_fired)
            for adv_set in controller.advertising_sets.values():
                if adv_set.enabled and isinstance(adv_set.timer_handle, asyncio.TimerHandle):
                    adv_set.timer_handle.cancel()
                    adv_set.timer_handle = loop.call_soon(
                        adv_set._on_extended_advertising_timer_fired
                    )

    def on_hci_le_create_connection_cancel_command(
        self, command: hci.HCI_LE_Create_Connection_Cancel_Command
    ) -> hci.HCI_StatusReturnParameters:
        pending = self.pending_le_connection
        if pending is None:
            return hci.HCI_StatusReturnParameters(hci.HCI_ErrorCode.COMMAND_DISALLOWED_ERROR)
        self.pending_le_connection = None
        event = hci.HCI_LE_Connection_Complete_Event(
            status=hci.HCI_ErrorCode.UNKNOWN_CONNECTION_IDENTIFIER_ERROR,
            connection_handle=0,
            role=hci.Role.CENTRAL,
            peer_address_type=pending.peer_address_type,
            peer_address=pending.peer_address,
            connection_interval=0,
            peripheral_latency=0,
            supervision_timeout=0,
            central_clock_accuracy=0,
        )
        asyncio.get_running_loop().call_soon(self.send_hci_packet, event)
        return hci.HCI_StatusReturnParameters(hci.HCI_ErrorCode.SUCCESS)

    def send_hci_packet(self, packet: hci.HCI_Packet) -> None:
        if isinstance(packet, hci.HCI_LE_Advertising_Report_Event):
            for report in packet.reports:
                if report.event_type == hci.HCI_LE_Advertising_Report_Event.EventType.SCAN_RSP:
                    report.data = self._scan_response_of(report.address)
        elif isinstance(packet, hci.HCI_LE_Extended_Advertising_Report_Event):
            scan_response = hci.HCI_LE_Extended_Advertising_Report_Event.EventType.SCAN_RESPONSE
            for ext_report in packet.reports:
                if ext_report.event_type & scan_response:
                    ext_report.data = self._scan_response_of(ext_report.address)
        super().send_hci_packet(packet)

    def _scan_response_of(self, address: hci.Address) -> bytes:
        """The scan response data the advertiser at ``address`` set (legacy or extended)."""
        for controller in self.link.controllers:
            legacy = controller.le_legacy_advertiser
            if legacy.enabled and legacy.address == address:
                return bytes(legacy.scan_response_data)
            for adv_set in controller.advertising_sets.values():
                if adv_set.enabled and adv_set.address == address:
                    return bytes(adv_set.scan_response_data)
        return b""


class _HostSink:
    """Packets from a controller to whichever program is attached now.

    Bumble's ``tcp-server`` transport shares one sink between connections, so a program that
    re-attaches right after another left can be detached by the late ``connection_lost`` of
    the previous one; here only the current connection's loss detaches."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None

    def on_packet(self, packet: bytes) -> None:
        if self.transport is not None:
            self.transport.write(packet)


class _HciOverTcp(asyncio.Protocol):
    def __init__(self, source: StreamPacketSource, sink: _HostSink) -> None:
        self._source = source
        self._sink = sink
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        self._sink.transport = transport
        self._source.parser.reset()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._sink.transport is self._transport:
            self._sink.transport = None

    def data_received(self, data: bytes) -> None:
        if self._sink.transport is self._transport:
            self._source.data_received(data)


@dataclass(kw_only=True, slots=True)
class VirtualLink:
    """``count`` controllers on one ``LocalLink``; ``transports`` are what programs attach to.
    ``prompt_advertising``: see ``VirtualController`` (tests only)."""

    count: int = 2
    prompt_advertising: bool = False
    host: str = "127.0.0.1"
    ports: tuple[int, ...] = ()
    transports: list[str] = field(default_factory=list)
    _servers: list[asyncio.Server] = field(default_factory=list)
    _controllers: list[Controller] = field(default_factory=list)

    async def start(self) -> None:
        link = LocalLink()  # type: ignore[no-untyped-call]
        ports = self.ports or (0,) * self.count
        for index, port in enumerate(ports):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.host, port))
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            bound = sock.getsockname()[1]
            source, sink = StreamPacketSource(), _HostSink()
            server = await asyncio.get_running_loop().create_server(
                functools.partial(_HciOverTcp, source, sink), sock=sock
            )
            self._servers.append(server)
            controller = VirtualController(
                f"C{index}", host_source=source, host_sink=sink, link=link
            )
            controller.prompt_advertising = self.prompt_advertising
            self._controllers.append(controller)
            self.transports.append(f"tcp-client:{self.host}:{bound}")

    async def close(self) -> None:
        for server in self._servers:
            server.close()
        self._servers.clear()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


@ble_link_app.callback()
@command
async def ble_link(
    devices: Annotated[int, typer.Option(min=2, max=16, help="How many controllers.")] = 2,
    port: Annotated[
        list[int] | None,
        typer.Option(help="Fixed TCP port per controller (repeat); default: free ports."),
    ] = None,
) -> None:
    """Run until interrupted; print one transport string per controller."""
    ports = tuple(port or ())
    if ports and len(ports) != devices:
        devices = len(ports)
    async with VirtualLink(count=devices, ports=ports) as link:
        for transport in link.transports:
            out.print(transport, highlight=False)
        out.print("virtual link up; Ctrl-C to stop", style="dim")
        await asyncio.get_running_loop().create_future()


if __name__ == "__main__":  # python -m evaccess.charger.ble.link (before the lead wires it)
    ble_link_app()
