"""Korean-aware text handling: normalisation and token estimates for admission."""
from __future__ import annotations

import math
import re
import unicodedata
from typing import Any

# Per-message framing tokens OpenAI adds around each message (role markers etc.).
MESSAGE_OVERHEAD_TOKENS = 4


def normalize(text: str) -> str:
    """NFC, so a prompt typed on macOS (NFD jamo) and one typed on Windows compare and
    count the same."""
    return unicodedata.normalize("NFC", text)


def _is_cjk(ch: str) -> bool:
    code = ord(ch)
    return (
        0xAC00 <= code <= 0xD7A3  # Hangul syllables
        or 0x1100 <= code <= 0x11FF  # Hangul jamo
        or 0x3130 <= code <= 0x318F  # compatibility jamo
        or 0x4E00 <= code <= 0x9FFF  # CJK ideographs
        or 0x3040 <= code <= 0x30FF  # kana
    )


# The characters _is_cjk accepts, for counting them in C (admission counts every text of
# every request, the replayed history included).
_CJK = re.compile("[\uAC00-\uD7A3\u1100-\u11FF\u3130-\u318F\u4E00-\u9FFF\u3040-\u30FF]+")


def estimate_tokens(text: str) -> int:
    """An upper-leaning estimate used only for budget admission.

    BPE tokenisers spend roughly one token per Hangul syllable (often less with o200k) but
    about one per four characters of English; counting Hangul at the Latin rate would
    under-reserve Korean prompts four-fold. Any other non-ASCII character (emoji, symbols,
    Thai, Cyrillic, rare ideographs) counts its UTF-8 bytes: a byte-level tokeniser never
    makes more tokens than that, and at the Latin rate emoji were admitted for a tenth of
    their tokens.
    """
    if text.isascii():
        return math.ceil(len(text) / 4)
    rest = _CJK.sub("", text)
    ascii_chars = len(rest.encode("ascii", "ignore"))  # in C: what is left is the other scripts' bytes
    return len(text) - len(rest) + math.ceil(ascii_chars / 4) + len(rest.encode("utf-8", "surrogatepass")) - ascii_chars


def contains_hangul(text: str) -> bool:
    return any(0xAC00 <= ord(ch) <= 0xD7A3 for ch in text)


def estimate_message_tokens(messages: list[Any]) -> int:
    """Estimated tokens of chat messages / Responses input items, framing included."""
    total = 0
    for message in messages:
        content = message.get("content") if isinstance(message, dict) else message
        if isinstance(content, list):
            content = " ".join(str(p.get("text", "")) if isinstance(p, dict) else str(p) for p in content)
        total += estimate_tokens(str(content or "")) + MESSAGE_OVERHEAD_TOKENS
    return total
