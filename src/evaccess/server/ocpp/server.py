"""The OCPP-J endpoint ``ws[s]://HOST:PORT/ocpp/{charger_id}`` on ``websockets``.

Embeddable: nothing is wired at import; ``serve_ocpp`` starts one server on the running
event loop and returns an ``OcppServer`` (``.port``, ``.notifier``, ``.stats()``,
``.close()``). The lead's one line in ``evaccess server run``::

    ocpp = await serve_ocpp(backend, host=host, port=ocpp_port, ssl=tls, clock=SystemClock())

Handshake (OCPP 2.0.1 Part 4 §3; OCPP-J 1.6 §3-4):

* Basic Auth, username = charger id (security profile 1; profile 2 is the same over TLS
  when ``ssl`` is given; 2.0.1 Part 2 A00, security profiles). A missing header, an
  unknown charger or a wrong password is refused with HTTP 401 before the upgrade, counted.
* Profile 3 (``ssl`` from ``tls.server_tls_context`` with a client CA): a charger whose
  certificate TLS verified is identified by its subject CN, which must be the URL's
  charger id (HTTP 403 otherwise, before the upgrade); no Basic Auth then.
* Subprotocols ``ocpp2.0.1`` and ``ocpp1.6``. When none of the offered ones matches, the
  handshake completes without ``Sec-WebSocket-Protocol`` and the server then closes
  (OCPP-J 1.6 §4.1.2 / 2.0.1 Part 4 §3.1.2), instead of websockets' default HTTP 400.
"""

from __future__ import annotations

import asyncio
import binascii
import logging
import ssl as ssl_module
from base64 import b64decode
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from http import HTTPStatus
from typing import Final
from urllib.parse import unquote, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.extensions.permessage_deflate import ServerPerMessageDeflateFactory
from websockets.frames import CloseCode
from websockets.http11 import Request, Response
from websockets.typing import Subprotocol

from evaccess.domain.clock import Clock, SystemClock
from evaccess.protocol.ocpp_components import SUBPROTOCOLS
from evaccess.protocol.ocpp_frames import OcppVersion, SchemaRegistry
from evaccess.server.ocpp.backend import (
    AuthOutcome,
    ChargerEndpoint,
    ChargerRegistry,
    OcppBackend,
)
from evaccess.server.ocpp.session import OcppSession, SessionCounters
from evaccess.server.ocpp.tls import peer_common_names

log = logging.getLogger("evaccess.server.ocpp")

PATH_PREFIX: Final = "/ocpp/"
BYTES_PER_MESSAGE: Final = 64 * 1024
"""Answered with CALLERROR FormatViolation above this (2.0.1 DeviceDataCtrlr.BytesPerMessage)."""
MAX_FRAME_BYTES: Final = 4 * BYTES_PER_MESSAGE
"""websockets closes the connection (1009, RFC 6455 §7.4.1) above this: never read."""
CALL_TIMEOUT_S: Final = 30.0
WRITE_LIMIT: Final = 16 * 1024


@dataclass(frozen=True, kw_only=True, slots=True)
class Compression:
    """permessage-deflate (RFC 7692), required of a CSMS by OCPP-J (2.0.1 Part 4 §3.3) and
    accepted whenever a charger offers it.

    Memory: a zlib stream kept between messages costs ~10 KB (deflate, small settings) to
    ~40 KB (inflate with the 32 KB window a client is free to use) per connection. Both
    directions are negotiated without context takeover (``server_no_context_takeover``,
    ``client_no_context_takeover``; a server may ask the latter of any client, RFC 7692
    §7.1.1.2), so websockets drops each stream at the end of its message and an idle
    charger keeps none: its cost is that of an uncompressed one (docs/performance.md).
    The price is a new stream per message (a dictionary per message only, fine for OCPP's
    small frames). ``window_bits`` bounds what the server compresses with (and the
    charger's window when it offers ``client_max_window_bits``); ``level`` and
    ``mem_level`` are zlib's."""

    window_bits: int = 12
    level: int = 6
    mem_level: int = 5

    def __post_init__(self) -> None:
        if not 9 <= self.window_bits <= 15:
            raise ValueError("compression window_bits must be 9 to 15")
        if not 0 <= self.level <= 9:
            raise ValueError("compression level must be 0 to 9")
        if not 1 <= self.mem_level <= 9:
            raise ValueError("compression mem_level must be 1 to 9")

    def extension(self) -> ServerPerMessageDeflateFactory:
        return ServerPerMessageDeflateFactory(
            server_no_context_takeover=True,
            client_no_context_takeover=True,
            server_max_window_bits=self.window_bits,
            client_max_window_bits=self.window_bits,
            compress_settings={"level": self.level, "memLevel": self.mem_level},
        )


class _NoFrameDebug(logging.LoggerAdapter):  # type: ignore[type-arg]
    """websockets logs frame contents at DEBUG: PINs would reach the log. Only its INFO and
    above pass; the session's own frame log (redacted) replaces it."""

    def isEnabledFor(self, level: int) -> bool:
        return level > logging.DEBUG and self.logger.isEnabledFor(level)


@dataclass(kw_only=True, slots=True)
class HandshakeCounters:
    accepted: int = 0
    refused_missing_credentials: int = 0
    refused_unknown_charger: int = 0
    refused_bad_password: int = 0
    refused_bad_path: int = 0
    refused_certificate_mismatch: int = 0
    """A verified client certificate whose CN is not the URL's charger id (profile 3)."""
    accepted_by_certificate: int = 0
    no_subprotocol: int = 0


def charger_id_from_path(path: str) -> str | None:
    """``/ocpp/{charger_id}`` (percent-decoded), or None for any other path."""
    route = urlsplit(path).path
    if not route.startswith(PATH_PREFIX):
        return None
    charger_id = unquote(route[len(PATH_PREFIX) :])
    if not charger_id or "/" in charger_id or len(charger_id) > 48:
        return None  # identity is CiString48 (2.0.1 Part 4 §3.1.1)
    return charger_id


def basic_credentials(request: Request) -> tuple[str, str] | None:
    """(username, password) from ``Authorization: Basic ...`` (RFC 7617)."""
    header = request.headers.get("Authorization")
    if header is None:
        return None
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    username, separator, password = decoded.partition(":")
    return (username, password) if separator else None


class OcppServer:
    """A running endpoint; also the ``ChargerNotifier`` the server's services poke."""

    def __init__(
        self,
        backend: OcppBackend,
        *,
        clock: Clock,
        call_timeout_s: float = CALL_TIMEOUT_S,
        bytes_per_message: int = BYTES_PER_MESSAGE,
        schemas: SchemaRegistry | None = None,
        registry: ChargerRegistry | None = None,
    ) -> None:
        self.backend = backend
        self.registry = registry
        self.clock = clock
        self.call_timeout_s = call_timeout_s
        self.bytes_per_message = bytes_per_message
        self.schemas = schemas or SchemaRegistry()
        self.sessions: dict[str, OcppSession] = {}
        self.handshakes = HandshakeCounters()
        self.counters = SessionCounters()
        self._background: set[asyncio.Task[None]] = set()
        self._server: Server | None = None

    @property
    def notifier(self) -> ChargerEndpoint:
        return self

    @property
    def port(self) -> int:
        assert self._server is not None, "not started"
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    def poke(self, charger_id: str) -> None:
        """Something waits in the outbox for ``charger_id``: send it if it is connected
        (otherwise it goes out on the next connect). Call it on the server's event loop."""
        session = self.sessions.get(charger_id)
        if session is not None:
            session.poke()

    def holds(self, charger_id: str) -> bool:
        return charger_id in self.sessions

    def connected_chargers(self) -> list[str]:
        return list(self.sessions)

    def hand_over(self, charger_id: str) -> None:
        """The charger connected to another node (cluster mode): close the socket here; the
        session is forgotten first, so that its end does not mark the charger offline."""
        session = self.sessions.pop(charger_id, None)
        if session is None:
            return
        log.info("charger %s connected to another node: closing its socket here", charger_id)
        task = asyncio.get_running_loop().create_task(
            session.connection.close(CloseCode.GOING_AWAY, "connected to another server node")
        )
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def stats(self) -> dict[str, int]:
        """Handshake refusals, connected chargers and message counters."""
        return {
            "connected": len(self.sessions),
            **asdict(self.handshakes),
            **asdict(self.counters),
        }

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in list(self._background):
            task.cancel()

    # --- handshake ---------------------------------------------------------------------

    async def _process_request(
        self, connection: ServerConnection, request: Request
    ) -> Response | None:
        charger_id = charger_id_from_path(request.path)
        if charger_id is None:
            self.handshakes.refused_bad_path += 1
            return connection.respond(HTTPStatus.NOT_FOUND, "Not Found\n")
        common_names = peer_common_names(connection.transport.get_extra_info("peercert"))
        if common_names:
            # Security profile 3: TLS verified the certificate against the client CA; its
            # CN must be this charger's identity, and then no Basic Auth is asked for.
            if common_names != [charger_id]:
                self.handshakes.refused_certificate_mismatch += 1
                return connection.respond(HTTPStatus.FORBIDDEN, "Forbidden\n")
            outcome = await self.backend.authenticate_certificate(charger_id)
            if outcome is not AuthOutcome.ACCEPTED:
                self.handshakes.refused_unknown_charger += 1
                return connection.respond(HTTPStatus.FORBIDDEN, "Forbidden\n")
            self.handshakes.accepted_by_certificate += 1
            return None
        credentials = basic_credentials(request)
        if credentials is None:
            self.handshakes.refused_missing_credentials += 1
            return self._unauthorized(connection)
        username, password = credentials
        if username != charger_id:
            self.handshakes.refused_unknown_charger += 1
            return self._unauthorized(connection)
        outcome = await self.backend.authenticate(charger_id, password)
        if outcome is AuthOutcome.UNKNOWN_CHARGER:
            self.handshakes.refused_unknown_charger += 1
            return self._unauthorized(connection)
        if outcome is not AuthOutcome.ACCEPTED:
            self.handshakes.refused_bad_password += 1
            return self._unauthorized(connection)
        return None

    @staticmethod
    def _unauthorized(connection: ServerConnection) -> Response:
        response = connection.respond(HTTPStatus.UNAUTHORIZED, "Unauthorized\n")
        response.headers["WWW-Authenticate"] = 'Basic realm="OCPP", charset="UTF-8"'
        return response

    @staticmethod
    def _select_subprotocol(
        connection: ServerConnection, subprotocols: Sequence[Subprotocol]
    ) -> Subprotocol | None:
        # Ours in our order of preference; None completes the handshake without the header.
        for supported in SUBPROTOCOLS:
            if supported in subprotocols:
                return Subprotocol(supported)
        return None

    # --- sessions ----------------------------------------------------------------------

    async def _handle(self, connection: ServerConnection) -> None:
        if connection.subprotocol is None:
            self.handshakes.no_subprotocol += 1
            await connection.close(CloseCode.PROTOCOL_ERROR, "no supported OCPP subprotocol")
            return
        assert connection.request is not None
        charger_id = charger_id_from_path(connection.request.path)
        assert charger_id is not None  # checked in _process_request
        # websockets keeps the handshake's request and response for the connection's life;
        # their headers were about 5 KB of every idle charger's 22 KB of Python heap
        # (tracemalloc), and nothing reads them after the handshake. (The request itself
        # stays: websockets takes a connection without one for one awaiting its handshake.)
        connection.request.headers.clear()
        if connection.response is not None:
            connection.response.headers.clear()
        self.handshakes.accepted += 1
        previous = self.sessions.get(charger_id)
        if previous is not None:
            # A charger reconnecting before its old socket timed out: the new one wins.
            await previous.connection.close(CloseCode.GOING_AWAY, "replaced by a new connection")
        session = OcppSession(
            charger_id=charger_id,
            version=OcppVersion(connection.subprotocol),
            connection=connection,
            backend=self.backend,
            clock=self.clock,
            schemas=self.schemas,
            counters=self.counters,
            background=self._background,
            call_timeout_s=self.call_timeout_s,
            bytes_per_message=self.bytes_per_message,
        )
        self.sessions[charger_id] = session
        if self.registry is not None:
            await self.registry.connected(charger_id)
        await self.backend.connection_changed(charger_id, online=True, protocol=session.version)
        try:
            await session.run()
        finally:
            # A replaced session must not mark its successor's charger offline (nor one
            # that another node holds since).
            if self.sessions.get(charger_id) is session:
                del self.sessions[charger_id]
                still_ours = self.registry is None or await self.registry.disconnected(charger_id)
                if still_ours:
                    await self.backend.connection_changed(
                        charger_id, online=False, protocol=session.version
                    )

    async def _start(
        self,
        *,
        host: str,
        port: int,
        ssl: ssl_module.SSLContext | None,
        compression: Compression | None,
    ) -> None:
        self._server = await serve(
            self._handle,
            host,
            port,
            ssl=ssl,
            process_request=self._process_request,
            select_subprotocol=self._select_subprotocol,
            compression=None,  # websockets' default keeps both zlib streams: see Compression
            extensions=[compression.extension()] if compression is not None else None,
            max_size=MAX_FRAME_BYTES,
            max_queue=4,
            write_limit=WRITE_LIMIT,
            ping_interval=None,  # chargers ping (WebSocketPingInterval); no task per socket
            logger=_NoFrameDebug(logging.getLogger("evaccess.server.ocpp.transport"), {}),
        )


async def serve_ocpp(
    backend: OcppBackend,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    ssl: ssl_module.SSLContext | None = None,
    clock: Clock | None = None,
    call_timeout_s: float = CALL_TIMEOUT_S,
    bytes_per_message: int = BYTES_PER_MESSAGE,
    compression: Compression | None = Compression(),
    registry: ChargerRegistry | None = None,
) -> OcppServer:
    """Start the OCPP-J endpoint on the running loop (port 0: any free port);
    ``compression=None`` declines permessage-deflate."""
    server = OcppServer(
        backend,
        clock=clock or SystemClock(),
        call_timeout_s=call_timeout_s,
        bytes_per_message=bytes_per_message,
        registry=registry,
    )
    await server._start(host=host, port=port, ssl=ssl, compression=compression)
    log.info("OCPP endpoint listening on port %d (%s)", server.port, "wss" if ssl else "ws")
    return server
