"""Firmware versions as they enter evaccess: validated where they arrive, named when refused."""

from __future__ import annotations

import pytest

from evaccess.domain.errors import InvalidInput
from evaccess.domain.versions import firmware_version, version


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("6.11", "6.11"),
        ("6.11.2", "6.11.2"),
        ("v6.7.17", "6.7.17"),
        ("V5.12.2", "5.12.2"),
        ("6.10.2-rc1", "6.10.2"),
        ("1.0.0+build.5", "1"),
        ("3.2.0.1", "3.2.0.1"),
        ("7", "7"),
        ("2.4.1_beta", "2.4.1"),
    ],
)
def test_firmware_versions_that_are_versions(text: str, parsed: str) -> None:
    assert firmware_version(text) == version(parsed)


@pytest.mark.parametrize(
    "text",
    [
        "six.eleven",
        "6..11",
        "",
        " ",
        "6.",
        ".6",
        "6.11.",
        "v",
        "6.11 build 5",
        "6,11",
        "6.11-",
        "6" * 65,
    ],
)
def test_firmware_versions_that_are_not_refused_by_name(text: str) -> None:
    with pytest.raises(InvalidInput) as raised:
        firmware_version(text)
    message = raised.value.message
    assert repr(text if len(text) <= 40 else text[:40] + "…") in message
    assert "\n" not in message
