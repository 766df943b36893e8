"""Conversations and their turns, and how stored history becomes context."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from domain.text import MESSAGE_OVERHEAD_TOKENS, estimate_tokens


@dataclass(frozen=True, slots=True)
class Turn:
    """One stored exchange: what the user said and what the model answered."""

    conversation_id: str
    owner: str | None  # client key id; None for anonymous callers
    request_id: str
    created_at: datetime
    system_prompt: str
    prompt: str
    reply: str
    model: str
    turn_index: int = 0  # assigned by the repository when stored

    def as_messages(self) -> list[dict[str, str]]:
        return [{"role": "user", "content": self.prompt}, {"role": "assistant", "content": self.reply}]

    @property
    def estimated_tokens(self) -> int:
        return estimate_tokens(self.prompt) + estimate_tokens(self.reply) + 2 * MESSAGE_OVERHEAD_TOKENS


def trim_to_budget(turns: Sequence[Turn], token_budget: int) -> list[Turn]:
    """The most recent turns whose estimated size fits the budget, oldest first.

    Whole turns only: half a question/answer pair confuses the model more than it helps.
    """
    kept: list[Turn] = []
    used = 0
    for turn in reversed(turns):
        used += turn.estimated_tokens
        if used > token_budget:
            break
        kept.append(turn)
    kept.reverse()
    return kept
