"""``evaccess bench audit --quick`` as a user runs it: both phases on a real PostgreSQL.

Not a timing assertion: it proves both phases run, print their figures and verify the
chain, that the one-lane phase keeps to one lane and the other spreads over several, and
that the run's databases are dropped."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from tests.bench.test_bench_cluster import _bench_databases
from tests.conftest import POSTGRES_URL

pytestmark = [pytest.mark.e2e, pytest.mark.postgres, pytest.mark.timeout(300)]


def test_the_quick_audit_bench_compares_one_lane_with_all() -> None:
    if POSTGRES_URL is None:
        pytest.skip("EVACCESS_TEST_POSTGRES_URL is not set: bench audit needs PostgreSQL")
    import asyncio

    before = asyncio.run(_bench_databases(POSTGRES_URL))
    env = {k: v for k, v in os.environ.items() if not k.startswith("EVACCESS_")}
    env |= {"EVACCESS_BENCH_POSTGRES_URL": POSTGRES_URL, "COLUMNS": "200", "NO_COLOR": "1"}
    run = subprocess.run(
        [sys.executable, "-m", "evaccess", "bench", "audit", "--quick"],
        capture_output=True, text=True, env=env, timeout=280, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    rows = re.findall(r"│\s+(\d+) │\s+(\d+) │\s+([\d,]+) \(([\d.]+)x\) │\s+([\d.]+) │", run.stdout)
    assert [(lanes, ratio) for lanes, _, _, ratio, _ in rows][:1] == [("1", "1.00")], run.stdout
    assert [(lanes, used) for lanes, used, *_ in rows][0] == ("1", "1")
    assert rows[1][0] == "16" and int(rows[1][1]) > 1, run.stdout
    assert "chain verified after each phase" in run.stdout
    assert "Traceback" not in run.stdout + run.stderr
    assert asyncio.run(_bench_databases(POSTGRES_URL)) == before  # both dropped


def test_a_negative_hold_is_one_readable_line() -> None:
    run = subprocess.run(
        [sys.executable, "-m", "evaccess", "bench", "audit", "--hold-ms", "-1"],
        capture_output=True, text=True, env=os.environ | {"NO_COLOR": "1"}, timeout=60,
        check=False,
    )  # fmt: skip
    assert run.returncode != 0 and run.stdout == ""
    assert run.stderr.strip() == "error: --hold-ms must not be negative [invalid_input]", run.stderr
