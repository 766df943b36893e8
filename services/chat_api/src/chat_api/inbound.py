"""Reading an HTTP request: the JSON body (size, nesting, NFC, forbidden fields) and the
headers every dialect shares."""
from __future__ import annotations

from array import array
from itertools import accumulate
from typing import Any

import orjson
from fastapi import Request

from domain.errors import InvalidInput, TooLarge
from domain.text import normalize

# The upstream URL and key come only from configuration: a body naming one is refused,
# however deeply nested, so no request can point the gateway somewhere else (SSRF).
FORBIDDEN_FIELDS = frozenset({"api_base", "base_url", "api_key", "organization", "api_version", "azure_endpoint"})
MAX_JSON_DEPTH = 64  # the outermost value is level 1

_NOT_STRUCTURE = bytes(c for c in range(256) if c not in b'[]{}"')
_STEP = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")  # opening +1, closing -1 (as signed bytes)


def _too_large(max_bytes: int) -> TooLarge:
    return TooLarge("body_too_large", max=max_bytes)


def check_depth(body: bytes, limit: int = MAX_JSON_DEPTH) -> None:
    """Refuses JSON nested deeper than ``limit`` before the parser builds anything: no
    recursion, and no Python step per token. Escapes are dropped (``\\\\`` then ``\\"``),
    so every remaining quote opens or closes a string; the text between quote pairs is
    dropped with the strings; what is left is the brackets, whose running depth is summed
    in C. Whatever does not add up (an unterminated string, brackets that do not pair) is
    left to the parser, which refuses it as malformed."""
    text = body.replace(b"\\\\", b"").replace(b'\\"', b"").translate(None, _NOT_STRUCTURE)
    pieces = text.split(b'"')
    if len(pieces) % 2 == 0:
        return  # an unterminated string
    brackets = b"".join(pieces[::2])
    if brackets.count(b"[") + brackets.count(b"{") <= limit:
        return  # the common case: too few brackets to nest that deep
    if max(accumulate(array("b", brackets.translate(_STEP)))) > limit:
        raise InvalidInput("invalid_json", reason="too_deep", max=limit)


def parse_json(body: bytes) -> dict[str, Any]:
    """A JSON object nested at most ``MAX_JSON_DEPTH`` levels (not yet ``checked``)."""
    check_depth(body)
    try:
        data = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        raise InvalidInput("invalid_json", reason="syntax") from None
    if not isinstance(data, dict):
        raise InvalidInput("invalid_json", reason="not_object")
    return data


def checked(data: dict[str, Any]) -> dict[str, Any]:
    """``data`` with every string NFC-normalised; NUL characters and forbidden fields are
    refused anywhere in it."""
    cleaned: dict[str, Any] = _clean(data, "")
    return cleaned


async def read_json(request: Request, max_bytes: int) -> dict[str, Any]:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_bytes:
        raise _too_large(max_bytes)
    chunks, size = [], 0
    async for chunk in request.stream():
        chunks.append(chunk)
        size += len(chunk)
        if size > max_bytes:
            raise _too_large(max_bytes)
    return parse_json(b"".join(chunks))


def _clean(value: Any, path: str) -> Any:
    """NFC-normalises strings, refuses NUL characters and forbidden fields anywhere. The
    recursion is bounded: ``check_depth`` has run first."""
    if isinstance(value, str):
        if "\x00" in value:
            raise InvalidInput("nul_character", field=path or None)
        return normalize(value)
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            where = f"{path}.{key}" if path else key
            if key in FORBIDDEN_FIELDS:
                raise InvalidInput("forbidden_field", field=where, name=key)
            out[normalize(key)] = _clean(item, where)
        return out
    if isinstance(value, list):
        return [_clean(item, f"{path}[{i}]") for i, item in enumerate(value)]
    return value


def bearer(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


def language(request: Request) -> str:
    accept = request.headers.get("accept-language", "")
    return "en" if accept.lower().startswith("en") else "ko"
