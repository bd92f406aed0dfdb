"""``evaccess charger fleet``: many lean chargers in one event loop.

A fleet charger is a raw OCPP-J client (pre-encoded frames over ``websockets``): it opens
its WebSocket with Basic Auth, sends BootNotification, and stays connected for a while,
answering any server Call with a CallError ``NotSupported``. The full ``ChargePoint`` costs
too much CPU and memory per charger for 10,000 of them (a generator built on the library
costs as much CPU as the server under test; 20.4 KB per idle connection without deflate).

Identities come from a CSV file with a header ``serial,password``, one charger per row: the
server's admin command produces it when it registers chargers; tests write their own.
"""

from __future__ import annotations

import asyncio
import csv
import json
import math
import resource
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.progress import Progress
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
from websockets.typing import Subprotocol

from evaccess.charger.run import basic_auth, quiet_websocket_logger
from evaccess.domain.clock import Clock
from evaccess.domain.errors import InvalidInput
from evaccess.protocol.ocpp_frames import OcppVersion

CALL, CALL_RESULT, CALL_ERROR = 2, 3, 4
BOOT_TIMEOUT_S = 60.0


@dataclass(frozen=True, kw_only=True, slots=True)
class FleetCredential:
    serial: str
    password: str = field(repr=False)


@dataclass(frozen=True, kw_only=True, slots=True)
class FleetOptions:
    server: str
    protocol: OcppVersion = OcppVersion.V201
    concurrency: int = 200
    hold_s: float = 0.0
    vendor: str = "evaccess"
    model: str = "fleet"


def load_credentials(path: Path, *, count: int | None = None) -> list[FleetCredential]:
    """Read ``serial,password`` rows (header required); the first ``count`` when given."""
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            if reader.fieldnames is None or not {"serial", "password"} <= set(reader.fieldnames):
                raise InvalidInput(f"{path.name}: expected a CSV header 'serial,password'")
            rows = [FleetCredential(serial=r["serial"], password=r["password"]) for r in reader]
    except OSError as exc:
        raise InvalidInput(f"cannot read the password file {path}: {exc.strerror}") from None
    except (UnicodeDecodeError, csv.Error):
        raise InvalidInput(f"cannot read the password file {path}: not a CSV text file") from None
    if count is not None:
        if count > len(rows):
            raise InvalidInput(f"{path.name} lists {len(rows)} chargers, {count} requested")
        rows = rows[:count]
    return rows


def boot_frame(options: FleetOptions, serial: str) -> str:
    if options.protocol is OcppVersion.V201:
        payload: dict[str, Any] = {
            "reason": "PowerUp",
            "chargingStation": {
                "vendorName": options.vendor,
                "model": options.model,
                "serialNumber": serial,
            },
        }
    else:
        payload = {
            "chargePointVendor": options.vendor,
            "chargePointModel": options.model,
            "chargePointSerialNumber": serial,
        }
    return json.dumps([CALL, "boot", "BootNotification", payload], separators=(",", ":"))


@dataclass(kw_only=True)
class FleetReport:
    total: int
    connected: int = 0
    booted: int = 0
    failures: dict[str, int] = field(default_factory=dict)
    boot_ms: list[float] = field(default_factory=list)

    @property
    def failed(self) -> int:
        return self.total - self.booted

    def fail(self, reason: str) -> None:
        self.failures[reason] = self.failures.get(reason, 0) + 1

    def table(self) -> tuple[Sequence[str], Sequence[Sequence[Any]]]:
        p50, p99 = percentile(self.boot_ms, 50), percentile(self.boot_ms, 99)
        reasons = ", ".join(f"{k}: {v}" for k, v in sorted(self.failures.items())) or "-"
        columns = ("chargers", "connected", "booted", "failed", "boot p50 ms", "boot p99 ms", "why")
        row = (self.total, self.connected, self.booted, self.failed, f"{p50:.1f}", f"{p99:.1f}")
        return columns, [(*row, reasons)]


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile; NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


async def _answer_calls(websocket: ClientConnection) -> None:
    """Answer any server Call with CallError NotSupported (OCPP-J §4.2.3) until closed."""
    async for raw in websocket:
        message = json.loads(raw)
        if message and message[0] == CALL:
            error = [CALL_ERROR, message[1], "NotSupported", "fleet charger", {}]
            await websocket.send(json.dumps(error))


class _BootPhase:
    """Counts chargers through the boot phase: limits handshakes in flight, drives the bar."""

    def __init__(self, total: int, concurrency: int, on_done: Callable[[int], None]) -> None:
        self.gate = asyncio.Semaphore(concurrency)
        self.total = total
        self.finished = 0
        self.all_done = asyncio.Event()
        self._on_done = on_done

    def done(self) -> None:
        self.gate.release()
        self.finished += 1
        self._on_done(self.finished)
        if self.finished == self.total:
            self.all_done.set()


async def _one(
    credential: FleetCredential,
    options: FleetOptions,
    clock: Clock,
    report: FleetReport,
    phase: _BootPhase,
) -> None:
    url = f"{options.server.rstrip('/')}/{credential.serial}"
    await phase.gate.acquire()
    booting = True
    started = clock.monotonic()
    try:
        async with connect(
            url,
            subprotocols=[Subprotocol(options.protocol.value)],
            additional_headers={
                "Authorization": basic_auth(credential.serial, credential.password)
            },
            compression=None,
            proxy=None,
            open_timeout=BOOT_TIMEOUT_S,
            logger=quiet_websocket_logger(),
        ) as websocket:
            report.connected += 1
            await websocket.send(boot_frame(options, credential.serial))
            async with asyncio.timeout(BOOT_TIMEOUT_S):
                while True:
                    reply = json.loads(await websocket.recv())
                    if reply[0] in (CALL_RESULT, CALL_ERROR) and reply[1] == "boot":
                        break
            status = reply[2].get("status") if reply[0] == CALL_RESULT else "CallError"
            if status != "Accepted":
                report.fail(f"boot {status}")
                return
            report.booted += 1
            report.boot_ms.append((clock.monotonic() - started) * 1000)
            booting = False
            phase.done()
            if options.hold_s > 0:
                answering = asyncio.create_task(_answer_calls(websocket))
                await phase.all_done.wait()
                await asyncio.sleep(options.hold_s)
                answering.cancel()
    except InvalidStatus as exc:
        report.fail(f"HTTP {exc.response.status_code}")
    except (OSError, InvalidHandshake, ConnectionClosed, TimeoutError) as exc:
        report.fail(type(exc).__name__)
    finally:
        if booting:
            phase.done()


async def run_fleet(
    credentials: Sequence[FleetCredential],
    options: FleetOptions,
    *,
    clock: Clock,
    progress: bool = False,
) -> FleetReport:
    """Boot every charger (``concurrency`` handshakes at a time), hold, and report."""
    # One file descriptor per charger: allow as many as the hard limit permits.
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if len(credentials) > hard - 100:
        raise InvalidInput(f"{len(credentials)} chargers need more file descriptors ({hard})")
    report = FleetReport(total=len(credentials))
    with Progress(disable=not progress, transient=True) as bar:
        task_id = bar.add_task("booting chargers", total=len(credentials))
        phase = _BootPhase(
            len(credentials),
            options.concurrency,
            lambda finished: bar.update(task_id, completed=finished),
        )
        await asyncio.gather(*(_one(c, options, clock, report, phase) for c in credentials))
    return report
