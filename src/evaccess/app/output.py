"""How the app's commands print what the server answered: timestamps, and a result as JSON
or one line."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from evaccess import console


def when(value: str | None) -> str:
    """An API timestamp, to the minute, in UTC."""
    if not value:
        return "-"
    return datetime.fromisoformat(value).astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def done(json_output: bool, data: dict[str, Any], message: str) -> None:
    """The result as JSON (``--json``), else ``message``."""
    if json_output:
        console.print_json(data)
    else:
        console.out.print(message, soft_wrap=True, markup=False)
