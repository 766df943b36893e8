"""A scripted mix of client requests, as an operator's day has them: answers (JSON and
streamed), a bad request, a budget refusal, a rate-limit refusal, an own-key attempt that
falls back to the server key, and Korean personal data that the guard masks. Sent over real
HTTP (to chat-api directly or through nginx); returns what was sent so a test can compare
the request log, the overview and the console with it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import httpx

# A 주민등록번호-shaped value would do too; a mobile number and an e-mail are enough to show
# two kinds in the console.
PII_PROMPT = "제 번호는 010-2345-6789 이고 메일은 minsu.kim@example.co.kr 입니다. 배송 언제 오나요?"


@dataclass
class MixKeys:
    """The keys the mix runs on (ids and secrets), created through the admin API."""

    busy: tuple[str, str]      # uncapped: answers, streams, personal data, the rate-limit refusal
    fallback: tuple[str, str]  # uncapped: a bad request and an own-key fallback
    capped: tuple[str, str]    # a daily cap too small for any request: the 402


@dataclass
class MixResult:
    statuses: list[int] = field(default_factory=list)
    streams: int = 0
    fallbacks: int = 0
    pii_values: dict[str, int] = field(default_factory=dict)  # kind -> values masked

    def by_class(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for s in self.statuses:
            out[f"{s // 100}xx"] = out.get(f"{s // 100}xx", 0) + 1
        return dict(sorted(out.items()))


def create_keys(admin: httpx.Client, tag: str) -> MixKeys:
    def make(name: str, **body: Any) -> tuple[str, str]:
        r = admin.post("/admin/v1/keys", json={"name": name, **body})
        assert r.status_code == 201, r.text
        return r.json()["item"]["id"], r.json()["key"]

    return MixKeys(busy=make(f"고객지원팀-{tag}", monthly_limit_usd="50"),
                   fallback=make(f"데이터팀-{tag}"),
                   capped=make(f"인턴-{tag}", daily_limit_usd="0.000001"))


def run_mix(base_url: str, keys: MixKeys, tag: str) -> MixResult:
    """Eight client requests: five answered (two of them streams, one a fallback, one with
    personal data), a 400, a 402 and a 429."""
    result = MixResult()

    def chat(key: str, prompt: str, *, headers: dict[str, str] | None = None, **extra: Any) -> httpx.Response:
        body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": prompt}], "max_tokens": 50, **extra}
        with httpx.Client(timeout=60) as client:
            if extra.get("stream"):
                with client.stream("POST", f"{base_url}/v1/chat/completions", json=body,
                                   headers={"Authorization": f"Bearer {key}", "X-Session-Id": f"mix-{tag}-s",
                                            **(headers or {})}) as r:
                    r.read()
                    result.streams += r.status_code == 200
            else:
                r = client.post(f"{base_url}/v1/chat/completions", json=body,
                                headers={"Authorization": f"Bearer {key}", "X-Session-Id": f"mix-{tag}",
                                         **(headers or {})})
        result.statuses.append(r.status_code)
        return r

    busy, fallback, capped = keys.busy[1], keys.fallback[1], keys.capped[1]
    assert chat(busy, f"서울 날씨 어때요? {tag}").status_code == 200
    masked = chat(busy, PII_PROMPT)
    assert masked.status_code == 200 and masked.headers.get("x-llm-pii-masked") == "2", masked.headers
    result.pii_values = {"phone": 1, "email": 1}
    assert chat(busy, f"부산 맛집 추천해 주세요 {tag}", stream=True).status_code == 200
    assert chat(busy, f"제주도 여행 일정 {tag}", stream=True).status_code == 200
    # more tokens than a minute allows (max_tokens x n): refused before anything is sent
    limited = chat(busy, "긴 답변", max_tokens=16_000, n=128)
    assert limited.status_code == 429 and limited.json()["error"]["code"] == "rate_limited", limited.text
    bad = chat(fallback, "온도가 이상해요", temperature=7)
    assert bad.status_code == 400, bad.text
    fell_back = chat(fallback, f"환불 규정 알려주세요 {tag}", headers={"X-OpenAI-Api-Key": "sk-invalid-user-key"})
    assert fell_back.status_code == 200 and fell_back.headers.get("x-llm-fallback-reason"), fell_back.headers
    result.fallbacks += 1
    refused = chat(capped, f"요약해 주세요 {tag}")
    assert refused.status_code == 402 and refused.json()["error"]["code"] == "budget_exceeded", refused.text
    return result
