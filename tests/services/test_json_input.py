"""The JSON reader's nesting limit: exact at the boundary, fooled neither by brackets inside
strings nor by escapes, and linear in the body whatever its shape."""
from __future__ import annotations

import orjson
import pytest

from chat_api.inbound import MAX_JSON_DEPTH, parse_json
from domain.errors import InvalidInput


def _nested(levels: int, opener: bytes = b"[", closer: bytes = b"]") -> bytes:
    """An object nested ``levels`` deep (the object itself is level 1)."""
    return b'{"x": ' + opener * (levels - 1) + closer * (levels - 1) + b"}"


def _reason(body: bytes) -> str | None:
    try:
        parse_json(body)
    except InvalidInput as error:
        return error.message_key
    return None


@pytest.mark.parametrize("levels", [1, 2, MAX_JSON_DEPTH - 1, MAX_JSON_DEPTH])
def test_up_to_64_levels_parse(levels):
    assert _reason(b"{}" if levels == 1 else _nested(levels)) is None


@pytest.mark.parametrize("levels", [MAX_JSON_DEPTH + 1, MAX_JSON_DEPTH + 2, 255, 1_000, 200_000])
def test_deeper_is_invalid_json(levels):
    assert _reason(_nested(levels)) == "invalid_json/too_deep"


def test_objects_and_arrays_count_alike():
    mixed = b'{"x": ' + b'[{"a": ' * 32 + b"1" + b"}]" * 32 + b"}"  # 1 + 64 levels
    assert _reason(mixed) == "invalid_json/too_deep"
    assert _reason(b'{"x": ' + b'[{"a": ' * 31 + b"1" + b"}]" * 31 + b"}") is None


@pytest.mark.parametrize("text", ["[" * 500, "]" * 500 + "[" * 500, '\\"' + "[" * 100, "\\\\" * 3 + "{" * 99])
def test_brackets_inside_strings_are_text(text):
    assert _reason(orjson.dumps({"x": text, "y": [[1]]})) is None


def test_escaped_backslash_before_a_closing_quote():
    body = b'{"a": "x\\\\", "b": [' + b"[" * 70 + b"]" * 70 + b"]}"
    assert _reason(body) == "invalid_json/too_deep"  # the quote after \\ really closes "a"


@pytest.mark.parametrize("body", [b'{"x": [}', b'{"x": "[[[[', b"[" * 100_000 + b"}", b'{"x": "\\"}'])
def test_malformed_bodies_are_invalid_json_never_a_crash(body):
    assert _reason(body) in ("invalid_json/syntax", "invalid_json/too_deep")
