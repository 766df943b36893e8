"""The litellm SDK as a client of the gateway: run by the venv that scripts/litellm-venv.sh
builds (litellm's pins clash with the project's, so it never enters the project venv).

    .bench-venv/litellm/bin/python tests/support/litellm_client.py BASE_URL

The client key comes in LLM_GATEWAY_KEY. Only ``api_base`` points litellm at the gateway, as
its docs say for any OpenAI-compatible server. Prints one JSON object: what each call got back.
"""
from __future__ import annotations

import json
import os
import sys

# litellm fetches its price map from the internet at import unless told to use its own copy
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import litellm  # noqa: E402


def main(base_url: str) -> None:
    key = os.environ["LLM_GATEWAY_KEY"]
    common = {"api_base": base_url, "api_key": key, "num_retries": 0, "timeout": 60}
    plain = litellm.completion(model="openai/gpt-4o-mini", messages=[{"role": "user", "content": "라이트엘엘엠"}],
                               **common)
    stream = litellm.completion(model="openai/gpt-4o-mini", messages=[{"role": "user", "content": "흘려서"}],
                                stream=True, **common)
    pieces = [chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices]
    vectors = litellm.embedding(model="openai/text-embedding-3-small", input=["문서 하나", "문서 둘"], **common)
    print(json.dumps({
        "completion": plain.choices[0].message.content,
        "completion_usage": plain.usage.total_tokens,
        "stream": "".join(pieces),
        "stream_chunks": len(pieces),
        "embeddings": [len(item["embedding"]) for item in vectors.data],
        "embedding_tokens": vectors.usage.prompt_tokens,
    }, ensure_ascii=False))


if __name__ == "__main__":
    main(sys.argv[1])
