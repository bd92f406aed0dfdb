"""The sticker payload: format, parse, and what is refused."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from evaccess.domain.errors import InvalidInput
from evaccess.protocol import sticker


def test_a_code_carries_at_least_80_bits():
    assert sticker.CODE_BITS >= 80
    code = sticker.code_from_bytes(bytes(range(13)))
    assert len(code) == sticker.CODE_CHARS


@given(
    serial=st.from_regex(r"\A[A-Za-z0-9._-]{1,64}\Z"),
    raw=st.binary(min_size=13, max_size=13),
)
def test_format_then_parse_is_the_identity(serial, raw):
    payload = sticker.StickerPayload(serial=serial, code=sticker.code_from_bytes(raw))
    assert sticker.parse(payload.format()) == payload


def test_a_serial_with_colons_is_refused_but_the_code_split_is_from_the_right():
    with pytest.raises(InvalidInput):
        sticker.parse("EVA1:WB:1:" + "A" * 20)


def test_typed_code_is_normalised():
    parsed = sticker.parse("EVA1:WB-1:abcd-efgh-ijkl-mnop-qrst")
    assert parsed.code == "ABCDEFGHIJKLMNOPQRST"


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("hello", "not an evaccess commissioning sticker"),
        ("EVA2:WB-1:" + "A" * 20, "version 2 is not supported"),
        ("EVA1:WB-1", "no commissioning code"),
        ("EVA1:WB-1:" + "A" * 19, "20 base32 characters"),
        ("EVA1:WB-1:" + "1" * 20, "not base32"),
        ("EVA1::" + "A" * 20, "serial"),
    ],
)
def test_malformed_payloads_are_refused_by_name(text, says):
    with pytest.raises(InvalidInput, match=says) as caught:
        sticker.parse(text)
    assert "1111" not in str(caught.value)
