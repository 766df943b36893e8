"""Budget admission counts every billable input and the whole output worst case.

Each test is one way a hostile caller tried to get tokens past the estimate (issue 12).
"""
from __future__ import annotations

import json

import pytest

from domain.admission import (
    MAX_CHOICES,
    choices,
    estimate_input,
    image_rule,
    output_worst_case,
    requested_output_limit,
)
from domain.text import estimate_tokens

BIG = "x" * 800_000  # 800 KB of ASCII: at least 200,000 tokens by the estimate
BIG_TOKENS = estimate_tokens(BIG)
USER = {"role": "user", "content": "hi"}


def tokens(items, params=None, model="gpt-4o-mini"):
    return estimate_input(items, params or {}, model)


def test_plain_text_counts_as_before() -> None:
    est = tokens([{"role": "user", "content": "안녕하세요"}])
    assert est.tokens == estimate_tokens("안녕하세요") + 4
    assert est.unbounded == ()


@pytest.mark.parametrize("field", ["tools", "functions"])
def test_tool_definitions_are_billable(field: str) -> None:
    definition = [{"type": "function", "function": {"name": "f", "description": BIG, "parameters": {}}}]
    assert tokens([USER], {field: definition}).tokens >= BIG_TOKENS


def test_tool_call_arguments_are_billable() -> None:
    call = {"role": "assistant", "content": None,
            "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": BIG}}]}
    assert tokens([USER, call]).tokens >= BIG_TOKENS


def test_responses_function_call_output_is_billable() -> None:
    items = [{"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
             {"type": "function_call_output", "call_id": "c1", "output": BIG}]
    assert tokens(items).tokens >= BIG_TOKENS


@pytest.mark.parametrize("params", [
    {"instructions": BIG},
    {"prediction": {"type": "content", "content": BIG}},
    {"response_format": {"type": "json_schema", "json_schema": {"name": "s", "schema": {"description": BIG}}}},
    {"text": {"format": {"type": "json_schema", "schema": {"description": BIG}}}},
])
def test_top_level_billable_fields(params: dict) -> None:
    assert tokens([USER], params).tokens >= BIG_TOKENS


@pytest.mark.parametrize("part_type", ["refusal", "output_text", "input_text", "text"])
def test_every_text_part_type(part_type: str) -> None:
    key = "refusal" if part_type == "refusal" else "text"
    assert tokens([{"role": "assistant", "content": [{"type": part_type, key: BIG}]}]).tokens >= BIG_TOKENS


def test_unknown_part_types_count_as_their_json() -> None:
    part = {"type": "something_new", "payload": BIG}
    assert tokens([{"role": "user", "content": [part]}]).tokens >= BIG_TOKENS


def test_images_are_charged_their_worst_case_each() -> None:
    parts = [{"type": "image_url", "image_url": {"url": "https://example.invalid/a.png"}}] * 3000
    est = tokens([{"role": "user", "content": parts}], model="gpt-4o-mini")
    assert est.tokens >= 3000 * (2833 + 8 * 5667)


def test_low_detail_images_cost_the_base() -> None:
    part = {"type": "image_url", "image_url": {"url": "data:image/png;base64," + "A" * 100_000, "detail": "low"}}
    est = tokens([{"role": "user", "content": [part]}], model="gpt-4o")
    # the base64 payload is not counted as text: the image rule is
    assert est.tokens == 85 + 4


def test_image_rules_by_family() -> None:
    assert image_rule("gpt-4o-2024-08-06").worst_case(None) == 85 + 8 * 170
    assert image_rule("gpt-4o-mini-2024-07-18").worst_case("high") == 2833 + 8 * 5667
    assert image_rule("gpt-4.1-mini").worst_case("low") == 2489  # patches ignore detail
    assert image_rule("some-local-model").worst_case("low") == 2833  # unknown: the dearest rule


@pytest.mark.parametrize(("part", "kind"), [
    ({"type": "file", "file": {"file_id": "file-1"}}, "file"),
    ({"type": "input_file", "file_id": "file-1"}, "file"),
    ({"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}}, "audio"),
])
def test_unboundable_parts_are_reported_not_counted_as_zero(part: dict, kind: str) -> None:
    est = tokens([{"role": "user", "content": [part]}])
    assert est.unbounded == (kind,)


def test_item_references_and_replayed_audio_are_unbounded() -> None:
    assert tokens([{"type": "item_reference", "id": "msg_1"}]).unbounded == ("item_reference",)
    assert tokens([{"role": "assistant", "audio": {"id": "audio_1"}}]).unbounded == ("audio",)


def test_hostile_shapes_do_not_crash() -> None:
    weird = [None, 3, "text", [1, 2], {"content": {"type": "text", "text": 5}}, {"role": ["x"], "content": [None, 7]}]
    assert tokens(weird).tokens > 0


def test_the_largest_output_limit_wins() -> None:
    assert requested_output_limit({"max_completion_tokens": 1, "max_tokens": 12}) == 12
    assert requested_output_limit({"max_output_tokens": 30}) == 30
    assert requested_output_limit({}) is None


def test_an_unchecked_limit_that_is_not_positive_leaves_the_model_cap() -> None:
    # found by the stateful fuzz run: max_tokens=-53522 on /v1/responses (a field that dialect
    # passes through unchecked) made the worst case negative and the request a 500
    assert requested_output_limit({"max_tokens": -53522}) is None
    assert requested_output_limit({"max_tokens": True, "max_completion_tokens": 0}) is None
    assert requested_output_limit({"max_tokens": -5, "max_output_tokens": 30}) == 30
    assert output_worst_case({"max_tokens": -53522}, model_cap=16_384) == 16_384


def test_output_worst_case_multiplies_by_n() -> None:
    assert output_worst_case({"n": 128, "max_tokens": 12}, model_cap=16_384) == 128 * 12
    assert output_worst_case({}, model_cap=16_384) == 16_384
    assert output_worst_case({"max_tokens": 10**12}, model_cap=16_384) == 16_384
    assert choices({"n": True}) == 1 and MAX_CHOICES == 128


def test_rejected_prediction_counts_as_output_too() -> None:
    prediction = {"type": "content", "content": "y" * 4000}
    assert output_worst_case({"max_tokens": 10, "prediction": prediction}, 16_384) == 10 + 1000


def test_estimate_of_json_text_leans_up() -> None:
    schema = {"type": "object", "properties": {"이름": {"type": "string"}}}
    assert tokens([USER], {"tools": [schema]}).tokens >= estimate_tokens(json.dumps(schema, ensure_ascii=False))


def test_the_commands_limit_counts_beside_the_params() -> None:
    assert output_worst_case({"max_tokens": 5}, 16_384, limit=100) == 100
    assert output_worst_case({"n": 2}, 16_384, limit=7) == 14


def test_the_token_estimate_counts_each_hangul_kana_and_ideograph_and_a_quarter_of_the_rest():
    from domain.text import estimate_tokens

    assert estimate_tokens("") == 0
    assert estimate_tokens("abcd" * 3) == 3
    assert estimate_tokens("안녕하세요") == 5
    # 2 syllables + 2 jamo + 1 compatibility jamo + 2 kana + 1 ideograph, then 9 others -> 3
    assert estimate_tokens("한국" + "\u1100\u11ff" + "\u3131" + "あア" + "中" + "Python 3!") == 8 + 3


@pytest.mark.parametrize("odd_type", [[], ["input_text"], {"a": 1}, 7, None])
def test_an_item_or_part_whose_type_is_not_a_name_counts_as_text(odd_type) -> None:
    """A `type` that is a list or an object (hostile bodies; the stateful fuzz run found the
    unhashable one as a 500) names no kind: the whole is counted, never looked up."""
    item = {"type": odd_type, "role": "user", "content": [{"type": odd_type, "text": BIG}]}
    est = tokens([item])
    assert est.tokens >= BIG_TOKENS and est.unbounded == ()
