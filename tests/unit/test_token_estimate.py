"""The admission token estimate leans up for every script, not only Latin and Hangul.

Byte-level BPE never makes more tokens than a text has UTF-8 bytes, but for Latin text
OpenAI's tokenisers make about one token per four characters and for Hangul about one per
syllable (or less): the estimate counts those so. Characters of other scripts, emoji and
symbols cost one to four tokens each: counted at four characters a token, a prompt of emoji
was admitted for a tenth of its tokens. The token counts below are the real ones, measured
once with tiktoken (0.14) on the ``o200k_base`` encoding (gpt-4o, gpt-4.1, gpt-5, the
o-series) and ``cl100k_base`` (gpt-4, gpt-4-turbo, gpt-3.5-turbo); pinned here so the test
needs no tokenizer files."""
from __future__ import annotations

import pytest

from domain.text import estimate_tokens

# name: (text, o200k_base tokens, cl100k_base tokens)
SAMPLES = {
    "emoji": ("😀🙂🎉👍🔥💯🚀🌈" * 250, 3000, 5250),
    "cjk_extension_b": ("".join(chr(0x20000 + 7 * i) for i in range(2000)), 7915, 7933),
    "math_symbols": ("".join(chr(0x2200 + i % 256) for i in range(2000)), 3912, 4960),
    "thai": ("สวัสดีครับ วันนี้อากาศดีมาก " * 100, 1101, 2700),
    "hindi": ("नमस्ते, आज मौसम बहुत अच्छा है। " * 100, 1002, 3400),
    "russian": ("Привет, как дела? Сегодня хорошая погода. " * 100, 1201, 2101),
    "arabic": ("مرحبا، كيف حالك؟ الطقس جميل اليوم. " * 100, 1201, 2601),
}


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_the_estimate_is_never_below_the_real_token_count(name: str) -> None:
    text, o200k, cl100k = SAMPLES[name]
    assert estimate_tokens(text) >= max(o200k, cl100k)


def test_latin_and_hangul_keep_their_rates() -> None:
    # 9,000 characters of English: 2,001 real tokens; 3,600 of Korean prose: 2,001 (o200k_base)
    assert estimate_tokens("The quick brown fox jumps over the lazy dog. " * 200) == 2250
    assert estimate_tokens("안녕하세요, 오늘 날씨가 좋네요. 파이썬의 특징을 설명해주세요. " * 100) == 2850
