"""How far admission's token estimate (``domain.text.estimate_tokens``) is from the tokens
OpenAI bills, per kind of text: ratio = real tokens / estimate (above 1: admitted for less
than it is billed).

The real counts come from tiktoken with the encodings litellm bundles (``make
litellm-venv`` puts them under ``.bench-venv/litellm``; nothing is downloaded):
``o200k_base`` (gpt-4o, gpt-4.1, gpt-5, the o-series) and ``cl100k_base`` (gpt-4,
gpt-4-turbo, gpt-3.5-turbo).

Run: .venv/bin/python bench/token_estimate.py
"""
from __future__ import annotations

import json
import os
import random
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _samples() -> dict[str, str]:
    rnd = random.Random(1)
    corpus = [json.loads(line)["text"] for line in (ROOT / "tests/fixtures/pii/corpus.jsonl").open(encoding="utf-8")]
    return {
        "english prose": "The quick brown fox jumps over the lazy dog. " * 200,
        "korean prose": "안녕하세요, 오늘 날씨가 좋네요. 파이썬의 특징을 설명해주세요. " * 100,
        "PII corpus (668 Korean sentences)": "\n".join(corpus),
        "every Hangul syllable": "".join(chr(0xAC00 + i) for i in range(11172)),
        "emoji": "😀🙂🎉👍🔥💯🚀🌈" * 250,
        "digits": "".join(rnd.choice("0123456789") for _ in range(4000)),
        "base64": __import__("base64").b64encode(rnd.randbytes(3000)).decode(),
        "random printable ASCII": "".join(chr(rnd.randint(33, 126)) for _ in range(4000)),
    }


def main() -> None:
    tokenizers = next((ROOT / ".bench-venv/litellm/lib").glob("python*/site-packages/litellm/litellm_core_utils/tokenizers"),
                      None)
    if tokenizers is None:
        raise SystemExit("no bundled tokenizer files: run make litellm-venv first")
    os.environ["TIKTOKEN_CACHE_DIR"] = str(tokenizers)
    import tiktoken

    from domain.text import estimate_tokens

    encodings = [tiktoken.get_encoding(name) for name in ("o200k_base", "cl100k_base")]
    print(f"{'text':36} {'chars':>7} {'estimate':>9} {'o200k':>7} {'ratio':>6} {'cl100k':>7} {'ratio':>6}")
    for name, text in _samples().items():
        estimate = estimate_tokens(text)
        real = [len(encoding.encode(text)) for encoding in encodings]
        print(f"{name:36} {len(text):7} {estimate:9} {real[0]:7} {real[0] / estimate:6.2f} {real[1]:7} "
              f"{real[1] / estimate:6.2f}")


if __name__ == "__main__":
    main()
