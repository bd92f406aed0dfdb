"""``evaccess bench cluster --quick`` as a user runs it: real nodes on PostgreSQL and Redis.

Not a timing assertion: it proves every phase runs and prints figures, that every command
reached its charger exactly once, and that the run cleans up after itself (its database
dropped, its Redis keys deleted)."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys

import asyncpg
import pytest
import redis

from tests.conftest import POSTGRES_URL

pytestmark = [pytest.mark.e2e, pytest.mark.postgres, pytest.mark.timeout(300)]

REDIS_URL = os.environ.get("EVACCESS_TEST_REDIS_URL") or "redis://127.0.0.1:6379/0"


async def _bench_databases(url: str) -> set[str]:
    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        rows = await conn.fetch(
            "SELECT datname FROM pg_database WHERE datname LIKE 'evaccess_bench_%'"
        )
        return {r["datname"] for r in rows}
    finally:
        await conn.close()


def test_the_quick_cluster_bench_prints_every_figure_and_leaves_nothing_behind() -> None:
    if POSTGRES_URL is None:
        pytest.skip("EVACCESS_TEST_POSTGRES_URL is not set: bench cluster needs PostgreSQL")
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping()
    except (redis.RedisError, OSError) as exc:
        pytest.skip(f"no Redis at {REDIS_URL} ({type(exc).__name__}): bench cluster needs one")
    env = {k: v for k, v in os.environ.items() if not k.startswith("EVACCESS_")}
    env |= {
        "EVACCESS_BENCH_POSTGRES_URL": POSTGRES_URL,
        "EVACCESS_BENCH_REDIS_URL": REDIS_URL,
        "COLUMNS": "200",
        "NO_COLOR": "1",
    }
    run = subprocess.run(
        [sys.executable, "-m", "evaccess", "bench", "cluster", "--quick"],
        capture_output=True, text=True, env=env, timeout=280, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    out = run.stdout
    number = r"\s+(-?[\d,.]+)"
    for row in ("API call to charger's receipt", "B's API answer",
                "B's answer to charger's receipt", "keypad PIN deletion seen on A"):  # fmt: skip
        assert re.search(re.escape(row) + r"\s*│" + (number + r"\s*│") * 3, out), (row, out)
    assert re.search(r"commands: (\d+) sent, \1 received, 0 received twice", out), out
    for setup in ("single node", "cluster: node A", "cluster: node B", "cluster: A + B"):
        assert re.search(re.escape(setup) + r"\s*│\s+[\d,]+", out), (setup, out)
    assert "Traceback" not in run.stdout + run.stderr
    database = re.search(r"on PostgreSQL \(\S+/(evaccess_bench_\w+)\)", run.stderr)
    assert database is not None, run.stderr
    assert database[1] not in asyncio.run(_bench_databases(POSTGRES_URL))  # dropped
    prefix = re.search(r"Redis keys under (\S+) ", run.stderr)
    assert prefix is not None, run.stderr
    assert list(redis.Redis.from_url(REDIS_URL).scan_iter(match=f"{prefix[1]}*")) == []


def test_an_unreachable_postgresql_is_one_readable_line_without_the_password() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EVACCESS_")}
    url = "postgresql+asyncpg://postgres:not-this-password@127.0.0.1:1/postgres"
    run = subprocess.run(
        [sys.executable, "-m", "evaccess", "bench", "cluster", "--quick", "--postgres-url", url],
        capture_output=True, text=True, env=env | {"NO_COLOR": "1"}, timeout=60, check=False,
    )  # fmt: skip
    assert run.returncode != 0 and run.stdout == ""
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: PostgreSQL at "), run.stderr
    assert "unreachable" in lines[0] and "not-this-password" not in run.stderr
