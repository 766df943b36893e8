"""Where a request's text is: the strings of OpenAI-shaped messages and Responses input
items the guard must see before they leave the gateway.

A message's ``content`` (a string, or parts of any type: their ``text``), a tool result
(a ``tool`` message's content, a Responses ``function_call_output``'s ``output``), a tool
call's ``arguments`` and a ``refusal`` are text. Everything else (roles, ids, types,
image and file references) is structure and passes untouched.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

# Keys whose string value is text the caller (or the model, replayed) wrote.
_TEXT = frozenset({"content", "text", "output", "arguments", "refusal"})
# Keys whose list or object value may hold such text further down.
_NESTED = frozenset({"content", "output", "tool_calls", "function", "function_call"})


def texts_in(items: list[Any]) -> Iterator[str]:
    """Every text of ``items``, in order."""
    for item in items:
        yield from _texts(item)


def _texts(node: Any) -> Iterator[str]:
    if isinstance(node, list):
        for child in node:
            yield from _texts(child)
    elif isinstance(node, dict):
        for key, value in node.items():
            if isinstance(value, str):
                if key in _TEXT:
                    yield value
            elif key in _NESTED:
                yield from _texts(value)


def map_texts(items: list[Any], change: Callable[[str], str]) -> list[Any]:
    """``items`` with every text replaced by ``change(text)``, in the order of
    :func:`texts_in`. The caller's objects are not modified: what changed is copied."""
    return [_map(item, change) for item in items]


def _map(node: Any, change: Callable[[str], str]) -> Any:
    if isinstance(node, list):
        return [_map(child, change) for child in node]
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if isinstance(value, str):
                out[key] = change(value) if key in _TEXT else value
            elif key in _NESTED:
                out[key] = _map(value, change)
            else:
                out[key] = value
        return out
    return node


def map_input(value: Any, change: Callable[[str], str]) -> Any:
    """An embeddings or moderations ``input`` with every text replaced by ``change(text)``:
    a string, an array of strings, or moderation parts (``{"type": "text", "text": ...}``).
    Token arrays pass as they are (numbers carry no text the guard can read)."""
    if isinstance(value, str):
        return change(value)
    if isinstance(value, list):
        return [change(v) if isinstance(v, str) else _map(v, change) if isinstance(v, dict) else v for v in value]
    return value


def texts_of_input(value: Any) -> list[str]:
    """The texts of an embeddings or moderations ``input``, in order (see :func:`map_input`)."""
    found: list[str] = []

    def note(text: str) -> str:
        found.append(text)
        return text

    map_input(value, note)
    return found
