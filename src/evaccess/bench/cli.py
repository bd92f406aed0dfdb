"""``evaccess bench``: benchmark commands that print figures (``ocpp``, ``ble``)."""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated

import typer

from evaccess import console
from evaccess.bench import cluster
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


@bench_app.command("cluster")
@console.command
async def cluster_bench(
    quick: Annotated[bool, typer.Option("--quick", help="Reduced run (under a minute).")] = False,
    postgres_url: Annotated[
        str,
        typer.Option(
            help="PostgreSQL server to create the run's database on (dropped after).",
            envvar="EVACCESS_BENCH_POSTGRES_URL",
            show_envvar=True,
        ),
    ] = cluster.DEFAULT_POSTGRES_URL,
    redis_url: Annotated[
        str,
        typer.Option(
            help="Redis the nodes share (keys under a prefix of the run's own, deleted after).",
            envvar="EVACCESS_BENCH_REDIS_URL",
            show_envvar=True,
        ),
    ] = cluster.DEFAULT_REDIS_URL,
    chargers: Annotated[
        int | None, typer.Option(help="Chargers on node A for the command phase (1000).")
    ] = None,
    rate: Annotated[float | None, typer.Option(help="Commands per second (100).")] = None,
    seconds: Annotated[float | None, typer.Option(help="Length of the command phase (20).")] = None,
) -> None:
    """Two server nodes on PostgreSQL and Redis: cross-node command latency, keypad PIN
    propagation, and Authorize throughput and CPU per node against one node alone."""
    plan = cluster.QUICK if quick else cluster.ClusterPlan()
    plan = replace(
        plan,
        chargers=chargers if chargers is not None else plan.chargers,
        rate=rate if rate is not None else plan.rate,
        seconds=seconds if seconds is not None else plan.seconds,
    )
    if plan.chargers < 1 or plan.rate <= 0 or plan.seconds <= 0:
        raise InvalidInput("--chargers, --rate and --seconds must be positive")
    if plan.propagations > plan.chargers:
        plan = replace(plan, propagations=plan.chargers)
    result = await cluster.run_cluster_bench(
        plan, postgres_url=postgres_url, redis_url=redis_url, say=_progress, console=console.err
    )
    cluster.render(result, console.out)
    cluster.check(result)
