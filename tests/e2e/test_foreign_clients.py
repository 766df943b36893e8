"""Foreign clients of the OpenAI surface through nginx: the official SDK on the routes added
for real clients, and langchain-openai (chat, stream, tools, embeddings)."""
from __future__ import annotations

import httpx
import openai
import pytest

pytestmark = pytest.mark.e2e


def test_the_sdk_through_nginx_gets_openais_headers_and_errors(stack):
    sdk = openai.OpenAI(base_url=f"{stack.base_url}/v1", api_key=stack.client_key, max_retries=0, timeout=60)
    raw = sdk.embeddings.with_raw_response.create(model="text-embedding-3-small", input=["nginx", "경유"])
    assert len(raw.parse().data) == 2
    assert raw.headers["x-request-id"].startswith("req_fake_") and raw.headers["openai-processing-ms"]
    assert sdk.moderations.create(input="괜찮아요").results[0].flagged is False
    assert sdk.models.retrieve("gpt-4o-mini").id == "gpt-4o-mini"
    created = sdk.responses.create(model="gpt-4o-mini", input="지울 것")
    assert sdk.responses.input_items.list(created.id).data
    sdk.responses.delete(created.id)
    with pytest.raises(openai.NotFoundError) as missing:
        sdk.models.retrieve("gpt-9-ultra")
    assert missing.value.code == "model_not_found"
    unknown = httpx.post(f"{stack.base_url}/v1/no-such-route", json={}, headers=stack.auth())
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "route_not_found"
    assert unknown.headers["x-request-id"]
    with httpx.stream("POST", f"{stack.base_url}/v1/chat/completions", headers=stack.auth(), timeout=60,
                      json={"model": "gpt-4o-mini", "stream": True,
                            "messages": [{"role": "user", "content": "헤더"}]}) as r:
        assert r.headers["x-llm-key-source"] == "server" and r.headers["x-ratelimit-limit-requests"]
        assert b": x-llm-cost-usd: " in b"".join(r.iter_bytes())


def test_langchain_through_nginx(stack):
    from langchain_core.tools import tool
    from langchain_openai import ChatOpenAI, OpenAIEmbeddings

    base = f"{stack.base_url}/v1"
    llm = ChatOpenAI(model="gpt-4o-mini", base_url=base, api_key=stack.client_key, max_retries=0, timeout=60)
    assert llm.invoke("랭체인 nginx").content == "fake reply to: 랭체인 nginx"
    assert "".join(str(c.content) for c in llm.stream("스트림 nginx")) == "fake reply to: 스트림 nginx"
    assert llm.batch(["하나", "둘"])[1].content == "fake reply to: 둘"

    @tool
    def lookup(term: str) -> str:
        """Look a term up."""
        return term

    assert llm.bind_tools([lookup]).invoke("찾아줘").content.startswith("fake reply to")
    embeddings = OpenAIEmbeddings(model="text-embedding-3-small", base_url=base, api_key=stack.client_key,
                                  check_embedding_ctx_length=False, max_retries=0)
    assert len(embeddings.embed_documents(["문서"])[0]) == 8
    # the default path sends token arrays (tokenised locally); served the same way
    tokens = openai.OpenAI(base_url=base, api_key=stack.client_key, max_retries=0).embeddings.create(
        model="text-embedding-3-small", input=[[9906, 1917]], encoding_format="float")
    assert tokens.usage.prompt_tokens == 2
