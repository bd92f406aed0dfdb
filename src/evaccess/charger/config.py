"""What one charger is told at start (``evaccess charger run`` flags)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from evaccess import console
from evaccess.domain.errors import InvalidInput
from evaccess.protocol.ble_access import PinMode as PinMode  # the one definition
from evaccess.protocol.ocpp_frames import OcppVersion

EXAMPLE_SERVER = "ws://127.0.0.1:9000/ocpp"
"""The OCPP endpoint of a server started with the defaults (``evaccess server run``)."""


def ocpp_server_url(raw: str) -> str:
    """The ``--server`` value: a WebSocket URL with a host (the charger appends its serial)."""
    parts = urlsplit(raw.strip())
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise InvalidInput(
            f"--server must be the OCPP endpoint's ws:// or wss:// URL, e.g. {EXAMPLE_SERVER}"
            f" (got {console.shown_url(raw)!r})"
        )
    return raw.strip()


@dataclass(frozen=True, kw_only=True, slots=True)
class Backoff:
    """Reconnect delays: exponential, capped, with "equal jitter" (half fixed, half drawn from
    the injected rng) so a fleet that lost its server does not reconnect in lockstep."""

    initial_s: float = 1.0
    factor: float = 2.0
    max_s: float = 60.0

    def delay(self, attempt: int, draw: float) -> float:
        """Delay before reconnect ``attempt`` (0-based); ``draw`` is uniform in [0, 1)."""
        ceiling = min(self.initial_s * self.factor**attempt, self.max_s)
        return ceiling * (0.5 + draw / 2)


@dataclass(frozen=True, kw_only=True, slots=True)
class ChargerConfig:
    serial: str
    vendor: str
    model: str
    firmware: str
    server: str
    """Base URL of the CSMS, e.g. ``ws://host:port/ocpp``; the serial is appended."""
    password: str = field(repr=False)
    protocol: OcppVersion = OcppVersion.V201
    state_dir: Path
    ble_transport: str | None = None
    pin_mode: PinMode = PinMode.PAKE
    session_s: float = 5.0
    """How long a keypad-started session lasts before the charger ends it."""
    exit_when_done: bool = False
    """Stop once the keypad input is exhausted, sessions ended and the outbox is empty."""
    backoff: Backoff = Backoff()
    response_timeout_s: float = 30.0
    default_heartbeat_s: int = 300
    ca_file: Path | None = None
    """PEM CA(s) the server's certificate must chain to (wss://); default: the system's."""
    client_cert: Path | None = None
    """PEM client certificate, CN = the serial (OCPP security profile 3: no password)."""
    client_key: Path | None = None

    @property
    def url(self) -> str:
        return f"{self.server.rstrip('/')}/{self.serial}"
