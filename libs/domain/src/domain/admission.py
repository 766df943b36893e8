"""What a request may cost at most, read from its body before the upstream is called.

Budget admission reserves the worst case, so the estimate must lean *up*: every billable
input counts (message text and content parts of every type, tool and function definitions,
tool-call arguments, Responses function-call outputs, ``instructions``, ``prediction``,
structured-output schemas), and the output worst case is multiplied by ``n``. What cannot be
bounded from the body alone (files, audio, references to stored items or prompt templates,
tools the upstream runs itself) is reported as *unbounded*: the use case refuses it on a
budgeted key instead of counting it as 0.
"""
from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from domain.text import MESSAGE_OVERHEAD_TOKENS, estimate_tokens

# OpenAI allows n up to 128 choices; each is billed as output.
MAX_CHOICES = 128

# Top-level request fields the upstream turns into input tokens (tools are rendered into the
# prompt, schemas too). ``prediction`` is also counted as output below.
_BILLABLE_PARAMS = ("instructions", "tools", "functions", "tool_choice", "function_call",
                    "response_format", "text", "prediction")
_OUTPUT_LIMIT_FIELDS = ("max_tokens", "max_completion_tokens", "max_output_tokens")

_TEXT_PARTS = {"text": "text", "input_text": "text", "output_text": "text", "refusal": "refusal"}
_IMAGE_PARTS = {"image_url", "input_image"}
# Tools the caller runs (the model only writes their call): billed as the definition's text.
_CALLER_RUN_TOOLS = frozenset({"function", "custom"})
_UNBOUNDED_PARTS = {"file": "file", "input_file": "file", "input_audio": "audio", "audio": "audio",
                    "item_reference": "item_reference"}


@dataclass(frozen=True, slots=True)
class ImageTokenRule:
    """OpenAI's image-token rule for a model family.

    Tile models bill ``base + tile × tiles`` at high detail (an image is fitted into 2048²,
    its short side scaled to 768, then cut into 512² tiles: at most 2 × 4 = 8 tiles) and
    ``base`` at low detail. Patch models bill 32-pixel patches, capped at 1,536, times a
    multiplier, whatever the detail.
    """

    base: int = 0
    tile: int = 0
    patch_multiplier: float = 0.0

    def worst_case(self, detail: str | None) -> int:
        """The most one image of unknown size can cost (the body never says its size)."""
        if self.patch_multiplier:
            return math.ceil(1536 * self.patch_multiplier)
        return self.base if detail == "low" else self.base + 8 * self.tile


# Longest prefix wins. Unknown families get the most expensive rule (gpt-4o-mini's), never 0.
_IMAGE_RULES: dict[str, ImageTokenRule] = {
    "gpt-4o-mini": ImageTokenRule(base=2833, tile=5667),
    "gpt-4o": ImageTokenRule(base=85, tile=170),
    "chatgpt-4o": ImageTokenRule(base=85, tile=170),
    "gpt-4.1-mini": ImageTokenRule(patch_multiplier=1.62),
    "gpt-4.1-nano": ImageTokenRule(patch_multiplier=2.46),
    "gpt-4.1": ImageTokenRule(base=85, tile=170),
    "gpt-4.5": ImageTokenRule(base=85, tile=170),
    "gpt-5-mini": ImageTokenRule(patch_multiplier=1.62),
    "gpt-5-nano": ImageTokenRule(patch_multiplier=2.46),
    "gpt-5": ImageTokenRule(base=70, tile=140),
    "o4-mini": ImageTokenRule(patch_multiplier=1.72),
    "o1": ImageTokenRule(base=75, tile=150),
    "o3": ImageTokenRule(base=75, tile=150),
}
_FALLBACK_IMAGE_RULE = _IMAGE_RULES["gpt-4o-mini"]


def image_rule(model: str) -> ImageTokenRule:
    best = max((p for p in _IMAGE_RULES if model.startswith(p)), key=len, default=None)
    return _IMAGE_RULES[best] if best else _FALLBACK_IMAGE_RULE


@dataclass(frozen=True, slots=True)
class InputEstimate:
    """Estimated input tokens, and the kinds of input that could not be bounded (if any)."""

    tokens: int
    unbounded: tuple[str, ...] = ()


class _Counter:
    """Walks request items once; the JSON parser already bounds their nesting depth."""

    def __init__(self, model: str) -> None:
        self.rule = image_rule(model)
        self.tokens = 0
        self.unbounded: set[str] = set()

    def text(self, value: Any) -> None:
        if isinstance(value, str):
            self.tokens += estimate_tokens(value)
        elif value is not None:
            # Anything structured (arguments objects, schemas, unknown shapes) counts as its
            # JSON text: keys and punctuation make this lean up, which is the safe side.
            self.tokens += estimate_tokens(json.dumps(value, ensure_ascii=False, default=str))

    def part(self, part: Any) -> None:
        if not isinstance(part, dict):
            self.text(part)
            return
        kind = _kind_of(part)
        if kind in _TEXT_PARTS:
            self.text(part.get(_TEXT_PARTS[kind]))
        elif kind in _IMAGE_PARTS:
            image = part.get("image_url")
            detail = part.get("detail") or (image.get("detail") if isinstance(image, dict) else None)
            self.tokens += self.rule.worst_case(detail if isinstance(detail, str) else None)
        elif kind in _UNBOUNDED_PARTS:
            self.unbounded.add(_UNBOUNDED_PARTS[kind])
        else:
            self.text(part)

    def content(self, content: Any) -> None:
        if isinstance(content, list):
            for p in content:
                self.part(p)
        elif isinstance(content, dict):
            self.part(content)
        else:
            self.text(content)

    def item(self, item: Any) -> None:
        """A chat message or a Responses input item."""
        self.tokens += MESSAGE_OVERHEAD_TOKENS
        if not isinstance(item, dict):
            self.text(item)
            return
        kind = _kind_of(item)
        if kind in _UNBOUNDED_PARTS:
            self.unbounded.add(_UNBOUNDED_PARTS[kind])
            return
        if kind in _IMAGE_PARTS or kind in _TEXT_PARTS:
            self.part(item)
            return
        for key, value in item.items():
            if key in ("role", "type", "id", "call_id", "status"):
                continue
            if key == "content":
                self.content(value)
            elif key == "audio" and isinstance(value, dict):
                self.unbounded.add("audio")  # an earlier audio answer replayed by id
            elif key == "output":  # function_call_output: a string or content parts
                self.content(value)
            else:  # tool_calls, function_call, arguments, name, refusal, summary, …
                self.text(value)


def estimate_input(items: Iterable[Any], params: Mapping[str, Any], model: str) -> InputEstimate:
    """Every billable input token of a request, leaning up; unbounded kinds listed."""
    counter = _Counter(model)
    for item in items:
        counter.item(item)
    for name in _BILLABLE_PARAMS:
        if params.get(name) is not None:
            counter.text(params[name])
    if params.get("prompt") is not None:  # a prompt template stored upstream: its text is billed, its size unknown
        counter.unbounded.add("prompt")
    tools = params.get("tools")
    for tool in tools if isinstance(tools, list) else ():
        kind = _kind_of(tool) if isinstance(tool, dict) else None
        if kind is not None and kind not in _CALLER_RUN_TOOLS:
            # A tool the upstream runs itself (web or file search, code interpreter, image
            # generation, a remote MCP server, ...): what it adds to the input (results, files,
            # screenshots) and its per-call fees are billed, and the body bounds neither.
            counter.unbounded.add("hosted_tool")
    return InputEstimate(counter.tokens, tuple(sorted(counter.unbounded)))


def requested_output_limit(params: Mapping[str, Any]) -> int | None:
    """The largest output limit the request names (OpenAI honours whichever field the
    model reads, so the worst case is the largest of them); None when none is named.

    Only positive integers count. A dialect validates the field it reads, but the others pass
    through unchecked (``max_tokens`` on /v1/responses): a negative or boolean one there is the
    upstream's to refuse and must not shrink the worst case below zero."""
    limits = [v for name in _OUTPUT_LIMIT_FIELDS
              if isinstance(v := params.get(name), int) and not isinstance(v, bool) and v > 0]
    return max(limits) if limits else None


def choices(params: Mapping[str, Any]) -> int:
    """How many choices the upstream will generate and bill (``n``, default 1)."""
    n = params.get("n")
    return n if isinstance(n, int) and not isinstance(n, bool) and n > 0 else 1


def output_worst_case(params: Mapping[str, Any], model_cap: int, limit: int | None = None) -> int:
    """Output tokens the request may be billed at most: the largest output limit (``limit``,
    the command's, or any the params name; the model's cap when none is named) times ``n``,
    plus a rejected ``prediction`` (OpenAI bills rejected prediction tokens as output)."""
    named = [v for v in (limit, requested_output_limit(params)) if v]
    per_choice = min(max(named) if named else model_cap, model_cap)
    prediction = params.get("prediction")
    predicted = 0
    if prediction is not None:
        counter = _Counter("")
        counter.text(prediction.get("content") if isinstance(prediction, dict) else prediction)
        predicted = counter.tokens
    return per_choice * choices(params) + predicted


def _kind_of(obj: dict[Any, Any]) -> str | None:
    """An item's or part's ``type`` when it is a name; any other value (a list, an object)
    names no kind, and the whole is counted as text (the safe side), never looked up."""
    kind = obj.get("type")
    return kind if isinstance(kind, str) else None
