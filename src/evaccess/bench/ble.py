"""``evaccess bench ble``: pairing and reconnect latency on the virtual link.

One process hosts a ``VirtualLink`` (the controllers ``evaccess ble-link`` serves, over real
TCP sockets), the real charger peripheral and the real phone central. Each run connects
afresh (scan, connect, MTU exchange, GATT discovery) and ends with the link closed:

- ``pair``: PIN pairing to credential (INFO read + CPace + key confirmation + credential);
- ``reconnect``: a credentialed phone to an authenticated session (challenge-response);
- ``passkey_pair``: passkey mode (LE SC Passkey Entry + PIN-less enrolment).

``--phases`` also times the phases of one pairing, to see where the time goes.
"""

from __future__ import annotations

import asyncio
import itertools
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated

import typer
from bumble.hci import Address

from evaccess.app.ble.central import ChargerSession, KnownCharger, PhoneCentral
from evaccess.charger.ble.link import VirtualLink
from evaccess.charger.ble.peripheral import BlePeripheral
from evaccess.charger.ports import BluetoothPinSettings
from evaccess.console import command, out, print_table
from evaccess.domain.clock import ManualClock, SystemRandom
from evaccess.domain.pins import generate_bluetooth_pin

ble_bench_app = typer.Typer(help="Bluetooth LE pairing and reconnect latency (virtual link).")

SERIAL = "BENCH-0001"


class _NullServer:
    async def send_security_event(self, event_type: str, tech_info: str | None = None) -> None:
        return None

    async def report_configuration(self, changes: dict[str, str]) -> None:
        return None

    async def report_pin_changed(self, new_pin: str) -> None:
        return None


def _ms(samples: list[float]) -> tuple[float, float, float, float]:
    ordered = sorted(samples)
    p90 = ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]
    return statistics.median(ordered), p90, ordered[0], ordered[-1]


async def _timed(runs: int, once: Callable[[], Awaitable[float]]) -> list[float]:
    """``once`` returns the ms from its start to its goal (teardown is not counted)."""
    await once()  # warm-up (imports, first ECDH key, caches)
    return [await once() for _ in range(runs)]


async def _measure(pin_mode: str, runs: int, phases: bool) -> dict[str, list[float]]:
    rng = SystemRandom()
    pin = generate_bluetooth_pin(rng)
    results: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        async with VirtualLink(count=2) as link:
            charger = BlePeripheral(
                transport=link.transports[0],
                serial=SERIAL,
                state_dir=Path(tmp),
                server=_NullServer(),
                pin_settings=BluetoothPinSettings(pin=pin, required=True, changeable=False),
                clock=ManualClock(),
                rng=rng,
                pin_mode=pin_mode,
            )
            await charger.start()
            try:
                async with PhoneCentral(link.transports[1], rng=rng) as central:
                    phone_id = rng.token_bytes(16)
                    secret = b""

                    known: KnownCharger | None = None

                    async def pair_once() -> float:
                        nonlocal secret, known
                        start = time.perf_counter()
                        session = await central.connect(SERIAL)
                        try:
                            await session.info()
                            if pin_mode == "passkey":
                                await session.pair_link_with_passkey(pin)
                                secret = await session.enrol(phone_id=phone_id, pin=None)
                            else:
                                secret = await session.enrol(phone_id=phone_id, pin=pin)
                            known = session.known
                            return (time.perf_counter() - start) * 1000
                        finally:
                            await session.close()

                    async def reconnect_once() -> float:
                        start = time.perf_counter()
                        session = await central.connect(SERIAL, known=known)
                        try:
                            await session.authenticate(phone_id=phone_id, secret=secret)
                            return (time.perf_counter() - start) * 1000
                        finally:
                            await session.close()

                    if pin_mode == "passkey":
                        results["passkey_pair"] = await _timed(runs, pair_once)
                    else:
                        results["pair"] = await _timed(runs, pair_once)
                        results["reconnect"] = await _timed(runs, reconnect_once)
                        if phases:
                            assert known is not None
                            results.update(
                                await _reconnect_phases(central, known, phone_id, secret, runs)
                            )
                            results.update(await _phases(central, pin, phone_id, runs))
            finally:
                await charger.stop()
    return results


async def _phases(
    central: PhoneCentral, pin: str, phone_id: bytes, runs: int
) -> dict[str, list[float]]:
    names = ("scan", "connect", "discover", "info", "cpace", "disconnect")
    found: dict[str, list[float]] = {f"phase_{n}": [] for n in names}
    assert central.device is not None
    for _ in range(runs):
        marks = [time.perf_counter()]
        address = await central.find(SERIAL)
        marks.append(time.perf_counter())
        connection = await asyncio.wait_for(central.device.connect(address), 10)
        marks.append(time.perf_counter())
        session = ChargerSession(connection, serial=SERIAL, rng=SystemRandom())
        await session.discover()
        marks.append(time.perf_counter())
        await session.info()
        marks.append(time.perf_counter())
        await session.enrol(phone_id=phone_id, pin=pin)
        marks.append(time.perf_counter())
        await session.close()
        marks.append(time.perf_counter())
        for name, (a, b) in zip(names, itertools.pairwise(marks), strict=True):
            found[f"phase_{name}"].append((b - a) * 1000)
    return found


async def _reconnect_phases(
    central: PhoneCentral, known: KnownCharger, phone_id: bytes, secret: bytes, runs: int
) -> dict[str, list[float]]:
    names = ("connect", "mtu", "challenge_response")
    found: dict[str, list[float]] = {f"reconnect_{n}": [] for n in names}
    assert central.device is not None
    for _ in range(runs):
        marks = [time.perf_counter()]
        connection = await asyncio.wait_for(central.device.connect(Address(known.address)), 10)
        marks.append(time.perf_counter())
        session = ChargerSession(connection, serial=SERIAL, rng=SystemRandom())
        await session.use_handles(known.handles)
        marks.append(time.perf_counter())
        await session.authenticate(phone_id=phone_id, secret=secret)
        marks.append(time.perf_counter())
        await session.close()
        for name, (a, b) in zip(names, itertools.pairwise(marks), strict=True):
            found[f"reconnect_{name}"].append((b - a) * 1000)
    return found


@ble_bench_app.callback(invoke_without_command=True)
@command
async def bench_ble(
    runs: Annotated[int, typer.Option(min=20, help="Runs per measurement.")] = 30,
    phases: Annotated[
        bool, typer.Option("--phases", help="Also time the phases of a pairing.")
    ] = False,
) -> None:
    """Print p50/p90/min/max in ms; the last line is machine-readable."""
    results = await _measure("pake", runs, phases)
    results.update(await _measure("passkey", runs, False))
    rows = []
    for name, samples in results.items():
        p50, p90, low, high = _ms(samples)
        rows.append((name, len(samples), f"{p50:.1f}", f"{p90:.1f}", f"{low:.1f}", f"{high:.1f}"))
    print_table(
        "Bluetooth LE on the virtual link (ms)",
        ("measure", "runs", "p50", "p90", "min", "max"),
        rows,
    )
    out.print(
        f"pair_p50_ms={_ms(results['pair'])[0]:.1f} "
        f"reconnect_p50_ms={_ms(results['reconnect'])[0]:.1f} "
        f"passkey_pair_p50_ms={_ms(results['passkey_pair'])[0]:.1f}",
        highlight=False,
        soft_wrap=True,
    )


if __name__ == "__main__":  # python -m evaccess.bench.ble (before bench/cli.py registers it)
    ble_bench_app()
