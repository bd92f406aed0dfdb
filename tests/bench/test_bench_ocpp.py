"""The bench machinery end to end with tiny counts: real server processes, real sockets.

Not a timing assertion: it proves every workload runs against (a) and (b), that figures come
out for all three targets (evaccess with real keypad PINs, every answer Accepted).
"""

from __future__ import annotations

import io
import math
import os
import re
from dataclasses import replace
from pathlib import Path

import pytest
from rich.console import Console

from evaccess.bench.ocpp import Plan, render, run_bench, starters

pytestmark = pytest.mark.e2e

TINY = Plan(
    rounds=1,
    targets=("baseline", "echo", "evaccess", "evaccess-deflate", "evaccess-endpoint"),
    closed_loop_chargers=(1, 5),
    warmup_s=0.05,
    duration_s=0.2,
    open_loop_chargers=5,
    open_loop_rate=100.0,
    open_loop_s=0.3,
    idle_chargers=(20,),
)


async def test_bench_runs_every_target():
    affinity = os.sched_getaffinity(0)
    progress: list[str] = []
    result = await run_bench(TINY, say=progress.append)
    assert os.sched_getaffinity(0) == affinity  # the generator's pinning is undone

    assert set(result.runs) == {
        "baseline",
        "echo",
        "evaccess",
        "evaccess-deflate",
        "evaccess-endpoint",
    }
    assert result.missing == {}
    for name, runs in result.runs.items():
        assert set(runs.closed) == {1, 5}, name
        for rows in runs.closed.values():
            assert len(rows) == 1
            assert rows[0].rate > 0 and rows[0].p99_ms >= rows[0].p50_ms > 0
            assert not math.isnan(rows[0].cpu_us)
        (opened,) = runs.open
        assert opened.rate > 0 and opened.p99_ms >= opened.p50_ms
        (idle,) = runs.idle_bytes[20]
        assert idle > 0, f"{name}: the server grew when chargers connected"
    assert progress[:5] == [
        "round 1/1: baseline",
        "round 1/1: echo",
        "round 1/1: evaccess",
        "round 1/1: evaccess-deflate",
        "round 1/1: evaccess-endpoint",
    ]

    out = io.StringIO()
    line = render(result, Console(file=out, width=200))
    assert re.fullmatch(
        r"ratio_vs_baseline=\d+\.\d\d ratio_vs_echo=\d+\.\d\d open_loop_p99_ms=\d+(\.\d+)? kb_per_idle_charger=\d+(\.\d+)?",
        line,
    ), line
    text = out.getvalue()
    assert text.rstrip().endswith(line)
    assert re.search(
        r"evaccess idle memory per charger at 20: \d+\.\d KB without compression, "
        r"\d+\.\d KB with permessage-deflate",
        text,
    ), text
    assert "Closed loop" in text and "Open loop" in text and "Idle chargers" in text


def test_evaccess_target_is_the_shipped_server_command(tmp_path):
    """``evaccess`` measures ``evaccess server run`` (REST API, background tasks, logging),
    not only its OCPP endpoint in a bench-made process."""
    server = starters(replace(TINY, pin=False), tmp_path)["evaccess"]()
    try:
        argv = Path(f"/proc/{server.pid}/cmdline").read_bytes().split(b"\0")
        assert argv[1:5] == [b"-m", b"evaccess", b"server", b"run"], argv
        assert server.identities is not None and server.identities[0].password
    finally:
        server.stop()
