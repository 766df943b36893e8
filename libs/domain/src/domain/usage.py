"""Token usage as the upstream reports it."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

MAX_TOKENS = 2**31 - 1


@dataclass(frozen=True, slots=True)
class TokenUsage:
    """OpenAI's accounting: cached tokens are a part of input tokens, reasoning tokens a
    part of output tokens (billed at the output rate)."""

    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    reasoning_tokens: int = 0
    # Why the counts are not exactly what the upstream reported ("usage_negative",
    # "usage_invalid", "usage_missing"); the ledger row is then flagged as estimated.
    anomaly: str | None = field(default=None, compare=False)

    @classmethod
    def reported(cls, input_tokens: Any = 0, output_tokens: Any = 0, cached_input_tokens: Any = 0,
                 reasoning_tokens: Any = 0) -> TokenUsage:
        """Usage as an upstream sent it, whatever it sent: counts that are not integers
        count as 0 and negative ones as 0, cached is capped at input and reasoning at
        output, and the result says it was normalised (a ledger row is never refused for
        an upstream's arithmetic)."""
        anomaly = None
        counts = []
        for raw in (input_tokens, output_tokens, cached_input_tokens, reasoning_tokens):
            if raw is None:
                raw = 0
            if isinstance(raw, bool) or not isinstance(raw, int | float) or raw != raw or raw in (
                    float("inf"), float("-inf")):
                anomaly, raw = anomaly or "usage_invalid", 0
            value = int(raw)
            if value < 0:
                anomaly, value = anomaly or "usage_negative", 0
            if value > MAX_TOKENS:  # beyond any real request, and beyond the ledger's columns
                anomaly, value = anomaly or "usage_invalid", MAX_TOKENS
            counts.append(value)
        inp, out, cached, reasoning = counts
        return cls(inp, out, min(cached, inp), min(reasoning, out), anomaly=anomaly)

    def __post_init__(self) -> None:
        if min(self.input_tokens, self.output_tokens, self.cached_input_tokens, self.reasoning_tokens) < 0:
            raise ValueError("token counts cannot be negative")
        if self.cached_input_tokens > self.input_tokens:
            raise ValueError("cached tokens are part of input tokens")

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    @property
    def uncached_input_tokens(self) -> int:
        return self.input_tokens - self.cached_input_tokens
