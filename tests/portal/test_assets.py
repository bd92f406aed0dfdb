"""The vendored htmx is the one package-lock.json pins (``make portal-assets`` copies it)."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_vendored_htmx_is_the_locked_release() -> None:
    installed = ROOT / "node_modules" / "htmx.org" / "dist" / "htmx.min.js"
    if not installed.exists():
        pytest.fail("node_modules is missing: `make browser` runs npm ci")
    vendored = ROOT / "src" / "evaccess" / "server" / "portal" / "static" / "htmx.min.js"
    assert vendored.read_bytes() == installed.read_bytes()
