"""``evaccess bench``: benchmark commands that print figures (``ocpp``, ``ble``)."""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated

import typer

from evaccess import console
from evaccess.bench.ble import ble_bench_app
from evaccess.bench.ocpp import QUICK, Plan, render, run_bench
from evaccess.bench.targets import TARGETS
from evaccess.domain.errors import InvalidInput

bench_app = typer.Typer(no_args_is_help=True, pretty_exceptions_enable=False)
bench_app.add_typer(ble_bench_app, name="ble")


def _progress(line: str) -> None:
    console.err.print(line, highlight=False)


@bench_app.command("ocpp")
@console.command
async def ocpp(
    quick: Annotated[bool, typer.Option("--quick", help="Reduced run (under a minute).")] = False,
    rounds: Annotated[int | None, typer.Option(help="Interleaved rounds (default 3).")] = None,
    targets: Annotated[
        str,
        typer.Option(
            help="Comma-separated servers: baseline, echo, evaccess (`evaccess server run`), "
            "evaccess-deflate (evaccess with chargers that offer WebSocket compression), "
            "evaccess-endpoint (only the OCPP endpoint in a process of its own)."
        ),
    ] = "baseline,echo,evaccess,evaccess-deflate",
    pin: Annotated[
        bool,
        typer.Option(
            "--pin/--no-pin",
            help="Pin the server to core 0 and the generator to core 1 (default), or let the "
            "kernel place both.",
        ),
    ] = True,
) -> None:
    """OCPP-J (Open Charge Point Protocol over WebSocket, JSON) throughput, latency, CPU per
    round trip and memory per idle charger."""
    plan = QUICK if quick else Plan()
    chosen = tuple(name.strip() for name in targets.split(",") if name.strip())
    unknown = sorted(set(chosen) - set(TARGETS))
    if unknown or not chosen:
        raise InvalidInput(f"unknown target(s) {', '.join(unknown)}; choose from {TARGETS}")
    plan = replace(
        plan, targets=chosen, rounds=rounds if rounds is not None else plan.rounds, pin=pin
    )
    result = await run_bench(plan, say=_progress)
    render(result, console.out)
