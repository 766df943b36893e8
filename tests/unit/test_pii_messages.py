"""Where the guard looks in a request: every text of messages and input items, nothing of
their structure; embeddings and moderations input."""
from __future__ import annotations

from domain.pii import PiiGuard, PiiPolicy
from domain.pii.messages import map_input, map_texts, texts_in, texts_of_input

ITEMS = [
    {"role": "system", "content": "s"},
    {"role": "user", "content": [{"type": "text", "text": "t1"}, {"type": "image_url", "image_url": {"url": "u"}},
                                 {"type": "input_text", "text": "t2"}]},
    {"role": "assistant", "content": None, "refusal": "r",
     "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "lookup", "arguments": "a"}}]},
    {"role": "tool", "tool_call_id": "call_1", "content": "tool result"},
    {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "a2"},
    {"type": "function_call_output", "call_id": "c1", "output": "out"},
    {"type": "function_call_output", "call_id": "c2", "output": [{"type": "input_text", "text": "out2"}]},
    {"type": "message", "role": "assistant", "id": "msg_1",
     "content": [{"type": "output_text", "text": "o", "annotations": []}]},
]


def test_every_text_is_found_in_order_and_nothing_of_the_structure():
    assert list(texts_in(ITEMS)) == ["s", "t1", "t2", "r", "a", "tool result", "a2", "out", "out2", "o"]


def test_map_texts_changes_only_texts_and_leaves_the_callers_objects_alone():
    before = repr(ITEMS)
    mapped = map_texts(ITEMS, str.upper)
    assert repr(ITEMS) == before
    assert list(texts_in(mapped)) == ["S", "T1", "T2", "R", "A", "TOOL RESULT", "A2", "OUT", "OUT2", "O"]
    # ids, names, types, urls untouched
    assert mapped[1]["content"][1] == {"type": "image_url", "image_url": {"url": "u"}}
    assert mapped[2]["tool_calls"][0]["id"] == "call_1" and mapped[2]["tool_calls"][0]["function"]["name"] == "lookup"
    assert mapped[4]["call_id"] == "c1" and mapped[4]["name"] == "f" and mapped[7]["id"] == "msg_1"


def test_embeddings_and_moderations_input():
    scanner = PiiGuard(PiiPolicy.MASK).scanner()
    assert map_input("번호 010-2345-6789", scanner.process) == "번호 [전화번호1]"
    assert map_input(["a", "메일 kim@naver.com", "010-2345-6789"], scanner.process) == ["a", "메일 [이메일1]", "[전화번호1]"]
    assert map_input([1, 2, 3], scanner.process) == [1, 2, 3]  # token arrays pass
    assert map_input([[1, 2], [3]], scanner.process) == [[1, 2], [3]]
    parts = [{"type": "text", "text": "카드 4111-1111-1111-1111"}, {"type": "image_url", "image_url": {"url": "u"}}]
    assert map_input(parts, scanner.process) == [{"type": "text", "text": "카드 [카드번호1]"}, parts[1]]
    assert texts_of_input(["x", 5, {"type": "text", "text": "y"}]) == ["x", "y"]
    assert scanner.total == 4
