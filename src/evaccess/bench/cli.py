"""``evaccess bench``: benchmark commands that print figures (``ocpp``, ``api``, ``cluster``,
``audit``, ``ble``)."""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated

import typer

from evaccess import console
from evaccess.bench import api as api_bench
from evaccess.bench import audit as audit_bench
from evaccess.bench import cluster
from evaccess.bench.ble import ble_bench_app
from evaccess.bench.ocpp import QUICK, Plan, render, run_bench
from evaccess.bench.targets import TARGETS
from evaccess.domain.errors import InvalidInput

bench_app = typer.Typer(no_args_is_help=True, pretty_exceptions_enable=False)
bench_app.add_typer(ble_bench_app, name="ble")


PinCores = Annotated[
    bool,
    typer.Option(
        "--pin/--no-pin",
        help="Pin the server to core 0 and the generator to core 1 (default), or let the "
        "kernel place both.",
    ),
]

PostgresServer = Annotated[
    str,
    typer.Option(
        help="PostgreSQL server to create the run's databases on (dropped after).",
        envvar="EVACCESS_BENCH_POSTGRES_URL",
        show_envvar=True,
    ),
]


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
    pin: PinCores = True,
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
    postgres_url: PostgresServer = cluster.DEFAULT_POSTGRES_URL,
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


@bench_app.command("audit")
@console.command
async def audit(
    quick: Annotated[bool, typer.Option("--quick", help="Reduced run (seconds).")] = False,
    postgres_url: PostgresServer = cluster.DEFAULT_POSTGRES_URL,
    hold_ms: Annotated[
        float | None,
        typer.Option(help="How long each transaction stays open after its append (2)."),
    ] = None,
) -> None:
    """Audited transactions on PostgreSQL with one audit lane, then with all of them:
    transactions per second and latency when each is held a little after its append."""
    plan = audit_bench.QUICK if quick else audit_bench.AuditPlan()
    if hold_ms is not None:
        if hold_ms < 0:
            raise InvalidInput("--hold-ms must not be negative")
        plan = replace(plan, hold_ms=hold_ms)
    result = await audit_bench.run_audit_bench(plan, postgres_url=postgres_url)
    audit_bench.render(result, console.out)


@bench_app.command("api")
@console.command
async def api(
    quick: Annotated[
        bool, typer.Option("--quick", help="Reduced run: 40 requests/s, 1.5 s per endpoint.")
    ] = False,
    rate: Annotated[
        float | None, typer.Option(help="Requests per second per endpoint (default 200).")
    ] = None,
    seconds: Annotated[
        float | None, typer.Option(help="Measurement window per endpoint (default 30).")
    ] = None,
    users: Annotated[
        int | None, typer.Option(help="Members who log in and share the load (default 100).")
    ] = None,
    database_url: Annotated[
        str | None,
        typer.Option(
            help="PostgreSQL: postgresql+asyncpg://USER@HOST:PORT/NAME, a database NAME that "
            "does not exist yet: the bench creates it and drops it after the run. Default: "
            "SQLite in a temporary directory."
        ),
    ] = None,
    pin: PinCores = True,
) -> None:
    """REST latency of a Bluetooth-PIN reveal (with its audit write) and a keypad-PIN set on
    `evaccess server run`, open loop, against GET /health as the ceiling (target p99 <= 20 ms).
    Exits non-zero when any answer was not the expected 2xx."""
    plan = api_bench.QUICK if quick else api_bench.ApiPlan()
    if (rate is not None and rate <= 0) or (seconds is not None and seconds <= 0):
        raise InvalidInput("--rate and --seconds must be positive")
    if users is not None and users < 1:
        raise InvalidInput("--users must be at least 1")
    api_bench.database_kind(database_url)
    plan = replace(
        plan,
        rate=rate if rate is not None else plan.rate,
        seconds=seconds if seconds is not None else plan.seconds,
        users=users if users is not None else plan.users,
        database_url=database_url,
        pin=pin,
    )
    result = await api_bench.run_api_bench(plan, say=_progress, progress_console=console.err)
    api_bench.render(result, console.out)
    api_bench.require_clean(result)
