"""``evaccess bench api`` end to end: the real command in a subprocess, a real ``evaccess
server run``, tiny counts. Not a timing assertion: it checks that the three endpoints come
out with numeric figures and no errors, and that no secret reaches the output."""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys

import pytest

from tests.conftest import POSTGRES_URL

pytestmark = pytest.mark.e2e

ROW = re.compile(
    r"│ (health|reveal|keypad_pin_set)\s+│ (\d+)\s+│ \d+\s+│ (\d+\.\d\d)\s+│ (\d+\.\d\d)\s+│ "
    r"(\d+\.\d\d)\s+│ (\d+\.\d)x\s+│ (\d+)\s+│ (\d+\.\d\d)\s+│"
)
SUMMARY = re.compile(
    r"^database=(sqlite|postgresql) rate=10 health_p99_ms=\d+\.\d\d reveal_p99_ms=\d+\.\d\d "
    r"keypad_pin_set_p99_ms=\d+\.\d\d errors=0 saturated=0$",
    re.MULTILINE,
)


def _bench(*extra: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "220"}
    for name in ("EVACCESS_DATABASE_URL", "EVACCESS_DATA_DIR", "EVACCESS_KEYS_DIR"):
        env.pop(name, None)
    return subprocess.run(
        [sys.executable, "-m", "evaccess", "bench", "api", "--quick", "--rate", "10",
         "--seconds", "1", "--users", "3", "--no-pin", *extra],
        capture_output=True, text=True, env=env, timeout=100, check=False,
    )  # fmt: skip


def _check(done: subprocess.CompletedProcess[str], database: str) -> None:
    assert done.returncode == 0, done.stderr[-2000:]
    rows = {m.group(1): m.groups()[1:] for m in ROW.finditer(done.stdout)}
    assert set(rows) == {"health", "reveal", "keypad_pin_set"}, done.stdout
    for name, (answered, p50, p99, top, ratio, errors, cpu) in rows.items():
        assert int(answered) == 10, name  # 10 requests/s for 1 s, every one answered
        assert 0 < float(p50) <= float(p99) <= float(top), name
        assert float(ratio) > 0 and float(cpu) > 0, name
        assert errors == "0", name
    assert SUMMARY.search(done.stdout), done.stdout
    assert f"REST API on {database}" in done.stdout
    assert "health" in done.stderr and "100%" in done.stderr  # the progress bar, on stderr
    # No token, password or PIN: the output holds no long random-looking word.
    for text in (done.stdout, done.stderr):
        assert not re.search(r"bench-[A-Za-z0-9_-]{20,}", text)
        assert not re.search(r"\b\d{6}\b|\b\d{8}\b", re.sub(r"\d+[.:,]\d+", " ", text))


def test_quick_run_on_sqlite():
    _check(_bench(), "sqlite")


@pytest.mark.postgres
@pytest.mark.skipif(not POSTGRES_URL, reason="EVACCESS_TEST_POSTGRES_URL is not set")
def test_quick_run_on_postgres():
    assert POSTGRES_URL is not None
    base, _, _ = POSTGRES_URL.rpartition("/")
    name = f"evaccess_benchapi_t_{secrets.token_hex(4)}"
    done = _bench("--database-url", f"{base}/{name}")
    _check(done, "postgresql")
    assert "database=postgresql" in done.stdout


def test_only_postgresql_urls_are_taken():
    done = _bench("--database-url", "sqlite+aiosqlite:///x.db")
    assert done.returncode == 2
    assert "postgresql+asyncpg://" in done.stderr
